import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FetchSessions } from '../src/protocols/kafka/fetch-sessions.ts';
import { filterConsumerGroupDescribe, filterOffsetFetch, redactBrokerConfigs } from '../src/protocols/kafka/reveal.ts';
import { Policy } from '../src/policy/policy.ts';
import type { Identity } from '../src/operation.ts';

// Unit level: fetch sessions bound to their connection, and what responses may reveal.

const t = (topic: string, ...partitions: number[]) => ({ topic, partitions });

test('a fetch session is served only on the connection that opened it, with the partitions it named', () => {
  const s = new FetchSessions();
  assert.deepEqual(s.plan(undefined, undefined), { kind: 'sessionless', forwardId: 0 }, 'Fetch before v7');
  assert.deepEqual(s.plan(0, -1), { kind: 'sessionless', forwardId: 0 });
  const open = s.plan(0, 0);
  assert.equal(open.kind, 'new');
  s.settle(open, [t('a', 0, 1), t('b', 0)], [], 0, 42);
  assert.ok(s.has(42));
  // another connection's id (or a guessed one) is foreign and never forwarded
  assert.deepEqual(s.plan(43, 1), { kind: 'foreign', id: 43 });
  assert.deepEqual(new FetchSessions().plan(42, 1), { kind: 'foreign', id: 42 });
  // a full fetch naming someone else's session must not close it at the broker
  assert.deepEqual(s.plan(43, -1), { kind: 'sessionless', forwardId: 0 });
  assert.deepEqual(s.plan(43, 0), { kind: 'new', forwardId: 0 });
  const inc = s.plan(42, 1);
  assert.deepEqual(inc, { kind: 'incremental', forwardId: 42, id: 42 });
  assert.deepEqual(s.topics(inc).sort(), ['a', 'b']);
  // an incremental adds partitions and forgets others
  s.settle(inc, [t('c', 3)], [t('a', 0, 1)], 0, 42);
  assert.deepEqual(s.topics(s.plan(42, 2)).sort(), ['b', 'c']);
  assert.deepEqual(s.partitions(s.plan(42, 2), 'c'), [3]);
  // the broker lost it: forgotten here too
  s.settle(s.plan(42, 3), [], [], 70, 0);
  assert.equal(s.has(42), false);
  // a failed open registers nothing
  s.settle(s.plan(0, 0), [t('a', 0)], [], 29, 0);
  assert.equal(s.size, 0);
});

test('closing and replacing sessions; the oldest beyond the bound is forgotten', () => {
  const s = new FetchSessions(2);
  s.settle(s.plan(0, 0), [t('a', 0)], [], 0, 1);
  s.settle(s.plan(0, 0), [t('a', 0)], [], 0, 2);
  s.settle(s.plan(0, 0), [t('a', 0)], [], 0, 3);
  assert.equal(s.has(1), false);
  assert.ok(s.has(2) && s.has(3));
  const close = s.plan(2, -1);
  assert.deepEqual(close, { kind: 'close', forwardId: 2, closes: 2 });
  s.settle(close, [t('a', 0)], [], 0, 0);
  assert.equal(s.has(2), false);
  // epoch 0 on an own session: the broker closes it and opens another
  const renew = s.plan(3, 0);
  assert.deepEqual(renew, { kind: 'new', forwardId: 3, closes: 3 });
  s.settle(renew, [t('b', 0)], [], 0, 4);
  assert.equal(s.has(3), false);
  assert.deepEqual(s.topics(s.plan(4, 1)), ['b']);
});

const canDescribe = (topic: string) => topic.startsWith('ok.');

test('OffsetFetch answers keep only topics the identity may describe, in every layout', () => {
  const old = filterOffsetFetch({ Topics: [{ Name: 'ok.a' }, { Name: 'secret.b' }], ErrorCode: 0 }, 7, canDescribe);
  assert.deepEqual((old.Topics as Array<{ Name: string }>).map((x) => x.Name), ['ok.a']);
  const grouped = filterOffsetFetch({ Groups: [{ GroupId: 'g', Topics: [{ Name: 'secret.b' }, { Name: 'ok.c' }] }] }, 8, canDescribe);
  assert.deepEqual(((grouped.Groups as Array<{ Topics: Array<{ Name: string }> }>)[0]!.Topics).map((x) => x.Name), ['ok.c']);
});

test('ConsumerGroupDescribe hides subscriptions and assignments of topics the identity may not describe', () => {
  const res = filterConsumerGroupDescribe(
    {
      Groups: [
        {
          GroupId: 'g',
          Members: [
            {
              SubscribedTopicNames: ['ok.a', 'secret.b'],
              Assignment: { TopicPartitions: [{ TopicId: 'id-a', TopicName: 'ok.a', Partitions: [0] }, { TopicId: 'id-b', TopicName: 'secret.b', Partitions: [0] }] },
              TargetAssignment: { TopicPartitions: [{ TopicId: 'id-b', TopicName: 'secret.b', Partitions: [1] }] },
            },
          ],
        },
      ],
    },
    canDescribe,
  );
  const text = JSON.stringify(res);
  assert.ok(text.includes('ok.a'));
  assert.equal(text.includes('secret.b'), false);
  assert.equal(text.includes('id-b'), false, 'the hidden topic id goes with its name');
});

test('broker configs never carry a broker address; topic configs are untouched', () => {
  const res = redactBrokerConfigs(
    {
      Results: [
        {
          ResourceType: 4,
          Configs: [
            { Name: 'listeners', Value: 'PLAINTEXT://10.0.0.5:9092', IsSensitive: false, Synonyms: [{ Name: 'listeners', Value: 'PLAINTEXT://10.0.0.5:9092' }] },
            { Name: 'advertised.listeners', Value: 'PLAINTEXT://kafka-1.internal:9092', IsSensitive: false, Synonyms: [] },
            { Name: 'controller.quorum.voters', Value: '1@10.0.0.5:9093', IsSensitive: false, Synonyms: [] },
            { Name: 'some.plugin.config', Value: 'connect to kafka-1.internal please', IsSensitive: false, Synonyms: [] },
            { Name: 'num.partitions', Value: '3', IsSensitive: false, Synonyms: [{ Name: 'num.partitions', Value: '3' }] },
          ],
        },
        { ResourceType: 2, Configs: [{ Name: 'cleanup.policy', Value: 'delete', IsSensitive: false, Synonyms: [] }] },
      ],
    },
    new Set(['kafka-1.internal']),
  );
  const [broker, topic] = res.Results as Array<{ Configs: Array<{ Name: string; Value: string | null; IsSensitive: boolean; Synonyms: Array<{ Value: string | null }> }> }>;
  const byName = new Map(broker!.Configs.map((c) => [c.Name, c]));
  for (const name of ['listeners', 'advertised.listeners', 'controller.quorum.voters', 'some.plugin.config']) {
    assert.equal(byName.get(name)!.Value, null, name);
    assert.equal(byName.get(name)!.IsSensitive, true, name);
  }
  assert.equal(byName.get('listeners')!.Synonyms[0]!.Value, null);
  assert.equal(byName.get('num.partitions')!.Value, '3');
  assert.equal(topic!.Configs[0]!.Value, 'delete');
});

test('"every topic" needs an allow for * and no deny for the action', () => {
  const id = (roles: string[]): Identity => ({ subject: 's', issuer: 'i', roles, groups: [], claims: {} });
  const policy = new Policy({
    roles: {},
    grants: [
      { roles: ['all'], actions: ['consume'], topics: ['*'], effect: 'allow' },
      { roles: ['some'], actions: ['consume'], topics: ['ok.*'], effect: 'allow' },
      { roles: ['fenced'], actions: ['consume'], topics: ['*'], effect: 'allow' },
      { roles: ['fenced'], actions: ['consume'], topics: ['secret.*'], effect: 'deny' },
    ],
  });
  assert.equal(policy.unrestricted(id(['all']), 'consume'), true);
  assert.equal(policy.unrestricted(id(['all']), 'produce'), false);
  assert.equal(policy.unrestricted(id(['some']), 'consume'), false);
  assert.equal(policy.unrestricted(id(['fenced']), 'consume'), false);
  assert.equal(policy.unrestricted(id([]), 'consume'), false);
});
