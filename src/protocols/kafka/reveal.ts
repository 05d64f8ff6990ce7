// What a broker's answer may reveal to the identity that asked, filtered before it leaves.
// The broker answers the gateway's own principal, which sees everything: every response
// that lists topics (or broker addresses) the request did not name is cut down here to
// what the identity may describe. Pure functions over decoded responses, so each rule is
// unit-tested without a broker; the listener applies them (see SECURITY.md, "Kafka APIs").

import type { Struct } from './codec.ts';

export type CanDescribe = (topic: string) => boolean;

const list = (v: unknown): Struct[] => (Array.isArray(v) ? (v as Struct[]) : []);

/**
 * OffsetFetch: a request with a null topic list asks for every topic the group committed
 * offsets for, including topics the identity may not describe. Those are dropped (the
 * topics a request names were authorized before it left and stay).
 */
export function filterOffsetFetch(res: Struct, version: number, canDescribe: CanDescribe): Struct {
  const keep = (topics: unknown) => list(topics).filter((t) => typeof t.Name === 'string' && canDescribe(t.Name));
  if (version >= 8) for (const g of list(res.Groups)) g.Topics = keep(g.Topics);
  else res.Topics = keep(res.Topics);
  return res;
}

/**
 * ConsumerGroupDescribe: members list the topics they subscribed to and their assignments
 * (names and ids). Topics the identity may not describe are removed from both; a member's
 * regex stays (the gateway refuses regex subscriptions it cannot authorize).
 */
export function filterConsumerGroupDescribe(res: Struct, canDescribe: CanDescribe): Struct {
  const assignment = (a: unknown) => {
    if (!a || typeof a !== 'object') return;
    const s = a as Struct;
    s.TopicPartitions = list(s.TopicPartitions).filter((tp) => typeof tp.TopicName === 'string' && canDescribe(tp.TopicName));
  };
  for (const g of list(res.Groups)) {
    for (const m of list(g.Members)) {
      if (Array.isArray(m.SubscribedTopicNames)) m.SubscribedTopicNames = (m.SubscribedTopicNames as unknown[]).filter((t): t is string => typeof t === 'string' && canDescribe(t));
      assignment(m.Assignment);
      assignment(m.TargetAssignment);
    }
  }
  return res;
}

/** Broker and broker-logger config resources (DescribeConfigs ResourceType 4 and 8). */
const BROKER_RESOURCES = new Set([4, 8]);

/** Broker config keys whose values hold host names or addresses. */
const ADDRESS_CONFIG = /(^|\.)(advertised\.)?listeners$|quorum\.(voters|bootstrap\.servers)$|bootstrap\.servers$|(^|\.)host(\.name)?$|\.endpoint|\.url$|^zookeeper\.connect$/;

/**
 * DescribeConfigs: a broker's configuration names the broker's real addresses (listeners,
 * advertised listeners, the controller quorum), which the gateway never tells clients. Those
 * values, and any other value that contains a known broker host, come back as null and
 * sensitive, as the broker itself answers for passwords.
 */
export function redactBrokerConfigs(res: Struct, brokerHosts: ReadonlySet<string>): Struct {
  const hosts = [...brokerHosts].filter((h) => h.length > 0);
  const reveals = (name: unknown, value: unknown) =>
    typeof value === 'string' && value !== '' && ((typeof name === 'string' && ADDRESS_CONFIG.test(name)) || hosts.some((h) => value.includes(h)));
  for (const r of list(res.Results)) {
    if (!BROKER_RESOURCES.has(r.ResourceType as number)) continue;
    for (const c of list(r.Configs)) {
      if (reveals(c.Name, c.Value)) {
        c.Value = null;
        c.IsSensitive = true;
      }
      for (const s of list(c.Synonyms)) if (reveals(s.Name, s.Value) || c.IsSensitive === true) s.Value = null;
    }
  }
  return res;
}
