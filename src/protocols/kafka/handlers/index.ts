// The Kafka handler registry: which handler serves an API once the client has logged in.
// APIs not listed are served by `resources` (authorized by the resources apis.ts says they
// name); APIs the gateway does not serve never get here (the connection refuses them, fail
// closed). ApiVersions and SASL are the connection's own: they run before login.

import { API } from '../apis.ts';
import type { Handler } from '../context.ts';
import { describeCluster, listGroups, resources } from './admin.ts';
import { fetch } from './fetch.ts';
import { metadata } from './metadata.ts';
import { produce } from './produce.ts';

const HANDLERS: ReadonlyMap<number, Handler> = new Map<number, Handler>([
  [API.Produce, produce],
  [API.Fetch, fetch],
  [API.Metadata, metadata],
  [API.DescribeCluster, describeCluster],
  [API.ListGroups, listGroups],
]);

/** The handler of a served API (logged-in clients only). */
export function handlerFor(apiKey: number): Handler {
  return HANDLERS.get(apiKey) ?? resources;
}
