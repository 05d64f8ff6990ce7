import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Policy } from '../src/policy/policy.ts';
import type { Identity } from '../src/operation.ts';
import { API, errorResponse, requestElements, resourcesOf } from '../src/protocols/kafka/apis.ts';
import { loadMessages } from '../src/protocols/kafka/messages.ts';
import { summarize } from '../src/protocols/kafka/batches.ts';

// Unit level: group / transactional-id / cluster grants, the resources each Kafka request
// names, and error responses built in the API's own shape.

const identity = (roles: string[], sub = 'alice'): Identity => ({ subject: sub, issuer: 'i', roles, groups: [], claims: { sub } });

const policy = new Policy({
  roles: { reader: { when: { groups: ['r'] } }, admin: { when: { groups: ['a'] } } },
  grants: [
    { roles: ['reader'], actions: ['consume', 'describe'], topics: ['orders'], effect: 'allow' },
    { roles: ['reader'], actions: ['consume'], groups: ['{sub}-*'], effect: 'allow' },
    { roles: ['reader'], actions: ['produce'], transactionalIds: ['tx-{sub}'], effect: 'allow' },
    { roles: ['admin'], actions: ['admin', 'describe'], topics: ['*'], groups: ['*'], cluster: true, effect: 'allow' },
  ],
});

test('groups, transactional ids and the cluster have their own grants; topic grants do not leak to them', () => {
  const reader = identity(['reader']);
  assert.equal(policy.decide(reader, 'consume', 'orders').allowed, true);
  assert.equal(policy.decide(reader, 'consume', 'orders', 'group').allowed, false, 'a topic glob is not a group glob');
  assert.equal(policy.decide(reader, 'consume', 'alice-g1', 'group').allowed, true);
  assert.equal(policy.decide(reader, 'consume', 'bob-g1', 'group').allowed, false);
  assert.equal(policy.decide(reader, 'produce', 'tx-alice', 'transactional-id').allowed, true);
  assert.equal(policy.decide(reader, 'produce', 'tx-bob', 'transactional-id').allowed, false);
  assert.equal(policy.decide(reader, 'describe', 'kafka-cluster', 'cluster').allowed, false);
  assert.equal(policy.decide(identity(['admin']), 'admin', 'kafka-cluster', 'cluster').allowed, true);
});

test('each request names its resources with the action Kafka would check', () => {
  assert.deepEqual(resourcesOf(API.Produce, 9, { TransactionalId: 'tx', TopicData: [{ Name: 't1' }, { Name: 't2' }] }), [
    { kind: 'transactional-id', name: 'tx', action: 'produce' },
    { kind: 'topic', name: 't1', action: 'produce' },
    { kind: 'topic', name: 't2', action: 'produce' },
  ]);
  assert.deepEqual(resourcesOf(API.FindCoordinator, 4, { KeyType: 1, CoordinatorKeys: ['tx'] }), [{ kind: 'transactional-id', name: 'tx', action: 'describe' }]);
  assert.deepEqual(resourcesOf(API.FindCoordinator, 3, { KeyType: 0, Key: 'g' }), [{ kind: 'group', name: 'g', action: 'describe' }]);
  assert.deepEqual(resourcesOf(API.ConsumerGroupHeartbeat, 0, { GroupId: 'g', SubscribedTopicNames: ['t'] }), [
    { kind: 'group', name: 'g', action: 'consume' },
    { kind: 'topic', name: 't', action: 'consume' },
  ]);
  assert.deepEqual(resourcesOf(API.TxnOffsetCommit, 3, { TransactionalId: 'tx', GroupId: 'g', Topics: [{ Name: 't' }] }).map((r) => r.kind), ['transactional-id', 'group', 'topic']);
  assert.deepEqual(resourcesOf(API.IncrementalAlterConfigs, 1, { Resources: [{ ResourceType: 2, ResourceName: 't' }, { ResourceType: 4, ResourceName: '1' }] }), [
    { kind: 'topic', name: 't', action: 'admin' },
    { kind: 'cluster', name: 'kafka-cluster', action: 'admin' },
  ]);
  assert.deepEqual(resourcesOf(API.InitProducerId, 4, { TransactionalId: null }), [], 'idempotent producers need only an identity');
  assert.deepEqual(resourcesOf(API.DeleteTopics, 5, { TopicNames: ['a'] }), [{ kind: 'topic', name: 'a', action: 'admin' }]);
});

test('requests that list independent resources are split per element; the rest are not', () => {
  const create = requestElements(API.CreateTopics, 7, { Topics: [{ Name: 'a' }, { Name: 'b' }], timeoutMs: 1 })!;
  assert.equal(create.list, 'Topics');
  assert.equal(create.responseList, 'Topics');
  assert.deepEqual(create.elements.map((e) => e.named), [[{ kind: 'topic', name: 'a', action: 'admin' }], [{ kind: 'topic', name: 'b', action: 'admin' }]]);
  // DeleteTopics lists plain names before v6 and structs from v6
  assert.deepEqual(requestElements(API.DeleteTopics, 5, { TopicNames: ['a'] })?.list, 'TopicNames');
  assert.deepEqual(requestElements(API.DeleteTopics, 6, { Topics: [{ Name: 'a' }] })?.responseList, 'Responses');
  const configs = requestElements(API.DescribeConfigs, 4, { Resources: [{ ResourceType: 2, ResourceName: 't' }, { ResourceType: 4, ResourceName: '1' }] })!;
  assert.equal(configs.responseList, 'Results');
  assert.deepEqual(configs.elements.map((e) => e.named[0]!.kind), ['topic', 'cluster']);
  assert.deepEqual(requestElements(API.DescribeGroups, 5, { Groups: ['g'] })?.elements[0]?.named, [{ kind: 'group', name: 'g', action: 'describe' }]);
  // a group with its topics, a transaction with its partitions: refused or forwarded whole
  assert.equal(requestElements(API.OffsetCommit, 9, { GroupId: 'g', Topics: [{ Name: 't' }] }), undefined);
  assert.equal(requestElements(API.AddPartitionsToTxn, 3, { V3AndBelowTransactionalId: 'tx', V3AndBelowTopics: [{ Name: 't' }] }), undefined);
});

test('error responses mirror the request per topic, partition, group and config resource', async () => {
  const reg = await loadMessages();
  const produce = errorResponse(API.Produce, reg.responses.get(API.Produce)!.defaults(9), { TopicData: [{ Name: 't', PartitionData: [{ Index: 3 }, { Index: 4 }] }] }, 29, 'no');
  const topic = (produce.Responses as Array<{ Name: string; PartitionResponses: Array<{ Index: number; ErrorCode: number; ErrorMessage: string }> }>)[0]!;
  assert.equal(topic.Name, 't');
  assert.deepEqual(topic.PartitionResponses.map((p) => [p.Index, p.ErrorCode, p.ErrorMessage]), [[3, 29, 'no'], [4, 29, 'no']]);
  // and the result encodes
  reg.responses.get(API.Produce)!.encode(produce, 9).finish();

  const fetch = errorResponse(API.Fetch, reg.responses.get(API.Fetch)!.defaults(12), { Topics: [{ Topic: 't', Partitions: [{ Partition: 0 }] }] }, 29, 'no');
  const fp = (fetch.Responses as Array<{ Topic: string; Partitions: Array<{ PartitionIndex: number; ErrorCode: number; HighWatermark: bigint }> }>)[0]!;
  assert.equal(fp.Topic, 't');
  assert.equal(fp.Partitions[0]!.ErrorCode, 29);
  assert.equal(fp.Partitions[0]!.HighWatermark, -1n);

  const join = errorResponse(API.JoinGroup, reg.responses.get(API.JoinGroup)!.defaults(9), { GroupId: 'g' }, 30, 'no');
  assert.equal(join.ErrorCode, 30);
  const describe = errorResponse(API.DescribeGroups, reg.responses.get(API.DescribeGroups)!.defaults(5), { Groups: ['g1', 'g2'] }, 30, 'no');
  assert.deepEqual((describe.Groups as Array<{ GroupId: string; ErrorCode: number }>).map((g) => [g.GroupId, g.ErrorCode]), [['g1', 30], ['g2', 30]]);
  const coordinator = errorResponse(API.FindCoordinator, reg.responses.get(API.FindCoordinator)!.defaults(4), { KeyType: 1, CoordinatorKeys: ['tx'] }, 53, 'no');
  assert.deepEqual((coordinator.Coordinators as Array<{ Key: string; ErrorCode: number }>).map((c) => [c.Key, c.ErrorCode]), [['tx', 53]]);
  const configs = errorResponse(API.DescribeConfigs, reg.responses.get(API.DescribeConfigs)!.defaults(4), { Resources: [{ ResourceType: 2, ResourceName: 't' }] }, 29, 'no');
  assert.deepEqual((configs.Results as Array<{ ResourceName: string; ErrorCode: number }>).map((c) => [c.ResourceName, c.ErrorCode]), [['t', 29]]);
});

test('record counts come from the batch headers; control batches and a trailing partial batch are skipped', () => {
  const batch = (count: number, control = false, size = 61 + 10) => {
    const b = Buffer.alloc(size);
    b.writeInt32BE(size - 12, 8);
    b.writeInt8(2, 16);
    b.writeInt16BE(control ? 0x20 : 0, 21);
    b.writeInt32BE(count, 57);
    return b;
  };
  const blob = Buffer.concat([batch(5), batch(1, true), batch(7), batch(9).subarray(0, 40)]);
  assert.deepEqual(summarize(blob), { records: 12, bytes: blob.length, batches: 3 });
  assert.deepEqual(summarize(null), { records: 0, bytes: 0, batches: 0 });
});
