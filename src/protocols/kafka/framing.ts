// Kafka framing: a 4-byte big-endian size, then the message. Frames are handed on with
// their size prefix so an unchanged frame can be written on without re-framing; a frame
// that arrived in one chunk is a view of it, never a copy.

export class FrameError extends Error {
  override name = 'FrameError';
}

const POOLED_MIN = 64 * 1024;
const POOL_SIZE = 4;

export class Framer {
  readonly #maxBytes: number;
  readonly #minBytes: number;
  readonly #onFrame: (frame: Buffer) => void;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #size = -1;
  /** cut-through: bytes of the current frame already handed to `onPart` */
  #streamed = -1;
  /**
   * Cut-through: asked once per frame that did not arrive whole; returning a function makes
   * the framer hand it each piece of that frame as it arrives (views of the socket's own
   * chunks, which are never reused), before the whole frame also goes to `onFrame`.
   */
  onStart: ((size: number) => ((part: Buffer) => void) | undefined) | undefined;
  #onPart: ((part: Buffer) => void) | undefined;

  constructor(maxBytes: number, onFrame: (frame: Buffer) => void, minBytes = 0) {
    this.#maxBytes = maxBytes;
    this.#minBytes = minBytes;
    this.#onFrame = onFrame;
  }

  #emit(upTo: number): void {
    let skip = this.#streamed;
    let left = upTo - this.#streamed;
    for (const c of this.#chunks) {
      if (left <= 0) break;
      if (skip >= c.length) {
        skip -= c.length;
        continue;
      }
      const part = c.subarray(skip, Math.min(c.length, skip + left));
      skip = 0;
      left -= part.length;
      this.#onPart!(part);
    }
    this.#streamed = upTo;
  }

  /** Throws FrameError on a size outside [minBytes, maxBytes]. */
  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    for (;;) {
      if (this.#size < 0) {
        if (this.#buffered < 4) return;
        const size = this.#peekSize();
        if (size > this.#maxBytes) throw new FrameError(`frame of ${size} bytes exceeds the limit of ${this.#maxBytes}`);
        if (size < this.#minBytes) throw new FrameError(`frame of ${size} bytes is too small to be a Kafka message`);
        this.#size = size;
        this.#onPart = this.#buffered < 4 + size ? this.onStart?.(size) : undefined;
        this.#streamed = 0;
      }
      const total = 4 + this.#size;
      if (this.#onPart) this.#emit(Math.min(this.#buffered, total));
      if (this.#buffered < total) return;
      const frame = this.#take(total);
      this.#size = -1;
      this.#onPart = undefined;
      this.#onFrame(frame);
    }
  }

  /**
   * Large frames that span reads are reassembled into buffers reused once the owner
   * releases them (after the socket write of the forwarded frame completed): at produce
   * rates, fresh 100s-of-KiB buffers per request were the main garbage-collection load.
   */
  readonly #pool: Buffer[] = [];
  /** memory this framer allocated (only that may be pooled: socket chunks are never reused) */
  readonly #owned = new WeakSet<ArrayBuffer>();

  #alloc(n: number): Buffer {
    if (n >= POOLED_MIN) {
      for (let i = 0; i < this.#pool.length; i++) {
        const b = this.#pool[i]!;
        if (b.length >= n) {
          this.#pool.splice(i, 1);
          return b.subarray(0, n);
        }
      }
    }
    const b = Buffer.allocUnsafeSlow(n);
    if (n >= POOLED_MIN) this.#owned.add(b.buffer as ArrayBuffer);
    return b;
  }

  /** Gives a frame's memory back for reuse; the caller must not touch the frame afterwards. */
  release(frame: Buffer): void {
    const ab = frame.buffer as ArrayBuffer;
    if (!this.#owned.has(ab) || this.#pool.length >= POOL_SIZE) return;
    if (this.#pool.some((p) => p.buffer === ab)) return;
    this.#pool.push(Buffer.from(ab, 0, ab.byteLength));
  }

  get buffered(): number {
    return this.#buffered;
  }

  #peekSize(): number {
    const first = this.#chunks[0]!;
    if (first.length >= 4) return first.readInt32BE(0);
    const head = Buffer.concat(this.#chunks, Math.min(this.#buffered, 4));
    return head.readInt32BE(0);
  }

  #take(n: number): Buffer {
    const first = this.#chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
    } else {
      out = this.#alloc(n);
      let o = 0;
      while (o < n) {
        const c = this.#chunks[0]!;
        const k = Math.min(c.length, n - o);
        c.copy(out, o, 0, k);
        o += k;
        if (k === c.length) this.#chunks.shift();
        else this.#chunks[0] = c.subarray(k);
      }
    }
    this.#buffered -= n;
    return out;
  }
}
