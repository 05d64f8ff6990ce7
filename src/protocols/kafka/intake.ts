// How a Kafka connection takes requests in: frames are cut from the socket, handled one after
// another in arrival order, and reads pause (backpressure, both ways) while too many requests
// or bytes wait, while the broker connection or the client's own socket is backed up, and while
// the client is muted by a quota (KIP-219).

import type { Socket } from 'node:net';
import { requestChannel } from './channels.ts';
import { FrameError, Framer } from './framing.ts';

const MAX_QUEUED_REQUESTS = 64;
const MIN_FRAME = 8; // api key, version, correlation id

/** Inspected Produce requests of one connection that may wait for the pool at the same time. */
const MAX_DETACHED = 8;

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

  constructor(socket: Socket, maxFrameBytes: number, owner: IntakeOwner) {
    this.#socket = socket;
    this.#o = owner;
    this.framer = new Framer(maxFrameBytes, (f) => this.#onFrame(f), MIN_FRAME);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.framer.push(chunk);
      } catch (err) {
        owner.unreadable(err instanceof FrameError ? err.message : 'unreadable frame');
      }
    });
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
    if (o.closed() || this.#queued >= MAX_QUEUED_REQUESTS) return; // the held-back frames filled the queue again
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
