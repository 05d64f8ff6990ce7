// Diagnostics channels of the Kafka listener: every frame read from a client, written to a
// client and written to a broker. Free without subscribers; the tests use them to prove what
// reached the broker and what left the gateway.

import { channel } from 'node:diagnostics_channel';

/**
 * Every response frame written to a client, for tests and diagnostics (e.g. asserting
 * that no broker address ever leaves the gateway). Costs nothing without subscribers.
 */
export const responseChannel = channel('streamgate:kafka:response');
/** Every request frame read from a client (with its size prefix), before any decision. */
export const requestChannel = channel('streamgate:kafka:request');
/** Every frame the gateway writes to a broker for a client connection, and every broker connection it opens for one. */
export const upstreamChannel = channel('streamgate:kafka:upstream');
/** Every answer frame a broker sends on a client connection's broker link, as it arrives (before any decision on it). */
export const brokerAnswerChannel = channel('streamgate:kafka:broker-answer');
export interface UpstreamMessage {
  session: string;
  /** undefined: a broker connection was opened */
  frame?: Buffer;
}
export interface ResponseMessage {
  apiKey: number;
  version: number;
  frame: Buffer;
}
