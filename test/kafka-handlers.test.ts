import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import pino from 'pino';
import type { Dispatcher } from '../src/dispatcher.ts';
import { GatewayError, Refusals, type Action, type Identity, type Operation, type Resource, type UpstreamResult } from '../src/operation.ts';
import type { Struct } from '../src/protocols/kafka/codec.ts';
import type { HandlerContext, Header, Slot } from '../src/protocols/kafka/context.ts';
import { FetchSessions } from '../src/protocols/kafka/fetch-sessions.ts';
import { decodeRequestHeader, decodeResponse, encodeRequest, encodeResponse } from '../src/protocols/kafka/frames.ts';
import { handlerFor } from '../src/protocols/kafka/handlers/index.ts';
import { loadMessages } from '../src/protocols/kafka/messages.ts';
import { ResponseOrder } from '../src/protocols/kafka/order.ts';

// Unit level: each Kafka handler against a fake connection context and a fake broker (no
// sockets, no broker): what it forwards, what it answers, what it refuses.

const reg = await loadMessages();
const identity: Identity = { subject: 'bob', issuer: 'i', roles: ['analyst'], groups: [], claims: { sub: 'bob' } };

type Broker = (apiKey: number, version: number, body: Struct) => Struct;

interface Fake {
  ctx: HandlerContext;
  /** request frames the handler sent to the broker, decoded */
  sent: Array<{ apiKey: number; version: number; body: Struct }>;
  /** answers written to the client, decoded at the client's version */
  answers: Struct[];
  refusals: Array<{ op: Operation; err: GatewayError }>;
  connected: number;
}

function fake(allowed: (action: Action, resource: Resource) => boolean, broker: Broker): Fake {
  const sent: Fake['sent'] = [];
  const answers: Struct[] = [];
  const refusals: Fake['refusals'] = [];
  const versions = new WeakMap<Slot, Header>();
  const order = new ResponseOrder((s) => {
    const h = versions.get(s)!;
    if (s.data) answers.push(decodeResponse(reg, h.apiKey, s.version, s.data));
  });
  const up = {} as Socket;
  const f: Fake = { sent, answers, refusals, connected: 0, ctx: undefined as unknown as HandlerContext };
  const newOp = (h: Header, n: { kind: Resource['kind']; name: string; action: Action }): Operation =>
    ({ id: `op-${n.name}`, receivedAt: 0, startedAt: 0, session: { id: 's', protocol: 'kafka', client: { address: '' }, startedAt: 0 }, protocol: 'kafka', action: n.action, resource: { kind: n.kind, name: n.name }, identity, meta: { api: String(h.apiKey) } }) as Operation;
  const dispatcher = {
    refuse: async (op: Operation, err: unknown) => {
      refusals.push({ op, err: err as GatewayError });
      throw err;
    },
    run: async (op: Operation, terminal?: (o: Operation) => Promise<UpstreamResult>) => {
      if (!allowed(op.action, op.resource)) {
        const err = new GatewayError('forbidden', `${identity.subject} may not ${op.action} ${op.resource.name}`, { rule: 'default-deny' });
        refusals.push({ op, err });
        throw err;
      }
      return terminal ? terminal(op) : {};
    },
    permits: (_i: Identity, action: Action, resource: Resource) => allowed(action, resource),
    permitsEvery: () => false,
  } as unknown as Dispatcher;
  const ctx: HandlerContext = {
    l: { reg, dispatcher, log: pino({ level: 'silent' }), advertisedHost: 'gateway.local', passthrough: new Set<number>(), brokerVersions: undefined, brokerPort: async (id) => 9200 + id, learn: () => {}, brokerHosts: () => new Set(['broker-1.internal']) },
    identity,
    fetchSessions: new FetchSessions(),
    slot: (h) => {
      const s = order.slot(h);
      versions.set(s, h);
      return s;
    },
    complete: (s, d) => order.complete(s, d),
    localResponse: (h, version, body) => ctx.complete(ctx.slot({ ...h, version }), encodeResponse(reg, h.apiKey, version, h.correlationId, body)),
    encodeResponse: (h, body, version = h.version) => encodeResponse(reg, h.apiKey, version, h.correlationId, body),
    responseBody: (h, frame) => decodeResponse(reg, h.apiKey, h.version, frame),
    reencode: (h, body) => encodeRequest(reg, h.apiKey, h.version, h.correlationId, body, h.clientId),
    connectUpstream: async () => {
      f.connected++;
      return up;
    },
    send: (_up, frame, expectResponse) => {
      const h = decodeRequestHeader(reg, frame);
      const body = reg.requests.get(h.apiKey)!.decode(frame, h.bodyOffset, h.version).value;
      sent.push({ apiKey: h.apiKey, version: h.version, body });
      const answer = broker(h.apiKey, h.version, body);
      return expectResponse ? Promise.resolve(encodeResponse(reg, h.apiKey, h.version, h.correlationId, answer)) : undefined;
    },
    reserveSend: () => ({ state: 'waiting' }),
    cancelSend: () => {},
    canDetach: () => false,
    detach: () => {},
    forward: async (frame, h, transform) => {
      const slot = ctx.slot(h);
      const res = await ctx.send(up, frame, true)!;
      ctx.complete(slot, transform ? ctx.encodeResponse(h, await transform(ctx.responseBody(h, res))) : res);
    },
    authorize: (ops, decide) => {
      const ok: Operation[] = [];
      const denied = new Refusals<Operation>();
      for (const op of ops) {
        if (allowed(op.action, op.resource)) ok.push(op);
        else denied.refuse(op, new GatewayError('forbidden', `${identity.subject} may not ${op.action} ${op.resource.kind} ${op.resource.name}`, { rule: 'default-deny' }));
      }
      const results = decide(ok, denied);
      return { forwarded: Promise.resolve(), settled: Promise.resolve(results).then(() => new Promise((r) => setImmediate(r))) };
    },
    newOp,
    permits: allowed,
    needs: (action, resource) => ({ records: 'none', mayGo: allowed(action, resource), mayHold: false }),
    rewriteBrokers: async (res, field, idField) => {
      for (const b of (res[field] as Struct[] | undefined) ?? []) {
        b.Host = 'gateway.local';
        b.Port = 9200 + (b[idField] as number);
      }
      return res;
    },
    violation: (message) => {
      throw new Error(`violation: ${message}`);
    },
    destroy: () => {},
  };
  f.ctx = ctx;
  return f;
}

/** Runs the handler of `apiKey` on a request as the client would send it; resolves once every answer left. */
async function handle(f: Fake, apiKey: number, version: number, body: Struct): Promise<void> {
  const frame = encodeRequest(reg, apiKey, version, 7, body, 'unit');
  const h = decodeRequestHeader(reg, frame);
  await handlerFor(apiKey, f.ctx.l.passthrough)(f.ctx, frame, h, reg.requests.get(apiKey)!.decode(frame, h.bodyOffset, version).value);
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

const topicsAllowed = (names: string[], actions: Action[]) => (action: Action, r: Resource) => r.kind === 'topic' ? names.includes(r.name) && actions.includes(action) : r.kind === 'group' && r.name.startsWith('ok-');

test('metadata: v1 is forwarded as v4 without auto-creation, answered in v1 with describable topics and gateway brokers', async () => {
  const f = fake(topicsAllowed(['orders'], ['describe']), () => ({
    Brokers: [{ NodeId: 1, Host: 'broker-1.internal', Port: 9092, Rack: null }],
    ClusterId: 'c',
    ControllerId: 1,
    Topics: [
      { ErrorCode: 3, Name: 'orders', IsInternal: false, Partitions: [] },
      { ErrorCode: 0, Name: 'secret', IsInternal: false, Partitions: [] },
    ],
  }));
  await handle(f, 3, 1, { Topics: [{ Name: 'orders' }] });
  assert.equal(f.sent.length, 1);
  assert.equal(f.sent[0]!.version, 4, 'old versions go out as v4');
  assert.equal(f.sent[0]!.body.AllowAutoTopicCreation, false, 'no admin: no auto-creation');
  const answer = f.answers[0]!;
  assert.deepEqual((answer.Topics as Struct[]).map((t) => t.Name), ['orders']);
  assert.deepEqual((answer.Brokers as Struct[]).map((b) => [b.Host, b.Port]), [['gateway.local', 9201]]);
});

test('metadata: a request whose every topic is refused goes out naming none, without auto-creation', async () => {
  const f = fake(() => false, () => ({ Brokers: [], ClusterId: 'c', ControllerId: 1, Topics: [] }));
  await handle(f, 3, 12, { Topics: [{ Name: 'secret', TopicId: new Uint8Array(16) }], AllowAutoTopicCreation: true, IncludeTopicAuthorizedOperations: false });
  assert.deepEqual(f.sent[0]!.body.Topics, []);
  assert.equal(f.sent[0]!.body.AllowAutoTopicCreation, false);
  assert.deepEqual((f.answers[0]!.Topics as Struct[]).map((t) => [t.Name, t.ErrorCode]), [['secret', 29]]);
});

const fetchBody = (sessionId: number, epoch: number, topics: string[], forgotten: Struct[] = []): Struct => ({
  ClusterId: null,
  ReplicaId: -1,
  MaxWaitMs: 0,
  MinBytes: 1,
  MaxBytes: 1 << 20,
  IsolationLevel: 0,
  SessionId: sessionId,
  SessionEpoch: epoch,
  Topics: topics.map((t) => ({ Topic: t, Partitions: [{ Partition: 0, CurrentLeaderEpoch: -1, FetchOffset: 0n, LastFetchedEpoch: -1, LogStartOffset: -1n, PartitionMaxBytes: 1024 }] })),
  ForgottenTopicsData: forgotten,
  RackId: '',
});
const fetchAnswer = (sessionId: number, topics: string[]): Struct => ({
  ThrottleTimeMs: 0,
  ErrorCode: 0,
  SessionId: sessionId,
  Responses: topics.map((t) => ({ Topic: t, Partitions: [{ PartitionIndex: 0, ErrorCode: 0, HighWatermark: 0n, LastStableOffset: 0n, LogStartOffset: 0n, AbortedTransactions: [], PreferredReadReplica: -1, Records: null }] })),
});

test('fetch: a session this connection did not open is FETCH_SESSION_ID_NOT_FOUND, audited, with no broker connection', async () => {
  const f = fake(() => true, () => fetchAnswer(0, []));
  await handle(f, 1, 12, fetchBody(4242, 3, []));
  assert.equal(f.connected, 0);
  assert.equal(f.sent.length, 0);
  assert.equal(f.answers[0]!.ErrorCode, 70);
  assert.equal(f.refusals[0]!.err.rule, 'kafka.fetch-session');
});

test('fetch: a session topic no longer allowed is forgotten at the broker and answered TOPIC_AUTHORIZATION_FAILED', async () => {
  let allowSecret = true;
  const f = fake((_a, r) => r.name === 'orders' || (allowSecret && r.name === 'secret'), (_k, _v, body) => fetchAnswer(77, body.SessionEpoch === 0 ? ['orders', 'secret'] : ['orders']));
  await handle(f, 1, 12, fetchBody(0, 0, ['orders', 'secret']));
  assert.equal(f.answers[0]!.SessionId, 77, 'the session is opened');
  allowSecret = false; // e.g. a policy reload
  await handle(f, 1, 12, fetchBody(77, 1, []));
  const forwarded = f.sent[1]!.body;
  assert.deepEqual((forwarded.ForgottenTopicsData as Struct[]).map((t) => [t.Topic, t.Partitions]), [['secret', [0]]]);
  const answer = f.answers[1]!;
  const secret = (answer.Responses as Struct[]).find((t) => t.Topic === 'secret')!;
  assert.equal((secret.Partitions as Struct[])[0]!.ErrorCode, 29);
  assert.ok(f.refusals.some((r) => r.op.resource.name === 'secret'), 'the refusal is audited');
  // the session no longer serves it
  await handle(f, 1, 12, fetchBody(77, 2, []));
  assert.deepEqual(f.sent[2]!.body.ForgottenTopicsData, []);
});

test('resources: FindCoordinator is answered per key; a regex subscription is refused without being forwarded', async () => {
  const f = fake(topicsAllowed([], []), (_k, _v, body) => ({
    ThrottleTimeMs: 0,
    Coordinators: (body.CoordinatorKeys as string[]).map((Key) => ({ Key, NodeId: 1, Host: 'broker-1.internal', Port: 9092, ErrorCode: 0, ErrorMessage: null })),
  }));
  await handle(f, 10, 4, { KeyType: 0, CoordinatorKeys: ['ok-group', 'secret-group'] });
  assert.deepEqual(f.sent[0]!.body.CoordinatorKeys, ['ok-group'], 'only the allowed key is forwarded');
  const byKey = new Map((f.answers[0]!.Coordinators as Struct[]).map((c) => [c.Key, c]));
  assert.deepEqual([byKey.get('ok-group')!.Host, byKey.get('ok-group')!.Port], ['gateway.local', 9201]);
  assert.equal(byKey.get('secret-group')!.ErrorCode, 30);

  await handle(f, 68, 1, { GroupId: 'ok-group', MemberId: 'm', MemberEpoch: 0, InstanceId: null, RackId: null, RebalanceTimeoutMs: 1000, SubscribedTopicNames: null, SubscribedTopicRegex: '.*', ServerAssignor: null, TopicPartitions: [] });
  assert.equal(f.sent.length, 1, 'the heartbeat was not forwarded');
  assert.equal(f.answers[1]!.ErrorCode, 29);
  assert.equal(f.refusals.at(-1)!.op.resource.name, 'regex:.*');
});

test('produce: a refused topic is cut out of the forwarded request and answered with its error', async () => {
  const f = fake(topicsAllowed(['orders'], ['produce']), (_k, _v, body) => ({
    ThrottleTimeMs: 0,
    Responses: (body.TopicData as Struct[]).map((t) => ({ Name: t.Name, PartitionResponses: [{ Index: 0, ErrorCode: 0, BaseOffset: 5n, LogAppendTimeMs: -1n, LogStartOffset: 0n, RecordErrors: [], ErrorMessage: null }] })),
  }));
  const part = { Index: 0, Records: null };
  await handle(f, 0, 9, { TransactionalId: null, Acks: -1, TimeoutMs: 1000, TopicData: [{ Name: 'orders', PartitionData: [part] }, { Name: 'secret', PartitionData: [part] }] });
  assert.deepEqual((f.sent[0]!.body.TopicData as Struct[]).map((t) => t.Name), ['orders']);
  const byName = new Map((f.answers[0]!.Responses as Struct[]).map((t) => [t.Name, (t.PartitionResponses as Struct[])[0]!]));
  assert.equal(byName.get('orders')!.ErrorCode, 0);
  assert.equal(byName.get('secret')!.ErrorCode, 29);
});

test('listGroups and describeCluster: groups filtered to those the identity may describe, brokers rewritten to the gateway', async () => {
  const f = fake(topicsAllowed([], []), (apiKey) =>
    apiKey === 16
      ? { ThrottleTimeMs: 0, ErrorCode: 0, Groups: [{ GroupId: 'ok-a', ProtocolType: 'consumer', GroupState: 'Stable', GroupType: 'classic' }, { GroupId: 'secret-b', ProtocolType: 'consumer', GroupState: 'Stable', GroupType: 'classic' }] }
      : { ThrottleTimeMs: 0, ErrorCode: 0, ErrorMessage: null, EndpointType: 1, ClusterId: 'c', ControllerId: 1, ClusterAuthorizedOperations: -2147483648, Brokers: [{ BrokerId: 1, Host: 'broker-1.internal', Port: 9092, Rack: null }] },
  );
  await handle(f, 16, 4, { StatesFilter: [] });
  assert.deepEqual((f.answers[0]!.Groups as Struct[]).map((g) => g.GroupId), ['ok-a']);
  await handle(f, 60, 0, { IncludeClusterAuthorizedOperations: false });
  assert.deepEqual((f.answers[1]!.Brokers as Struct[]).map((b) => [b.Host, b.Port]), [['gateway.local', 9201]]);
});

test('apiVersions after login: the broker answer narrowed to what the gateway serves; a v3 answer teaches the brokers\' versions', async () => {
  const f = fake(topicsAllowed([], []), () => ({
    ErrorCode: 0,
    ThrottleTimeMs: 0,
    ApiKeys: [
      { ApiKey: 0, MinVersion: 0, MaxVersion: 99 },
      { ApiKey: 1, MinVersion: 4, MaxVersion: 17 },
      { ApiKey: 1000, MinVersion: 0, MaxVersion: 1 },
    ],
    SupportedFeatures: [],
    FinalizedFeaturesEpoch: -1n,
    FinalizedFeatures: [],
    ZkMigrationReady: false,
  }));
  await handle(f, 18, 3, { ClientSoftwareName: 'unit', ClientSoftwareVersion: '1' });
  const keys = new Map((f.answers[0]!.ApiKeys as Struct[]).map((k) => [k.ApiKey, k]));
  assert.ok(!keys.has(1000), 'an API the gateway does not serve is not offered');
  assert.ok((keys.get(0)!.MaxVersion as number) < 99, 'no version beyond the gateway\'s ceiling');
  assert.ok(f.ctx.l.brokerVersions, 'the brokers\' versions are learned for pre-login answers');
});
