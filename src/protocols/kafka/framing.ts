// Kafka framing: a 4-byte big-endian size, then the message. Frames are handed on with
// their size prefix so an unchanged frame can be written on without re-framing.
//
// Two ways in:
// - push(chunk): chunks from a socket's 'data' events (client connections, TLS). A frame
//   that arrived in one chunk is a view of it, never a copy.
// - reader(): `onread` options for a plain TCP socket (broker connections, and client
//   connections taken over at accept: intake.ts). The kernel copies a large frame straight
//   into the buffer it ends up in, so a request or response costs no per-read allocation and
//   no reassembly copy: at produce and consume rates, the 64 KiB buffers a 'data' socket
//   allocates per read were the gateway's main garbage-collection load.

export class FrameError extends Error {
  override name = 'FrameError';
}

const POOLED_MIN = 64 * 1024;
const POOL_SIZE = 4;
/** reader(): where reads land between large frames; frames that arrive whole in it are copied out */
const SCRATCH_BYTES = 64 * 1024;
/** the least room a read is offered in the scratch buffer */
const MIN_READ_ROOM = 4 * 1024;

export interface FrameReader {
  buffer: () => Uint8Array;
  callback: (bytesRead: number, buffer: Uint8Array) => boolean;
}

export class Framer {
  #maxBytes: number;
  readonly #minBytes: number;
  /** every complete frame; reassigned when a connection changes hands (set-up, then traffic) */
  onFrame: (frame: Buffer) => void;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #size = -1;
  /** cut-through: bytes of the current frame already handed to `onPart` */
  #streamed = -1;
  /**
   * Cut-through: asked once per frame that did not arrive whole; returning a function makes
   * the framer hand it each piece of that frame as it arrives, before the whole frame also
   * goes to `onFrame`. The pieces are views of the frame's own memory: whoever writes them
   * on must hold() the frame until the last write completed.
   */
  onStart: ((size: number) => ((part: Buffer) => void) | undefined) | undefined;
  #onPart: ((part: Buffer) => void) | undefined;

  constructor(maxBytes: number, onFrame: (frame: Buffer) => void, minBytes = 0) {
    this.#maxBytes = maxBytes;
    this.#minBytes = minBytes;
    this.onFrame = onFrame;
  }

  /** The largest frame accepted from now on (raised once a client has authenticated). */
  set maxBytes(n: number) {
    this.#maxBytes = n;
  }

  #checkSize(size: number): void {
    if (size > this.#maxBytes) throw new FrameError(`frame of ${size} bytes exceeds the limit of ${this.#maxBytes}`);
    if (size < this.#minBytes) throw new FrameError(`frame of ${size} bytes is too small to be a Kafka message`);
  }

  // -------------------------------------------------------------------------
  // push(chunk)

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

  /** frames already received are not handed on until go(): the reader of a paused socket stops at once */
  #stopped = false;

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Throws FrameError on a size outside [minBytes, maxBytes]. */
  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    this.#parse();
  }

  /**
   * Holds back the frames of chunks already pushed (a socket read can hold thousands of small
   * requests; pausing the socket alone would still let all of them through).
   */
  stop(): void {
    this.#stopped = true;
  }

  /** Hands on what stop() held back, then goes on as before. Throws FrameError like push(). */
  go(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#parse();
    // reader(): whole frames a read left in the scratch buffer while stopped
    if (!this.#fill && this.#scratchLen - this.#scratchStart >= 4) this.#scratchFrames(this.#scratchLen, false);
  }

  #parse(): void {
    for (;;) {
      if (this.#stopped) return;
      if (this.#size < 0) {
        if (this.#buffered < 4) return;
        const size = this.#peekSize();
        this.#checkSize(size);
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
      this.onFrame(frame);
    }
  }

  get buffered(): number {
    return this.#buffered + this.#scratchLen - this.#scratchStart + this.#filled;
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

  // -------------------------------------------------------------------------
  // reader(): socket reads land in the frame's own buffer

  #scratch: Buffer | undefined;
  /** the bytes of the scratch buffer not handed on yet: [#scratchStart, #scratchLen) */
  #scratchStart = 0;
  #scratchLen = 0;
  /** the frame being read in place, and how much of it has arrived */
  #fill: Buffer | undefined;
  #filled = 0;

  /**
   * `onread` options for a socket: every read goes into the buffer the current frame will be
   * handed on in (or a reused scratch buffer between frames). Errors (a FrameError) go to
   * `onError`, after which the reader must not be used. After stop() the socket is paused
   * (the callback returns false) and whole frames already read wait in the scratch buffer
   * until go().
   *
   * The socket asks for the buffer of its next read right after each callback (and once at the
   * start) and keeps it: the scratch buffer's layout may only change in those moments, never in
   * go(), or the next read would land where the framer does not expect it.
   */
  reader(onError: (err: unknown) => void): FrameReader {
    this.#scratch ??= Buffer.allocUnsafeSlow(SCRATCH_BYTES);
    return {
      buffer: () => (this.#fill ? this.#fill.subarray(this.#filled) : this.#scratchRoom()),
      callback: (n) => {
        try {
          if (this.#fill) this.#filledIn(n);
          else this.#scratchFrames(this.#scratchLen + n, true);
        } catch (err) {
          onError(err);
          return false;
        }
        return !this.#stopped;
      },
    };
  }

  /** Where the next read lands: after what the scratch buffer holds, moved to its start (grown when frames held back by stop() fill it). */
  #scratchRoom(): Buffer {
    let scratch = this.#scratch!;
    const held = this.#scratchLen - this.#scratchStart;
    if (this.#scratchStart > 0) scratch.copyWithin(0, this.#scratchStart, this.#scratchLen);
    this.#scratchStart = 0;
    this.#scratchLen = held;
    if (scratch.length - held < MIN_READ_ROOM) {
      const grown = Buffer.allocUnsafeSlow(scratch.length * 2);
      scratch.copy(grown, 0, 0, held);
      this.#scratch = scratch = grown;
    }
    return scratch.subarray(held);
  }

  #filledIn(n: number): void {
    const frame = this.#fill!;
    const from = this.#filled;
    this.#filled += n;
    this.#onPart?.(frame.subarray(from, this.#filled));
    if (this.#filled < frame.length) return;
    this.#fill = undefined;
    this.#filled = 0;
    this.#onPart = undefined;
    this.onFrame(frame);
  }

  /**
   * Hands on the whole frames the scratch buffer holds up to `end`. In a read's callback the
   * start of a longer frame then moves to a buffer of its own, which the rest is read into;
   * outside one (go()) nothing moves, since the socket already holds its next read's buffer.
   */
  #scratchFrames(end: number, inCallback: boolean): void {
    const scratch = this.#scratch!;
    let at = this.#scratchStart;
    while (!this.#stopped && end - at >= 4) {
      const size = scratch.readInt32BE(at);
      this.#checkSize(size);
      const total = 4 + size;
      if (end - at >= total) {
        // whole in the scratch buffer, which the next read overwrites: copied out
        const frame = Buffer.allocUnsafe(total);
        scratch.copy(frame, 0, at, at + total);
        at += total;
        this.onFrame(frame);
        continue;
      }
      if (!inCallback) break;
      // the start of a longer frame: the rest is read straight into its own buffer
      const frame = this.#alloc(total);
      const have = end - at;
      scratch.copy(frame, 0, at, end);
      at = end;
      this.#fill = frame;
      this.#filled = have;
      this.#onPart = this.onStart?.(size);
      this.#onPart?.(frame.subarray(0, have));
      break;
    }
    // what stays: at most 3 bytes of a size prefix, or (stopped) frames not handed on yet
    this.#scratchStart = at;
    this.#scratchLen = end;
  }

  // -------------------------------------------------------------------------
  // frame memory reuse

  /**
   * Large frames are assembled in buffers reused once their owner is done with them: at
   * produce and fetch rates, fresh 100s-of-KiB buffers per request were the main
   * garbage-collection load. A frame is reused after as many release() calls as it had
   * hold() calls, plus one (the frame's consumer).
   */
  readonly #pool: Buffer[] = [];
  /** memory this framer allocated (only that may be pooled: socket chunks are never reused), with its extra holds */
  readonly #owned = new WeakMap<ArrayBuffer, number>();

  #alloc(n: number): Buffer {
    if (n >= POOLED_MIN) {
      for (let i = 0; i < this.#pool.length; i++) {
        const b = this.#pool[i]!;
        if (b.length >= n) {
          this.#pool.splice(i, 1);
          this.#owned.set(b.buffer as ArrayBuffer, 0);
          return b.subarray(0, n);
        }
      }
    }
    const b = Buffer.allocUnsafeSlow(n);
    if (n >= POOLED_MIN) this.#owned.set(b.buffer as ArrayBuffer, 0);
    return b;
  }

  /** One more user of the frame's memory (e.g. a socket write of a view of it). */
  hold(frame: Uint8Array): void {
    const ab = frame.buffer as ArrayBuffer;
    const holds = this.#owned.get(ab);
    if (holds !== undefined) this.#owned.set(ab, holds + 1);
  }

  /** Gives a frame's memory back for reuse once nobody holds it; the caller must not touch the frame afterwards. */
  release(frame: Uint8Array): void {
    const ab = frame.buffer as ArrayBuffer;
    const holds = this.#owned.get(ab);
    if (holds === undefined) return;
    if (holds > 0) {
      this.#owned.set(ab, holds - 1);
      return;
    }
    this.#owned.delete(ab);
    if (this.#pool.length >= POOL_SIZE) return;
    this.#pool.push(Buffer.from(ab, 0, ab.byteLength));
  }
}
