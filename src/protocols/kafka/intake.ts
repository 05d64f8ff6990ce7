// How a Kafka connection takes requests in: frames are cut from the socket, handled one after
// another in arrival order, and reads pause (backpressure, both ways) while too many requests
// or bytes wait, while the broker connection or the client's own socket is backed up, and while
// the client is muted by a quota (KIP-219).

import { Socket } from 'node:net';
import { requestChannel } from './channels.ts';
import { FrameError, Framer } from './framing.ts';

const MAX_QUEUED_REQUESTS = 64;
const MIN_FRAME = 8; // api key, version, correlation id

/** Inspected Produce requests of one connection that may wait for the pool at the same time. */
const MAX_DETACHED = 8;

/** An accepted client connection: its socket, and the framer its bytes go to. */
export interface Accepted {
  socket: Socket;
  framer: Framer;
  /** reads land in the framer's buffers (onread); otherwise the framer is fed 'data' chunks */
  inPlace: boolean;
  /** a frame the reader could not accept (in place only); set by the intake */
  unreadable?: (err: unknown) => void;
}

/**
 * Takes an accepted plain TCP connection (`pauseOnConnect`: nothing read yet) over with a
 * socket that reads in place, like the broker connections. A 'data' socket allocates a 64 KiB
 * buffer per read: at produce rates those made V8 run a full mark-compact about every 300 ms
 * (about a fifth of the accept thread, bench/RESULTS.md). Node offers `onread` only to the
 * socket it is constructing, so the accepted socket hands its handle to a new one. Where that
 * is not possible (TLS, or a Node without these hooks) the socket stays as it was accepted
 * and is read from 'data' events.
 */
export function accept(raw: Socket, maxFrameBytes: number, inPlace: boolean): Accepted {
  const framer = new Framer(maxFrameBytes, () => {}, MIN_FRAME);
  const held = raw as unknown as { _handle?: { useUserBuffer?: unknown } | null };
  const handle = held._handle;
  if (!inPlace || !handle || typeof handle.useUserBuffer !== 'function') return { socket: raw, framer, inPlace: false };
  const accepted: Accepted = { socket: raw, framer, inPlace: true };
  held._handle = null;
  raw.destroy(); // without its handle: only the server's count of the connection ends
  accepted.socket = new Socket({
    handle: handle as never,
    readable: true,
    writable: true,
    onread: framer.reader((err) => (accepted.unreadable ? accepted.unreadable(err) : accepted.socket.destroy())),
  });
  return accepted;
}

export interface IntakeOwner {
  /** handles one request; resolves when the next may be handled */
  handle(frame: Buffer): Promise<void>;
  /** a request's handling failed */
  failed(err: unknown): void;
  /** the bytes on the socket are not Kafka frames: the connection ends */
  unreadable(message: string): void;
  closed(): boolean;
  /** request bytes that may wait before reads pause */
  inflightLimit(): number;
  /** the broker connection cannot take more now */
  upstreamBusy(): boolean;
}

export class Intake {
  readonly framer: Framer;
  readonly #socket: Socket;
  readonly #o: IntakeOwner;
  #tail: Promise<void> = Promise.resolve();
  /** requests read and not yet done (a detached Produce: not yet forwarded) */
  #queued = 0;
  /** their bytes (limits.maxInflightBytes) */
  #queuedBytes = 0;
  /** Produce requests handed on before they were forwarded (their records are in the pool) */
  #detached = 0;
  /** set by a handler that returns before its request left: the request stays counted until then */
  #later: Promise<unknown> | undefined;
  /** KIP-219: no reads before this time */
  #mutedUntil = 0;

  constructor(accepted: Accepted, owner: IntakeOwner) {
    const socket = accepted.socket;
    this.#socket = socket;
    this.#o = owner;
    this.framer = accepted.framer;
    this.framer.onFrame = (f) => this.#onFrame(f);
    const unreadable = (err: unknown) => owner.unreadable(err instanceof FrameError ? err.message : 'unreadable frame');
    if (accepted.inPlace) {
      accepted.unreadable = unreadable;
      return;
    }
    socket.on('data', (chunk: Buffer) => {
      try {
        this.framer.push(chunk);
      } catch (err) {
        unreadable(err);
      }
    });
    // accepted paused (pauseOnConnect): reading starts now that someone listens
    if (socket.isPaused()) socket.resume();
  }

  /** Requests read after this are handled once `p` settles (an mTLS login in progress). */
  after(p: Promise<unknown>): void {
    this.#tail = this.#tail.then(() => p).then(() => {}, () => {});
  }

  canDetach(): boolean {
    return this.#detached < MAX_DETACHED;
  }

  /** The request being handled returns before it was forwarded; it stays counted until `forwarded`. */
  detach(forwarded: Promise<void>, then: () => void): void {
    this.#detached++;
    this.#later = forwarded.finally(() => {
      this.#detached--;
      then();
    });
  }

  /** Nothing more is read for `ms` (KIP-219 throttling). */
  mute(ms: number): void {
    this.#mutedUntil = Math.max(this.#mutedUntil, Date.now() + ms);
    this.pause();
    setTimeout(() => this.resume(), ms + 1).unref();
  }

  pause(): void {
    this.#socket.pause();
    this.framer.stop();
  }

  /** Reads again unless muted, the request queue is full, or the broker connection is backed up. */
  resume(): void {
    const o = this.#o;
    if (o.closed() || Date.now() < this.#mutedUntil || this.#queued >= MAX_QUEUED_REQUESTS / 2 || this.#queuedBytes >= o.inflightLimit() / 2 || o.upstreamBusy()) return;
    try {
      this.framer.go();
    } catch (err) {
      return o.unreadable(err instanceof FrameError ? err.message : 'unreadable frame');
    }
    // the held-back frames filled the queue again (or stopped the framer)
    if (o.closed() || this.framer.stopped || this.#queued >= MAX_QUEUED_REQUESTS) return;
    if (this.#socket.isPaused()) this.#socket.resume();
  }

  #onFrame(frame: Buffer): void {
    const o = this.#o;
    if (o.closed()) return;
    if (requestChannel.hasSubscribers) requestChannel.publish({ frame });
    this.#queued++;
    this.#queuedBytes += frame.byteLength;
    // backpressure: a client that pipelines faster than the gateway forwards is paused
    if (this.#queued >= MAX_QUEUED_REQUESTS || this.#queuedBytes >= o.inflightLimit()) this.pause();
    const done = () => {
      this.#queued--;
      this.#queuedBytes -= frame.byteLength;
      this.resume();
    };
    this.#tail = this.#tail
      .then(() => o.handle(frame))
      .then(() => {
        const later = this.#later;
        this.#later = undefined;
        if (later) void later.finally(done);
        else done();
      })
      .catch((err: unknown) => {
        done();
        o.failed(err);
      });
  }
}
