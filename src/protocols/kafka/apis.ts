// Which Kafka APIs the gateway serves, up to which version, and which resources each
// request names (what the controls chain authorizes). An API missing here is refused
// (fail closed) unless the config lists it as passthrough.

import type { Action, ResourceKind } from '../../operation.ts';
import type { Struct } from './codec.ts';

export const API = {
  Produce: 0,
  Fetch: 1,
  ListOffsets: 2,
  Metadata: 3,
  OffsetCommit: 8,
  OffsetFetch: 9,
  FindCoordinator: 10,
  JoinGroup: 11,
  Heartbeat: 12,
  LeaveGroup: 13,
  SyncGroup: 14,
  DescribeGroups: 15,
  ListGroups: 16,
  SaslHandshake: 17,
  ApiVersions: 18,
  CreateTopics: 19,
  DeleteTopics: 20,
  DeleteRecords: 21,
  InitProducerId: 22,
  OffsetForLeaderEpoch: 23,
  AddPartitionsToTxn: 24,
  AddOffsetsToTxn: 25,
  EndTxn: 26,
  TxnOffsetCommit: 28,
  DescribeConfigs: 32,
  AlterConfigs: 33,
  SaslAuthenticate: 36,
  CreatePartitions: 37,
  DeleteGroups: 42,
  IncrementalAlterConfigs: 44,
  OffsetDelete: 47,
  DescribeCluster: 60,
  DescribeProducers: 61,
  DescribeTransactions: 65,
  ConsumerGroupHeartbeat: 68,
  ConsumerGroupDescribe: 69,
} as const;

/**
 * Highest version the gateway accepts where it is lower than Kafka's own: versions that
 * name topics by id instead of name (KIP-516) are not offered, so every request the
 * gateway authorizes carries topic names. Everything else: every version the JSON
 * definitions describe.
 */
export const MAX_VERSION: Partial<Record<number, number>> = {
  [API.Produce]: 12,
  [API.Fetch]: 12,
  [API.OffsetCommit]: 9,
  [API.OffsetFetch]: 9,
  [API.DeleteTopics]: 5,
};

export const SUPPORTED = new Set<number>(Object.values(API));

export interface Named {
  kind: ResourceKind;
  name: string;
  action: Action;
}

const CLUSTER = 'kafka-cluster';

const s = (v: unknown): Struct[] => (Array.isArray(v) ? (v as Struct[]) : []);
const str = (v: unknown): string[] => (Array.isArray(v) ? (v as unknown[]).filter((x): x is string => typeof x === 'string') : []);

function topics(list: unknown, field: string, action: Action, out: Named[]): void {
  for (const t of s(list)) {
    const name = t[field];
    // a topic named only by id cannot be authorized by name: fail closed with a name that matches no grant
    out.push({ kind: 'topic', name: typeof name === 'string' ? name : '<topic-id>', action });
  }
}

function configResources(list: unknown, write: boolean, out: Named[]): void {
  for (const r of s(list)) {
    const type = r.ResourceType as number;
    const name = String(r.ResourceName ?? '');
    if (type === 2) out.push({ kind: 'topic', name, action: write ? 'admin' : 'describe' });
    else out.push({ kind: 'cluster', name: CLUSTER, action: write ? 'admin' : 'describe' });
  }
}

/**
 * The resources a request names and the action each needs. Produce/Fetch/Metadata are
 * handled by the listener itself (per-topic filtering); requests that list independent
 * resources are split (requestElements); the rest are all-or-nothing.
 */
export function resourcesOf(apiKey: number, version: number, req: Struct): Named[] {
  const out: Named[] = [];
  const txn = (id: unknown) => {
    if (typeof id === 'string') out.push({ kind: 'transactional-id', name: id, action: 'produce' });
  };
  const group = (id: unknown, action: Action) => {
    if (typeof id === 'string') out.push({ kind: 'group', name: id, action });
  };
  switch (apiKey) {
    case API.Produce:
      txn(req.TransactionalId);
      topics(req.TopicData, 'Name', 'produce', out);
      break;
    case API.Fetch:
      topics(req.Topics, 'Topic', 'consume', out);
      break;
    case API.ListOffsets:
      topics(req.Topics, 'Name', 'consume', out);
      break;
    case API.OffsetCommit:
      group(req.GroupId, 'consume');
      topics(req.Topics, 'Name', 'consume', out);
      break;
    case API.OffsetFetch:
      if (version >= 8) {
        for (const g of s(req.Groups)) {
          group(g.GroupId, 'consume');
          topics(g.Topics, 'Name', 'describe', out);
        }
      } else {
        group(req.GroupId, 'consume');
        topics(req.Topics, 'Name', 'describe', out);
      }
      break;
    case API.FindCoordinator: {
      const keys = version >= 4 ? str(req.CoordinatorKeys) : [String(req.Key ?? '')];
      const kind: ResourceKind = req.KeyType === 1 ? 'transactional-id' : 'group';
      for (const k of keys) out.push({ kind, name: k, action: 'describe' });
      break;
    }
    case API.JoinGroup:
    case API.Heartbeat:
    case API.LeaveGroup:
    case API.SyncGroup:
    case API.ConsumerGroupHeartbeat:
      group(req.GroupId, 'consume');
      if (apiKey === API.ConsumerGroupHeartbeat) for (const t of str(req.SubscribedTopicNames)) out.push({ kind: 'topic', name: t, action: 'consume' });
      break;
    case API.DescribeGroups:
      for (const g of str(req.Groups)) group(g, 'describe');
      break;
    case API.ConsumerGroupDescribe:
      for (const g of str(req.GroupIds)) group(g, 'describe');
      break;
    case API.DeleteGroups:
      for (const g of str(req.GroupsNames)) group(g, 'admin');
      break;
    case API.OffsetDelete:
      group(req.GroupId, 'admin');
      topics(req.Topics, 'Name', 'consume', out);
      break;
    case API.CreateTopics:
    case API.CreatePartitions:
    case API.DeleteRecords:
      topics(req.Topics, 'Name', 'admin', out);
      break;
    case API.DeleteTopics:
      for (const t of str(req.TopicNames)) out.push({ kind: 'topic', name: t, action: 'admin' });
      topics(req.Topics, 'Name', 'admin', out);
      break;
    case API.InitProducerId:
      txn(req.TransactionalId); // null: idempotent producer, allowed for any authenticated identity
      break;
    case API.OffsetForLeaderEpoch:
      topics(req.Topics, 'Topic', 'describe', out);
      break;
    case API.AddPartitionsToTxn:
      if (version <= 3) {
        txn(req.V3AndBelowTransactionalId);
        topics(req.V3AndBelowTopics, 'Name', 'produce', out);
      } else {
        for (const t of s(req.Transactions)) {
          txn(t.TransactionalId);
          topics(t.Topics, 'Name', 'produce', out);
        }
      }
      break;
    case API.AddOffsetsToTxn:
      txn(req.TransactionalId);
      group(req.GroupId, 'consume');
      break;
    case API.EndTxn:
      txn(req.TransactionalId);
      break;
    case API.TxnOffsetCommit:
      txn(req.TransactionalId);
      group(req.GroupId, 'consume');
      topics(req.Topics, 'Name', 'consume', out);
      break;
    case API.DescribeConfigs:
      configResources(req.Resources, false, out);
      break;
    case API.AlterConfigs:
    case API.IncrementalAlterConfigs:
      configResources(req.Resources, true, out);
      break;
    case API.DescribeProducers:
      topics(req.Topics, 'Name', 'describe', out);
      break;
    case API.DescribeTransactions:
      for (const t of str(req.TransactionalIds)) out.push({ kind: 'transactional-id', name: t, action: 'describe' });
      break;
    default:
      break;
  }
  return out;
}

/**
 * APIs whose request is a list of independent resources that the broker answers one by one
 * (its own authorizer refuses an element, not the request): the list field of the request.
 * A refused element is answered with its own error and the others are forwarded. The
 * response list is the request's, or the one LISTS names.
 */
const PER_ELEMENT: Partial<Record<number, string>> = {
  [API.ListOffsets]: 'Topics',
  [API.CreateTopics]: 'Topics',
  [API.DeleteTopics]: 'Topics',
  [API.CreatePartitions]: 'Topics',
  [API.DeleteRecords]: 'Topics',
  [API.OffsetForLeaderEpoch]: 'Topics',
  [API.DescribeConfigs]: 'Resources',
  [API.AlterConfigs]: 'Resources',
  [API.IncrementalAlterConfigs]: 'Resources',
  [API.DescribeGroups]: 'Groups',
  [API.DeleteGroups]: 'GroupsNames',
  [API.ConsumerGroupDescribe]: 'GroupIds',
  [API.DescribeProducers]: 'Topics',
  [API.DescribeTransactions]: 'TransactionalIds',
  [API.FindCoordinator]: 'CoordinatorKeys',
};

/** One element of a per-element request with the resources it names. */
export interface RequestElement {
  element: unknown;
  named: Named[];
}

/**
 * For a per-element API (see PER_ELEMENT): its request list field, its response list field
 * and each element with the resources it names; undefined for other APIs and for versions
 * that list resources elsewhere (DeleteTopics before v6 lists plain names).
 */
export function requestElements(apiKey: number, version: number, req: Struct): { list: string; responseList: string; elements: RequestElement[] } | undefined {
  let list = PER_ELEMENT[apiKey];
  if (apiKey === API.DeleteTopics && !Array.isArray(req.Topics)) list = 'TopicNames';
  if (!list || !Array.isArray(req[list])) return undefined;
  const elements = (req[list] as unknown[]).map((element) => ({ element, named: resourcesOf(apiKey, version, { ...req, [list]: [element] }) }));
  return { list, responseList: LISTS[apiKey]?.[list] ?? list, elements };
}

// Kafka error codes the gateway produces itself
export const ERR = {
  NONE: 0,
  UNKNOWN_SERVER_ERROR: -1,
  CORRUPT_MESSAGE: 2,
  MESSAGE_TOO_LARGE: 10,
  REQUEST_TIMED_OUT: 7,
  TOPIC_AUTHORIZATION_FAILED: 29,
  GROUP_AUTHORIZATION_FAILED: 30,
  CLUSTER_AUTHORIZATION_FAILED: 31,
  UNSUPPORTED_SASL_MECHANISM: 33,
  ILLEGAL_SASL_STATE: 34,
  UNSUPPORTED_VERSION: 35,
  INVALID_REQUEST: 42,
  POLICY_VIOLATION: 44,
  INVALID_RECORD: 87,
  THROTTLING_QUOTA_EXCEEDED: 89,
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: 53,
  SASL_AUTHENTICATION_FAILED: 58,
} as const;

export function authorizationError(kind: ResourceKind): number {
  switch (kind) {
    case 'group':
      return ERR.GROUP_AUTHORIZATION_FAILED;
    case 'transactional-id':
      return ERR.TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    case 'cluster':
      return ERR.CLUSTER_AUTHORIZATION_FAILED;
    default:
      return ERR.TOPIC_AUTHORIZATION_FAILED;
  }
}

// Response fields that echo a request's key fields, by name (request -> response)
const ECHO: Record<string, string> = {
  Name: 'Name',
  Topic: 'Topic',
  TopicId: 'TopicId',
  Index: 'Index',
  Partition: 'Partition',
  PartitionIndex: 'PartitionIndex',
  GroupId: 'GroupId',
  ResourceType: 'ResourceType',
  ResourceName: 'ResourceName',
  TransactionalId: 'TransactionalId',
};

// Request list field -> response list field, where the names differ
const LISTS: Record<number, Record<string, string>> = {
  [API.Produce]: { TopicData: 'Responses', PartitionData: 'PartitionResponses' },
  [API.Fetch]: { Topics: 'Responses' },
  [API.DeleteTopics]: { Topics: 'Responses', TopicNames: 'Responses' },
  [API.CreatePartitions]: { Topics: 'Results' },
  [API.DescribeConfigs]: { Resources: 'Results' },
  [API.AlterConfigs]: { Resources: 'Responses' },
  [API.IncrementalAlterConfigs]: { Resources: 'Responses' },
  [API.DeleteGroups]: { GroupsNames: 'Results' },
  [API.DeleteRecords]: { Topics: 'Topics' },
  [API.FindCoordinator]: { CoordinatorKeys: 'Coordinators' },
  [API.ConsumerGroupDescribe]: { GroupIds: 'Groups' },
  [API.DescribeTransactions]: { TransactionalIds: 'TransactionStates' },
  [API.DescribeProducers]: { PartitionIndexes: 'Partitions' },
  [API.OffsetFetch]: { PartitionIndexes: 'Partitions' },
  [API.AddPartitionsToTxn]: { V3AndBelowTopics: 'ResultsByTopicV3AndBelow', Transactions: 'ResultsByTransaction', Topics: 'TopicResults', Partitions: 'ResultsByPartition' },
};

// Elements of a request list of strings become this field of the response element
const STRING_KEY: Record<string, string> = {
  Groups: 'GroupId',
  GroupIds: 'GroupId',
  GroupsNames: 'GroupId',
  TopicNames: 'Name',
  CoordinatorKeys: 'Key',
  TransactionalIds: 'TransactionalId',
};

const ERROR_FIELDS = ['ErrorCode', 'PartitionErrorCode'];

/**
 * Fills an all-defaults response with `code` at every level: the top-level error code
 * where the version has one, and one entry per requested resource (mirroring the
 * request's lists) where errors are per topic, partition, group or config resource.
 */
export function errorResponse(apiKey: number, res: Struct, req: Struct, code: number, message: string): Struct {
  fill(apiKey, res, req, code, message);
  return res;
}

function fill(apiKey: number, res: Struct, req: Struct, code: number, message: string): void {
  for (const f of ERROR_FIELDS) if (f in res) res[f] = code;
  if ('ErrorMessage' in res) res.ErrorMessage = message;
  if ('HighWatermark' in res) res.HighWatermark = -1n;
  for (const [reqField, reqValue] of Object.entries(req)) {
    if (!Array.isArray(reqValue)) continue;
    const resField = LISTS[apiKey]?.[reqField] ?? reqField;
    const template = res[`${resField}`];
    if (!Array.isArray(template)) continue;
    const proto = res[`__proto_${resField}`] as (() => Struct) | undefined;
    if (!proto) continue;
    res[resField] = reqValue.map((el: unknown) => {
      const out = proto();
      if (typeof el === 'string' || typeof el === 'number') {
        const key = STRING_KEY[reqField];
        if (key && key in out) out[key] = el;
        if ('PartitionIndex' in out && typeof el === 'number') out.PartitionIndex = el;
      } else {
        const e = el as Struct;
        for (const [from, to] of Object.entries(ECHO)) if (from in e && to in out) out[to] = e[from];
        if ('Partition' in e && 'PartitionIndex' in out) out.PartitionIndex = e.Partition;
        fill(apiKey, out, e, code, message);
      }
      for (const f of ERROR_FIELDS) if (f in out) out[f] = code;
      if ('ErrorMessage' in out) out.ErrorMessage = message;
      return out;
    });
  }
}
