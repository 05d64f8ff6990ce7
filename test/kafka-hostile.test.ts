import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Producer, stringSerializers } from '@platformatic/kafka';
import { createTopics, getInfra, readAudit, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { fetchRequest, frame, rawClient, rawExchange } from './helpers/kafka-gateway.ts';
import type { Gateway } from '../src/gateway.ts';
import type { Struct } from '../src/protocols/kafka/codec.ts';
import type { UpstreamMessage } from '../src/protocols/kafka/listener.ts';

// Hostile clients against the Kafka listener, with hand-built frames (security issue #18):
// fetch sessions of other connections, auto-creation by old Metadata versions, work before
// authentication, names a response may not reveal, refusals without an error code.
// Everything is checked against the real broker, read directly.

const run = `${process.pid}-${Date.now() % 100000}`;
const CARDS = `payments.fs-${run}`; // bob reads it, e-mail addresses tokenized; mallory has no grants
const SECRET = `secret.hostile-${run}`; // only platform-admins
const ANALYTICS = `analytics.hostile-${run}`; // bob may read and describe it
const EMAIL = `victim-${run}@example.com`;
let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let port: number;

type Raw = Awaited<ReturnType<typeof rawClient>>;

async function login(who: string, on = port): Promise<Raw> {
  const client = await rawClient(on);
  assert.equal((await client.request(17, 1, { Mechanism: 'OAUTHBEARER' })).ErrorCode, 0);
  const auth = await client.request(36, 2, { AuthBytes: Buffer.from(`n,,\x01auth=Bearer ${await infra.idp.token(who)}\x01\x01`) });
  assert.equal(auth.ErrorCode, 0, `${who} logs in`);
  return client;
}

/** Waits until the broker serves the coordinator of `group` (a fresh broker creates its offsets topic first). */
async function coordinatorReady(client: Raw, group: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const res = await client.request(10, 4, { KeyType: 0, CoordinatorKeys: [group] });
    if ((res.Coordinators as Struct[])[0]!.ErrorCode === 0) return;
    if (Date.now() > deadline) throw new Error(`no coordinator for ${group}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Every frame and broker connection the gateway sends upstream while `fn` runs. */
async function upstreamDuring<T>(fn: () => Promise<T>): Promise<{ result: T; frames: Buffer[]; connects: number }> {
  const frames: Buffer[] = [];
  let connects = 0;
  const on = (m: unknown) => {
    const msg = m as UpstreamMessage;
    if (msg.frame) frames.push(Buffer.from(msg.frame));
    else connects++;
  };
  subscribe('streamgate:kafka:upstream', on);
  try {
    return { result: await fn(), frames, connects };
  } finally {
    unsubscribe('streamgate:kafka:upstream', on);
  }
}

const apiKeyOf = (f: Buffer) => f.readInt16BE(4);
const recordsOf = (res: Struct): Buffer[] =>
  (res.Responses as Struct[]).flatMap((t) => (t.Partitions as Struct[]).map((p) => Buffer.from((p.Records as Uint8Array | null) ?? new Uint8Array(0))));

before(async () => {
  infra = await getInfra();
  await createTopics(infra.kafka, [CARDS, SECRET, ANALYTICS], 1);
  const producer = new Producer({ clientId: 'hostile-seed', bootstrapBrokers: [infra.kafka], serializers: stringSerializers });
  try {
    for (const topic of [CARDS, SECRET, ANALYTICS]) {
      await producer.send({ messages: [0, 1, 2].map((i) => ({ topic, value: JSON.stringify({ email: EMAIL, n: i, note: `${topic}-raw` }), partition: 0 })) });
    }
  } finally {
    await producer.close();
  }
  const made = testConfig(infra);
  spoolDir = made.spoolDir;
  gateway = await startGateway(made.config);
  port = gateway.addresses.kafka!.port;
});

after(async () => {
  await gateway?.close();
});

test('finding 1: a fetch session belongs to the connection that opened it; naming another is FETCH_SESSION_ID_NOT_FOUND, audited, nothing forwarded', async () => {
  const bob = await login('bob');
  const mallory = await login('mallory');
  const bobAgain = await login('bob');
  try {
    // bob opens a session: full fetch, epoch 0; his analyst role reads e-mail addresses tokenized
    const opened = await bob.request(1, 12, fetchRequest(0, 0, [CARDS]));
    assert.equal(opened.ErrorCode, 0);
    const sessionId = opened.SessionId as number;
    assert.notEqual(sessionId, 0, 'the broker opened a session');
    const bobBytes = Buffer.concat(recordsOf(opened));
    assert.ok(bobBytes.length > 0, 'bob reads the records');
    assert.equal(bobBytes.includes(EMAIL), false, 'bob reads e-mail addresses tokenized');

    // mallory names bob's session with no topics: before, she received the records raw
    const stolen = await upstreamDuring(() => mallory.request(1, 12, fetchRequest(sessionId, 1, [])));
    assert.equal(stolen.result.ErrorCode, 70, 'FETCH_SESSION_ID_NOT_FOUND');
    assert.deepEqual(stolen.result.Responses, []);
    assert.equal(stolen.frames.filter((f) => apiKeyOf(f) === 1).length, 0, 'nothing was forwarded for it');
    // bob from another connection: the session is not his there either (he would read raw)
    const other = await bobAgain.request(1, 12, fetchRequest(sessionId, 1, []));
    assert.equal(other.ErrorCode, 70);
    assert.equal(Buffer.concat(recordsOf(other)).includes(EMAIL), false);

    // mallory cannot close bob's session either: a full fetch naming it is forwarded without the id
    const closing = await upstreamDuring(() => mallory.request(1, 12, fetchRequest(sessionId, -1, [])));
    assert.equal(closing.result.ErrorCode, 0);
    const forwarded = closing.frames.filter((f) => apiKeyOf(f) === 1);
    assert.equal(forwarded.length, 1);
    assert.equal(forwarded[0]!.includes(Buffer.from([sessionId >>> 24, (sessionId >>> 16) & 255, (sessionId >>> 8) & 255, sessionId & 255])), false, "bob's session id never reached the broker from mallory");
    const still = await bob.request(1, 12, fetchRequest(sessionId, 1, []));
    assert.equal(still.ErrorCode, 0, "bob's session is intact on his own connection");
    assert.equal(still.SessionId, sessionId);
  } finally {
    bob.close();
    mallory.close();
    bobAgain.close();
  }
  const rows = readAudit(spoolDir).filter((r) => r.resource_kind === 'cluster' && r.resource === 'fetch-session');
  assert.ok(rows.some((r) => r.subject === 'mallory' && r.decision === 'deny' && r.rule === 'kafka.fetch-session'), 'mallory refused and audited');
  assert.ok(rows.some((r) => r.subject === 'bob' && r.decision === 'deny'), 'bob on another connection refused and audited');
  assert.ok(rows.every((r) => !r.record_count), 'no refused row counts records that left');
});

test('finding 2: Metadata v0-v3 never auto-creates a topic for an identity without the admin action', async () => {
  const alice = await login('alice'); // payments-writer: produce and describe on payments.*, no admin
  const wanted = [0, 1, 2, 3].map((v) => `payments.autocreate-${run}-v${v}`);
  try {
    for (const [v, name] of wanted.entries()) {
      const res = await alice.request(3, v, { Topics: [{ Name: name }] });
      const t = (res.Topics as Struct[]).find((x) => x.Name === name);
      assert.equal(t?.ErrorCode, 3, `v${v}: UNKNOWN_TOPIC_OR_PARTITION, not created`);
    }
    // v0's empty list means every topic: the answer lists only what alice may describe
    const all = await alice.request(3, 0, { Topics: [] });
    const names = (all.Topics as Struct[]).map((t) => t.Name as string);
    assert.ok(names.includes(CARDS));
    assert.equal(names.includes(SECRET), false);
  } finally {
    alice.close();
  }
  // the broker creates topics in the background: give it time, then list every topic directly
  await new Promise((r) => setTimeout(r, 1500));
  const broker = await rawClient(Number(infra.kafka.split(':')[1]));
  try {
    const direct = await broker.request(3, 12, { Topics: null, AllowAutoTopicCreation: false, IncludeTopicAuthorizedOperations: false });
    const existing = new Set((direct.Topics as Struct[]).map((t) => t.Name));
    assert.ok(existing.has(CARDS), 'the listing works');
    for (const name of wanted) assert.equal(existing.has(name), false, `${name} was not created at the broker`);
  } finally {
    broker.close();
  }
});

test('finding 3: before login frames are capped at 512 KiB and ApiVersions is answered without a broker connection', async () => {
  const anon = await upstreamDuring(async () => {
    const client = await rawClient(port);
    try {
      const versions = await client.request(18, 3, { ClientSoftwareName: 'hostile', ClientSoftwareVersion: '1' });
      assert.equal(versions.ErrorCode, 0);
      const keys = new Set((versions.ApiKeys as Struct[]).map((a) => a.ApiKey as number));
      for (const k of [0, 1, 3, 17, 36]) assert.ok(keys.has(k), `API ${k} is listed`);
      const fetch = (versions.ApiKeys as Struct[]).find((a) => a.ApiKey === 1)!;
      assert.equal(fetch.MaxVersion, 12, 'capped at the versions the gateway serves');
      assert.equal((await client.request(17, 1, { Mechanism: 'OAUTHBEARER' })).ErrorCode, 0);
    } finally {
      client.close();
    }
  });
  assert.equal(anon.connects, 0, 'no broker connection for an anonymous client');
  assert.equal(anon.frames.length, 0, 'nothing forwarded');

  // a 600 KiB frame before login: closed at its size prefix, audited
  const big = Buffer.alloc(600 * 1024);
  big.writeInt16BE(36, 0);
  big.writeInt16BE(2, 2);
  const closed = await rawExchange(port, frame(big), 5000);
  assert.equal(closed.closed, true);
  assert.equal(closed.received.length, 0);
  const rows = readAudit(spoolDir).filter((r) => /exceeds the limit of 524288/.test(String(r.meta.violation ?? '')));
  assert.ok(rows.length >= 1, 'the oversized anonymous frame is audited');

  // after login the data path's limit applies: a 600 KiB Metadata request is served
  const alice = await login('alice');
  try {
    const names = Array.from({ length: 6000 }, (_, i) => ({ Name: `payments.padding-${run}-${String(i).padStart(80, '0')}` }));
    const res = await alice.request(3, 12, { Topics: names, AllowAutoTopicCreation: false, IncludeTopicAuthorizedOperations: false });
    assert.equal((res.Topics as Struct[]).length, names.length);
  } finally {
    alice.close();
  }
});

test('finding 4: responses reveal only what the identity may describe (OffsetFetch, regex heartbeats, ConsumerGroupDescribe, broker configs)', async () => {
  const brokerPort = Number(infra.kafka.split(':')[1]);
  const broker = await rawClient(brokerPort);
  const group = `analytics-hostile-${run}`; // bob may consume (and describe) analytics-* groups
  const group848 = `analytics-848-${run}`;
  try {
    await coordinatorReady(broker, group);
    await coordinatorReady(broker, group848);
    // offsets committed directly at the broker for a topic bob may read and one he may not
    // (a coordinator that was just found may still be loading its partition: 14-16 are retried, as clients do)
    const commitOffsets = () => broker.request(8, 9, {
      GroupId: group,
      GenerationIdOrMemberEpoch: -1,
      MemberId: '',
      GroupInstanceId: null,
      Topics: [ANALYTICS, SECRET].map((Name) => ({ Name, Partitions: [{ PartitionIndex: 0, CommittedOffset: 1n, CommittedLeaderEpoch: -1, CommittedMetadata: '' }] })),
    });
    const codes = (res: Struct) => (res.Topics as Struct[]).map((t) => (t.Partitions as Struct[])[0]!.ErrorCode as number);
    let commit = await commitOffsets();
    for (const deadline = Date.now() + 30_000; codes(commit).some((c) => c >= 14 && c <= 16) && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 200));
      commit = await commitOffsets();
    }
    assert.deepEqual(codes(commit), [0, 0]);
    // a KIP-848 member subscribed to both
    const hb = await broker.request(68, 0, {
      GroupId: group848,
      MemberId: '',
      MemberEpoch: 0,
      InstanceId: null,
      RackId: null,
      RebalanceTimeoutMs: 30000,
      SubscribedTopicNames: [ANALYTICS, SECRET],
      ServerAssignor: null,
      TopicPartitions: [],
    });
    assert.equal(hb.ErrorCode, 0, String(hb.ErrorMessage));
  } finally {
    broker.close();
  }

  const bob = await login('bob');
  try {
    for (const v of [2, 7, 8, 9]) {
      const body = v >= 8 ? { Groups: [{ GroupId: group, MemberId: null, MemberEpoch: -1, Topics: null }], RequireStable: false } : { GroupId: group, Topics: null, RequireStable: false };
      const res = await bob.request(9, v, body);
      const topics = v >= 8 ? ((res.Groups as Struct[])[0]!.Topics as Struct[]) : (res.Topics as Struct[]);
      const names = topics.map((t) => t.Name);
      assert.ok(names.includes(ANALYTICS), `v${v}: bob sees his own topic's offsets`);
      assert.equal(names.includes(SECRET), false, `v${v}: the secret topic's name does not leak`);
    }

    const described = await bob.request(69, 0, { GroupIds: [group848], IncludeAuthorizedOperations: false });
    const g = (described.Groups as Struct[])[0]!;
    assert.equal(g.ErrorCode, 0);
    const text = JSON.stringify(g, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
    assert.ok(text.includes(ANALYTICS));
    assert.equal(text.includes(SECRET), false, 'ConsumerGroupDescribe hides the secret topic');

    // a regex subscription cannot be narrowed to bob's topics: refused, audited, not forwarded
    const regex = await upstreamDuring(() =>
      bob.request(68, 1, {
        GroupId: `analytics-regex-${run}`,
        MemberId: 'hostile-member-regex-0000',
        MemberEpoch: 0,
        InstanceId: null,
        RackId: null,
        RebalanceTimeoutMs: 30000,
        SubscribedTopicNames: null,
        SubscribedTopicRegex: '.*',
        ServerAssignor: null,
        TopicPartitions: [],
      }),
    );
    assert.equal(regex.result.ErrorCode, 29, 'TOPIC_AUTHORIZATION_FAILED');
    assert.equal(regex.frames.length, 0);
  } finally {
    bob.close();
  }
  assert.ok(readAudit(spoolDir).some((r) => r.subject === 'bob' && r.decision === 'deny' && r.resource === 'regex:.*'));

  // an admin's DescribeConfigs(BROKER): no value names the broker's real address
  const ops = await login('ops');
  try {
    const res = await ops.request(32, 4, { Resources: [{ ResourceType: 4, ResourceName: '1', ConfigurationKeys: null }], IncludeSynonyms: true, IncludeDocumentation: false });
    const r = (res.Results as Struct[])[0]!;
    assert.equal(r.ErrorCode, 0);
    const configs = r.Configs as Struct[];
    assert.ok(configs.length > 20, 'the broker configs are answered');
    const listeners = configs.find((c) => c.Name === 'listeners');
    assert.ok(listeners, 'listeners is listed');
    assert.equal(listeners.Value, null, 'its value is withheld');
    for (const c of configs) {
      for (const value of [c.Value, ...((c.Synonyms as Struct[]) ?? []).map((s) => s.Value)]) {
        assert.equal(typeof value === 'string' && value.includes(`:${brokerPort}`), false, `${String(c.Name)} reveals the broker port`);
      }
    }
  } finally {
    ops.close();
  }
});

test('finding 7: every refused element carries an error code; FindCoordinator answers per key', async () => {
  const broker = await rawClient(Number(infra.kafka.split(':')[1]));
  await coordinatorReady(broker, `analytics-ok-${run}`).finally(() => broker.close());
  const bob = await login('bob');
  try {
    const producers = await bob.request(61, 0, { Topics: [{ Name: SECRET, PartitionIndexes: [0] }] });
    const parts = (producers.Topics as Struct[])[0]!.Partitions as Struct[];
    assert.equal(parts.length, 1, 'one answer per requested partition');
    assert.equal(parts[0]!.ErrorCode, 29);

    const coordinators = await bob.request(10, 4, { KeyType: 0, CoordinatorKeys: [`analytics-ok-${run}`, `secret-group-${run}`] });
    const byKey = new Map((coordinators.Coordinators as Struct[]).map((c) => [c.Key, c]));
    assert.equal(byKey.get(`analytics-ok-${run}`)?.ErrorCode, 0, 'the allowed key is answered');
    assert.ok((byKey.get(`analytics-ok-${run}`)?.Port as number) > 0);
    assert.equal(byKey.get(`secret-group-${run}`)?.ErrorCode, 30, 'GROUP_AUTHORIZATION_FAILED for the refused key');
  } finally {
    bob.close();
  }
});
