// A client connection's own connection to its broker: opened on first use, requests written
// in the client's order (send queue), answers matched to requests in order (Kafka answers in
// order on one connection), and cut-through: a large answer whose turn has come is written to
// the client while it arrives instead of after.

import type { Socket } from 'node:net';
import type { KafkaUpstreamConfig } from '../../config/schema.ts';
import { GatewayError } from '../../operation.ts';
import { brokerAnswerChannel, upstreamChannel, type UpstreamMessage } from './channels.ts';
import type { Inflight, SendPlace, Slot } from './context.ts';
import type { Framer } from './framing.ts';
import type { MessageRegistry } from './messages.ts';
import { SendQueue } from './order.ts';
import { connectUpstream, type HostPort } from './upstream.ts';

/** The answer for requests still queued for the broker when their connection closed. */
const closedBeforeForwarding = () => new GatewayError('upstream-unavailable', 'the connection closed before the request was forwarded');

/** What the link needs of its client connection. */
export interface LinkOwner {
  readonly reg: MessageRegistry;
  readonly upstream: KafkaUpstreamConfig;
  /** the client's session id, for the diagnostics channel */
  readonly sessionId: string;
  /** the client's socket: cut-through writes to it, and a full one pauses the broker side */
  readonly client: Socket;
  /** the client's framer: request frames go back to it once the kernel has them */
  readonly clientFramer: Framer;
  /** the broker addresses the client's port stands for, in the order to try */
  addresses(): Promise<HostPort[]>;
  /** the connection is closing: nothing more is sent */
  closed(): boolean;
  /** the slot whose answer leaves next for the client (only that one may be cut through) */
  head(): Slot | undefined;
  /** the broker connection opened (the listener learns the brokers' API versions on it) */
  opened(): void;
  /** the broker connection drained: the client may be read again */
  drained(): void;
  /** the broker connection closed or misbehaved: the client connection ends too */
  lost(reason?: string): void;
}

export class BrokerLink {
  readonly #o: LinkOwner;
  #connecting: Promise<Socket> | undefined;
  #socket: Socket | undefined;
  #framer: Framer | undefined;
  /** requests written and not yet answered, in order */
  readonly #inflight: Inflight[] = [];
  /** requests not yet written, in client order (only while a detached Produce waits) */
  readonly #queue: SendQueue;

  constructor(owner: LinkOwner) {
    this.#o = owner;
    this.#queue = new SendQueue((up, frame, inflight) => this.#write(up, frame, inflight), () => owner.closed(), closedBeforeForwarding);
  }

  /** The broker connection, opened on first use (each address in turn). */
  connect(): Promise<Socket> {
    this.#connecting ??= (async () => {
      const o = this.#o;
      let last: unknown;
      for (const addr of await o.addresses()) {
        try {
          if (upstreamChannel.hasSubscribers) upstreamChannel.publish({ session: o.sessionId } satisfies UpstreamMessage);
          const { socket, framer } = await connectUpstream(o.reg, o.upstream, addr);
          if (o.closed()) {
            socket.destroy();
            throw new GatewayError('upstream-unavailable', 'client went away');
          }
          this.#socket = socket;
          framer.onFrame = (f) => this.#onFrame(f);
          framer.onStart = (size) => this.#cutThrough(size);
          this.#framer = framer;
          o.opened();
          socket.on('drain', () => o.drained());
          socket.on('error', () => {});
          socket.on('close', () => o.lost());
          return socket;
        } catch (err) {
          last = err;
        }
      }
      throw new GatewayError('upstream-unavailable', last instanceof Error ? last.message : 'no broker reachable');
    })();
    return this.#connecting;
  }

  /**
   * Writes a request upstream (at `place` in the order, or now when nothing waits ahead of
   * it); resolves with the response frame, or undefined when none comes (acks=0).
   */
  send(up: Socket, frame: Buffer, expectResponse: boolean, streamTo?: Slot, place?: SendPlace): Promise<Buffer> | undefined {
    let inflight: Inflight | undefined;
    const p = expectResponse ? new Promise<Buffer>((resolve, reject) => (inflight = streamTo ? { resolve, reject, streamTo } : { resolve, reject })) : undefined;
    this.#queue.send(up, frame, inflight, place);
    return p;
  }

  /** Takes a place in the upstream order for a request forwarded later. */
  reserve(): SendPlace {
    return this.#queue.reserve();
  }

  /** A reserved place that will not be used (the request was refused): the requests behind it go on. */
  cancel(place: SendPlace): void {
    this.#queue.cancel(place);
  }

  /** An answer's memory goes back to the broker framer (it was written to the client). */
  release(frame: Buffer): void {
    this.#framer?.release(frame);
  }

  /** The broker connection cannot take more now (its writes are backed up). */
  get busy(): boolean {
    return this.#socket?.writableNeedDrain === true;
  }

  pause(): void {
    this.#socket?.pause();
  }

  resume(): void {
    this.#socket?.resume();
  }

  /** The client connection ended: the broker connection closes and every waiting request fails with `err`. */
  destroy(err: Error): void {
    this.#socket?.destroy();
    this.#connecting?.then((s) => s.destroy(), () => {});
    for (const i of this.#inflight.splice(0)) i.reject(err);
    this.#queue.rejectAll(err);
  }

  #write(up: Socket, frame: Buffer, inflight: Inflight | undefined): void {
    if (inflight) this.#inflight.push(inflight);
    if (upstreamChannel.hasSubscribers) upstreamChannel.publish({ session: this.#o.sessionId, frame } satisfies UpstreamMessage);
    // the frame's memory goes back to the client framer once the kernel has it
    if (!up.write(frame, () => this.#o.clientFramer.release(frame))) this.#o.client.pause();
  }

  #onFrame(frame: Buffer): void {
    const waiter = this.#inflight.shift();
    if (!waiter) return this.#o.lost('unexpected response from the broker');
    if (brokerAnswerChannel.hasSubscribers) brokerAnswerChannel.publish({ session: this.#o.sessionId, frame } satisfies UpstreamMessage);
    waiter.resolve(frame);
  }

  /**
   * A large Fetch answer is written to the client as it arrives when nothing is ahead of it in
   * the response order; it is still counted, hashed and audited once complete.
   */
  #cutThrough(size: number): ((part: Buffer) => void) | undefined {
    const o = this.#o;
    const slot = this.#inflight[0]?.streamTo;
    if (!slot || o.head() !== slot || o.closed()) return undefined;
    slot.streamed = true;
    let left = 4 + size;
    return (part) => {
      left -= part.length;
      if (o.closed()) return;
      // the parts are views of the frame's memory: it is not reused before the last write is done
      const framer = this.#framer!;
      const last = left === 0;
      if (last) framer.hold(part);
      if (!o.client.write(part, last ? () => framer.release(part) : undefined)) this.#socket?.pause();
    };
  }
}
