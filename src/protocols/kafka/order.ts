// The two orders a Kafka connection keeps. Responses leave for the client in request order
// (ResponseOrder: a slot per request, filled whenever its answer is ready). Requests leave
// for the broker in the client's order (SendQueue): an inspected Produce takes its place when
// it arrives and fills it when its records come back from the pool, and the requests behind
// it wait there, because idempotent and transactional sequence numbers depend on the order.

import type { Socket } from 'node:net';
import type { Header, Inflight, SendPlace, Slot } from './context.ts';

/** Responses in request order: `emit` is called for each slot once it and every slot before it are done. */
export class ResponseOrder {
  readonly #slots: Slot[] = [];
  readonly #emit: (slot: Slot) => void;

  constructor(emit: (slot: Slot) => void) {
    this.#emit = emit;
  }

  /** The slot whose answer leaves next (cut-through may stream only that one). */
  get head(): Slot | undefined {
    return this.#slots[0];
  }

  slot(h: Pick<Header, 'apiKey' | 'version'>): Slot {
    const s: Slot = { done: false, data: undefined, apiKey: h.apiKey, version: h.version };
    this.#slots.push(s);
    return s;
  }

  complete(slot: Slot, data: Buffer | undefined): void {
    slot.done = true;
    slot.data = data;
    while (this.#slots.length > 0 && this.#slots[0]!.done) this.#emit(this.#slots.shift()!);
  }
}

/**
 * Requests in the client's order on their way to the broker. `write` puts a frame on the
 * socket (and its waiter in line for the answer); `closed` says whether the connection is gone,
 * in which case what still waits is rejected with `gone()` instead.
 */
export class SendQueue {
  readonly #queue: SendPlace[] = [];
  readonly #write: (up: Socket, frame: Buffer, inflight: Inflight | undefined) => void;
  readonly #closed: () => boolean;
  readonly #gone: () => Error;

  constructor(write: (up: Socket, frame: Buffer, inflight: Inflight | undefined) => void, closed: () => boolean, gone: () => Error) {
    this.#write = write;
    this.#closed = closed;
    this.#gone = gone;
  }

  /** Sends now when nothing waits ahead (and no place was reserved), else at `place` or at the end. */
  send(up: Socket, frame: Buffer, inflight: Inflight | undefined, place?: SendPlace): void {
    if (!place && this.#queue.length === 0) return this.#write(up, frame, inflight);
    if (this.#closed()) {
      // a detached request that finished after the connection closed: nothing to wait for
      inflight?.reject(this.#gone());
      return;
    }
    const at = place ?? { state: 'waiting' };
    if (!place) this.#queue.push(at);
    Object.assign(at, { state: 'ready', up, frame, inflight });
    this.#pump();
  }

  /** Takes a place for a request forwarded later. */
  reserve(): SendPlace {
    const place: SendPlace = { state: 'waiting' };
    this.#queue.push(place);
    return place;
  }

  /** A reserved place that will not be used (the request was refused): the requests behind it go on. */
  cancel(place: SendPlace): void {
    if (place.state !== 'waiting') return;
    place.state = 'cancelled';
    this.#pump();
  }

  /** The connection closed: whatever waits is answered with `err`. */
  rejectAll(err: Error): void {
    for (const p of this.#queue.splice(0)) p.inflight?.reject(err);
  }

  #pump(): void {
    while (this.#queue.length > 0 && this.#queue[0]!.state !== 'waiting') {
      const next = this.#queue.shift()!;
      if (next.state !== 'ready') continue;
      if (this.#closed()) next.inflight?.reject(this.#gone());
      else this.#write(next.up!, next.frame!, next.inflight);
    }
  }
}
