// Kafka frame headers and bodies, one codec for the listener (client frames) and the
// gateway's own broker connections: request header v1/v2 and response header v0/v1 by the
// API's flexible versions (ApiVersions answers always use header v0, KIP-511).

import type { Struct } from './codec.ts';
import type { MessageRegistry } from './messages.ts';

const API_VERSIONS = 18;

/** A request frame's header (the frame starts with its 4-byte size). */
export interface RequestHeader {
  apiKey: number;
  version: number;
  correlationId: number;
  clientId: string | null;
  /** where the body starts in the frame */
  bodyOffset: number;
}

export function decodeRequestHeader(reg: MessageRegistry, frame: Buffer): RequestHeader {
  const apiKey = frame.readInt16BE(4);
  const version = frame.readInt16BE(6);
  const codec = reg.requests.get(apiKey);
  const flexible = codec ? codec.isFlexible(version) : false;
  const { value, offset } = reg.requestHeader.decode(frame, 4, flexible ? 2 : 1);
  return { apiKey, version, correlationId: value.CorrelationId as number, clientId: (value.ClientId as string | null) ?? null, bodyOffset: offset };
}

/** Encodes one request frame (size + header + body). */
export function encodeRequest(reg: MessageRegistry, apiKey: number, version: number, correlationId: number, body: Struct, clientId: string | null = 'streamgate'): Buffer {
  const codec = reg.requests.get(apiKey)!;
  const w = reg.requestHeader.encode({ RequestApiKey: apiKey, RequestApiVersion: version, CorrelationId: correlationId, ClientId: clientId }, codec.isFlexible(version) ? 2 : 1);
  codec.encode(body, version, w);
  return w.finish(true);
}

function responseHeaderVersion(reg: MessageRegistry, apiKey: number, version: number): number {
  return apiKey !== API_VERSIONS && reg.responses.get(apiKey)!.isFlexible(version) ? 1 : 0;
}

/** Encodes one response frame (size + header + body). */
export function encodeResponse(reg: MessageRegistry, apiKey: number, version: number, correlationId: number, body: Struct): Buffer {
  const w = reg.responseHeader.encode({ CorrelationId: correlationId }, responseHeaderVersion(reg, apiKey, version));
  reg.responses.get(apiKey)!.encode(body, version, w);
  return w.finish(true);
}

/** Decodes a response frame (with its size prefix): its correlation id and body. */
export function decodeResponseFrame(reg: MessageRegistry, apiKey: number, version: number, frame: Buffer): { correlationId: number; body: Struct } {
  const { value, offset } = reg.responseHeader.decode(frame, 4, responseHeaderVersion(reg, apiKey, version));
  return { correlationId: value.CorrelationId as number, body: reg.responses.get(apiKey)!.decode(frame, offset, version).value };
}

/** Decodes a response frame's body. */
export function decodeResponse(reg: MessageRegistry, apiKey: number, version: number, frame: Buffer): Struct {
  return decodeResponseFrame(reg, apiKey, version, frame).body;
}

/**
 * The answer re-encoded with throttle_time_ms raised to at least `ms` (KIP-219), or `frame`
 * itself when the API's answer has no such field.
 */
export function withThrottleTime(reg: MessageRegistry, apiKey: number, version: number, frame: Buffer, ms: number): Buffer {
  if (!reg.responses.has(apiKey)) return frame;
  const { correlationId, body } = decodeResponseFrame(reg, apiKey, version, frame);
  if (!('ThrottleTimeMs' in body)) return frame;
  body.ThrottleTimeMs = Math.max(Number(body.ThrottleTimeMs), ms);
  return encodeResponse(reg, apiKey, version, correlationId, body);
}
