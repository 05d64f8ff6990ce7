// The narrow view a Kafka API handler has of its connection (handlers/*.ts): the identity,
// the ordered response slots, the upstream send queue, the controls chain, and the listener
// facts handlers need. The connection implements it; a handler never sees sockets.

import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Dispatcher } from '../../dispatcher.ts';
import type { Action, Identity, Operation, Resource, UpstreamResult } from '../../operation.ts';
import type { RecordNeeds, Refusals } from '../../operation.ts';
import type { Struct } from './codec.ts';
import type { FetchSessions } from './fetch-sessions.ts';
import type { RequestHeader } from './frames.ts';
import type { MessageRegistry } from './messages.ts';

/** A request frame's header, decoded (frames.ts). */
export type Header = RequestHeader;

/** A response's place in the order responses leave for the client. */
export interface Slot {
  done: boolean;
  data: Buffer | undefined;
  apiKey: number;
  version: number;
  /** the response went to the client while it arrived (cut-through); `data` is not written again */
  streamed?: boolean;
}

export interface Inflight {
  resolve: (frame: Buffer) => void;
  reject: (err: Error) => void;
  /** the response may be cut through to the client when this slot is next in line */
  streamTo?: Slot;
}

/**
 * A request's place in the order requests leave for the broker. An inspected Produce takes
 * its place when it arrives and fills it when its records come back from the pool; requests
 * behind it are handled meanwhile but wait here, so the broker sees the client's order.
 */
export interface SendPlace {
  state: 'waiting' | 'ready' | 'cancelled';
  up?: Socket;
  frame?: Buffer;
  inflight?: Inflight;
}

/** What handlers need of the listener. */
export interface ListenerFacts {
  readonly reg: MessageRegistry;
  readonly dispatcher: Dispatcher;
  readonly log: Logger;
  readonly advertisedHost: string;
  /** APIs forwarded unchanged when the gateway has no handler for them (config) */
  readonly passthrough: ReadonlySet<number>;
  /** the brokers' ApiVersions answer once known (a v3+ answer to a logged-in client teaches it) */
  brokerVersions: Struct | undefined;
  /** the gateway port that stands for broker `nodeId` */
  brokerPort(nodeId: number): Promise<number>;
  /** a broker's real address, learned from a response (never told to clients) */
  learn(nodeId: number, host: string, port: number): void;
  /** every broker host the gateway knows */
  brokerHosts(): Set<string>;
}

/** A resource to authorize, as an operation of this connection's identity. */
export interface NamedResource {
  kind: Resource['kind'];
  name: string;
  action: Action;
  partition?: number;
}

/** Forwards what may go once each operation of a request is allowed or refused (`refused`: the operations refused, with why). */
export type Decide = (allowed: Operation[], refused: Refusals<Operation>) => Promise<Map<Operation, UpstreamResult | Error>> | undefined;

export interface HandlerContext {
  readonly l: ListenerFacts;
  /** the identity that logged in (handlers run only after login) */
  readonly identity: Identity;
  readonly fetchSessions: FetchSessions;
  /** takes the request's place in the response order */
  slot(h: Header): Slot;
  /** fills a slot; slots leave in request order */
  complete(slot: Slot, data: Buffer | undefined): void;
  /** answers here, in the response order */
  localResponse(h: Header, version: number, body: Struct): void;
  encodeResponse(h: Header, body: Struct, version?: number): Buffer;
  responseBody(h: Header, frame: Buffer): Struct;
  /** the request re-encoded with another body (same header) */
  reencode(h: Header, body: Struct): Buffer;
  connectUpstream(): Promise<Socket>;
  /** writes a request upstream in the client's order; resolves with the response (undefined for acks=0) */
  send(up: Socket, frame: Buffer, expectResponse: boolean, streamTo?: Slot, place?: SendPlace): Promise<Buffer> | undefined;
  reserveSend(): SendPlace;
  cancelSend(place: SendPlace): void;
  /** whether another request may be handed on before it was forwarded (records in the pool) */
  canDetach(): boolean;
  /** the request at `place` was handed on: the connection's accounting waits for `forwarded` */
  detach(place: SendPlace, forwarded: Promise<void>): void;
  /** forwards unchanged; `transform` (if any) rewrites the decoded response */
  forward(frame: Buffer, h: Header, transform?: (res: Struct) => Promise<Struct>): Promise<void>;
  /** runs the operations through the controls chain; `decide` forwards once every one is allowed or refused */
  authorize(ops: Operation[], decide: Decide): { forwarded: Promise<void>; settled: Promise<unknown> };
  newOp(h: Header, n: NamedResource): Operation;
  permits(action: Action, resource: Resource): boolean;
  /** what the controls will need of this identity's records for `action` on `resource`, and whether they may let it go or hold it */
  needs(action: Action, resource: Resource): RecordNeeds;
  /** broker addresses in a response rewritten to the gateway's */
  rewriteBrokers(res: Struct, field: string, idField: string): Promise<Struct>;
  /** malformed or unserved input: audited, this connection closed */
  violation(message: string, h: Header | undefined): void;
  destroy(): void;
}

/** One Kafka API family: what the connection calls once the request is decoded and the client logged in. */
export type Handler = (ctx: HandlerContext, frame: Buffer, h: Header, body: Struct) => Promise<void>;
