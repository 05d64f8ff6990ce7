// The gateway's account of every Kafka API it serves: what a request can cause at the broker
// (including through the defaults of old versions, null lists and regexes), what the gateway
// authorizes before anything leaves, and what the answer may reveal and how it is cut down.
// SECURITY.md's "Kafka APIs" table is rendered from this list and a test keeps the two equal
// (test/kafka-enforcement.test.ts walks every API and advertised version against the broker).
// An API missing here is not served: apis.ts and this table must name the same keys.

import { API, MAX_VERSION } from './apis.ts';

export interface Enforcement {
  /** what a request can make the broker do or read, old-version defaults included */
  causes: string;
  /** what the gateway checks before forwarding (actions per resource kind) */
  authorizes: string;
  /** what the response can reveal and what the gateway does about it */
  reveals: string;
}

export const ENFORCEMENT: Record<number, Enforcement> = {
  [API.Produce]: {
    causes: 'writes records; a transactional id joins its transaction',
    authorizes: 'produce per topic (refused topics cut out, the rest forwarded); produce on the transactional id (refuses all); records inspected per topic rules',
    reveals: 'offsets of the forwarded topics; NodeEndpoints rewritten to gateway ports',
  },
  [API.Fetch]: {
    causes: 'reads records; opens, extends or closes an incremental fetch session (KIP-227)',
    authorizes: 'consume per named topic; a session is served only on the connection that opened it (others: FETCH_SESSION_ID_NOT_FOUND) and every topic it serves is authorized again per request (no longer allowed: forgotten at the broker, answered TOPIC_AUTHORIZATION_FAILED); follower fetches refused',
    reveals: 'records, masked per reader role where rules apply; a topic neither named nor in the session is withheld',
  },
  [API.ListOffsets]: {
    causes: 'reads offsets',
    authorizes: 'consume per topic (per element)',
    reveals: 'offsets of allowed topics; refused topics answered with their error',
  },
  [API.Metadata]: {
    causes: 'lists topics (null, or an empty list in v0, means every topic); auto-creates requested topics (v0-v3: always, by default)',
    authorizes: 'describe per named topic; auto-creation only with admin on every named topic; v0-v3 are forwarded as v4 so creation is decided the same way',
    reveals: 'topics filtered to those the identity may describe; brokers rewritten to gateway ports',
  },
  [API.OffsetCommit]: {
    causes: 'commits group offsets',
    authorizes: 'consume on the group and on every topic (all or nothing)',
    reveals: 'per-partition results of the request',
  },
  [API.OffsetFetch]: {
    causes: 'reads committed offsets; a null topic list means every topic the group committed',
    authorizes: 'consume on the group; describe per named topic (all or nothing)',
    reveals: 'topics filtered to those the identity may describe (the null list included)',
  },
  [API.FindCoordinator]: {
    causes: 'locates (and may create the internal topic of) a group or transaction coordinator',
    authorizes: 'describe per group or transactional id (per key from v4)',
    reveals: 'coordinator addresses rewritten to gateway ports; refused keys answered with their error',
  },
  [API.JoinGroup]: {
    causes: 'joins a classic consumer group',
    authorizes: 'consume on the group',
    reveals: "members' subscription metadata (opaque to the gateway) to the leader",
  },
  [API.Heartbeat]: { causes: 'keeps a classic group membership', authorizes: 'consume on the group', reveals: 'an error code' },
  [API.LeaveGroup]: { causes: 'removes members from a classic group', authorizes: 'consume on the group', reveals: 'member ids of the request' },
  [API.SyncGroup]: {
    causes: 'distributes a classic group assignment',
    authorizes: 'consume on the group',
    reveals: "the member's assignment (opaque bytes chosen by the group leader)",
  },
  [API.DescribeGroups]: {
    causes: 'reads group state',
    authorizes: 'describe per group (per element)',
    reveals: "members and their subscription/assignment bytes (not decoded; the same as the broker's own authorizer reveals)",
  },
  [API.ListGroups]: {
    causes: 'lists every group',
    authorizes: 'an identity',
    reveals: 'groups filtered to those the identity may describe',
  },
  [API.SaslHandshake]: { causes: 'nothing upstream (terminated at the gateway)', authorizes: 'none (before login)', reveals: 'the mechanisms offered' },
  [API.ApiVersions]: {
    causes: 'nothing upstream before login (answered from the versions the gateway learned on its own connection)',
    authorizes: 'none (before login); forwarded after login',
    reveals: 'APIs and versions capped at what the gateway serves',
  },
  [API.CreateTopics]: { causes: 'creates topics', authorizes: 'admin per topic (per element)', reveals: 'results per topic' },
  [API.DeleteTopics]: { causes: 'deletes topics (by name; versions naming topics by id are not offered)', authorizes: 'admin per topic (per element)', reveals: 'results per topic' },
  [API.DeleteRecords]: { causes: 'truncates partitions', authorizes: 'admin per topic (per element)', reveals: 'low watermarks of allowed topics' },
  [API.InitProducerId]: {
    causes: 'allocates a producer id; with a transactional id, fences its previous producer',
    authorizes: 'produce on the transactional id; none for an idempotent producer (null id)',
    reveals: 'a producer id and epoch',
  },
  [API.OffsetForLeaderEpoch]: { causes: 'reads epoch end offsets', authorizes: 'describe per topic (per element)', reveals: 'offsets of allowed topics' },
  [API.AddPartitionsToTxn]: {
    causes: 'adds partitions to transactions (v4+: several transactions)',
    authorizes: 'produce on each transactional id and on every topic (all or nothing)',
    reveals: 'per-partition results of the request',
  },
  [API.AddOffsetsToTxn]: { causes: 'adds a group to a transaction', authorizes: 'produce on the transactional id, consume on the group', reveals: 'an error code' },
  [API.EndTxn]: { causes: 'commits or aborts a transaction', authorizes: 'produce on the transactional id', reveals: 'an error code' },
  [API.TxnOffsetCommit]: {
    causes: 'commits offsets inside a transaction',
    authorizes: 'produce on the transactional id; consume on the group and every topic (all or nothing)',
    reveals: 'per-partition results of the request',
  },
  [API.DescribeConfigs]: {
    causes: 'reads topic, broker and logger configs',
    authorizes: 'describe per topic, or on the cluster for broker resources (per element)',
    reveals: 'broker config values that hold addresses (listeners, quorum, any value naming a broker host) withheld as sensitive',
  },
  [API.AlterConfigs]: { causes: 'changes configs', authorizes: 'admin per topic, or on the cluster (per element)', reveals: 'results per resource' },
  [API.SaslAuthenticate]: { causes: 'nothing upstream (the token is verified at the gateway)', authorizes: 'the credential itself; re-authentication keeps the principal', reveals: 'the session lifetime' },
  [API.CreatePartitions]: { causes: 'adds partitions', authorizes: 'admin per topic (per element)', reveals: 'results per topic' },
  [API.DeleteGroups]: { causes: 'deletes groups', authorizes: 'admin per group (per element)', reveals: 'results per group' },
  [API.IncrementalAlterConfigs]: { causes: 'changes configs', authorizes: 'admin per topic, or on the cluster (per element)', reveals: 'results per resource' },
  [API.OffsetDelete]: { causes: 'deletes committed offsets', authorizes: 'admin on the group, consume on every topic (all or nothing)', reveals: 'per-partition results of the request' },
  [API.DescribeCluster]: {
    causes: 'reads the cluster id and brokers',
    authorizes: 'an identity',
    reveals: 'brokers rewritten to gateway ports',
  },
  [API.DescribeProducers]: {
    causes: 'reads active producers of partitions',
    authorizes: 'describe per topic (per element)',
    reveals: 'producer ids of allowed topics; each refused partition carries TOPIC_AUTHORIZATION_FAILED',
  },
  [API.DescribeTransactions]: { causes: 'reads transaction state', authorizes: 'describe per transactional id (per element)', reveals: 'partitions of allowed transactions' },
  [API.ConsumerGroupHeartbeat]: {
    causes: 'joins a KIP-848 group and subscribes to topics by name or by a regex the broker resolves against every topic',
    authorizes: 'consume on the group and every subscribed topic; a regex only for an identity that may consume every topic (else TOPIC_AUTHORIZATION_FAILED)',
    reveals: 'the assignment, as topic ids of the subscribed topics',
  },
  [API.ConsumerGroupDescribe]: {
    causes: 'reads KIP-848 group state',
    authorizes: 'describe per group (per element)',
    reveals: "members' subscribed topics and assignments filtered to topics the identity may describe",
  },
};

/** The SECURITY.md table: one row per API, with the versions the gateway serves (`versions` from the message definitions). */
export function enforcementTable(names: ReadonlyMap<number, string>, versions: (apiKey: number) => [number, number] | undefined): string {
  const rows = Object.entries(ENFORCEMENT)
    .map(([k, e]) => [Number(k), e] as const)
    .sort(([a], [b]) => a - b)
    .map(([key, e]) => {
      const range = versions(key);
      const v = range ? (range[0] === range[1] ? `${range[0]}` : `${range[0]}-${range[1]}`) : '-';
      return `| ${names.get(key) ?? key} (${key}) | ${v} | ${e.causes} | ${e.authorizes} | ${e.reveals} |`;
    });
  return ['| API (key) | versions | what a request can cause | what the gateway authorizes | what the answer may reveal, and the filter |', '|---|---|---|---|---|', ...rows].join('\n');
}

/** Versions the gateway serves of an API: the definitions' range, capped where apis.ts caps it. */
export function servedVersions(valid: [number, number], apiKey: number): [number, number] {
  return [valid[0], Math.min(valid[1], MAX_VERSION[apiKey] ?? valid[1])];
}
