// The Kafka handler registry: which APIs and versions are served at all (anything else is
// refused here, fail closed), and which handler serves an API once the client has logged in.
// APIs not listed are served by `resources` (authorized by the resources apis.ts says they
// name). SASL is the connection's own (login.ts), as is ApiVersions before login.

import { API, MAX_VERSION, SUPPORTED } from '../apis.ts';
import type { MessageCodec } from '../codec.ts';
import type { Handler } from '../context.ts';
import type { MessageRegistry } from '../messages.ts';
import { apiVersions, passthrough } from './api-versions.ts';
import { describeCluster, listGroups, resources } from './admin.ts';
import { fetch } from './fetch.ts';
import { metadata } from './metadata.ts';
import { produce } from './produce.ts';

const HANDLERS: ReadonlyMap<number, Handler> = new Map<number, Handler>([
  [API.ApiVersions, apiVersions],
  [API.Produce, produce],
  [API.Fetch, fetch],
  [API.Metadata, metadata],
  [API.DescribeCluster, describeCluster],
  [API.ListGroups, listGroups],
]);

/** The handler of a served API (logged-in clients only). */
export function handlerFor(apiKey: number, passthroughApis: ReadonlySet<number>): Handler {
  return HANDLERS.get(apiKey) ?? (passthroughApis.has(apiKey) && !SUPPORTED.has(apiKey) ? passthrough : resources);
}

/**
 * Whether the gateway serves this API at all, and in which versions: the ones both Kafka's
 * message definitions and the gateway's own ceiling (apis.ts MAX_VERSION) allow.
 */
export function served(reg: MessageRegistry, passthroughApis: ReadonlySet<number>, apiKey: number): { codec: MessageCodec; min: number; max: number } | undefined {
  const codec = reg.requests.get(apiKey);
  if (!codec || (!SUPPORTED.has(apiKey) && !passthroughApis.has(apiKey))) return undefined;
  const [min, max] = codec.validVersions;
  return { codec, min, max: Math.min(max, MAX_VERSION[apiKey] ?? max) };
}
