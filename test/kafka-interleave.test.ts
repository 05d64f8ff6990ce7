import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Producer, stringSerializers } from '@platformatic/kafka';
import { createTopics, getInfra, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { fetchRequest, rawClient, walkResponse } from './helpers/kafka-gateway.ts';
import type { Gateway } from '../src/gateway.ts';
import type { Struct } from '../src/protocols/kafka/codec.ts';

// Two identities interleaving fetch sessions, offset fetches and group heartbeats on 50
// connections for a minute (STREAMGATE_INTERLEAVE_MS shortens it locally), while records keep
// arriving. Every connection also tries the session ids every other connection was given.
// Proven against the broker read directly: bob (analyst) receives only records of the topic
// he may read, mallory (no grants) receives no record at all, and nobody receives a record,
// a name of the secret topic (outside the refusal of their own request) or a broker address.

const DURATION_MS = Number(process.env.STREAMGATE_INTERLEAVE_MS ?? 60_000);
const CONNECTIONS = 50;
const run = `${process.pid}-${Date.now() % 100000}`;
const OPEN = `analytics.il-${run}`; // bob: consume + describe; no consume-side rules
const SECRET = `secret.il-${run}`;
const GROUP = `analytics-il-${run}`; // committed offsets on both topics
const GROUP848 = `analytics-il848-${run}`; // a KIP-848 member subscribed to both
const OPEN_MARK = new RegExp(`OPEN-${run}-\\d+`, 'g');
const SECRET_MARK = `SECRET-${run}-`;
let infra: Infra;
let gateway: Gateway;
let brokerPort: number;

type Raw = Awaited<ReturnType<typeof rawClient>>;

before(async () => {
  infra = await getInfra();
  brokerPort = Number(infra.kafka.split(':')[1]);
  await createTopics(infra.kafka, [OPEN, SECRET], 1);
  gateway = await startGateway(testConfig(infra).config);
  // committed offsets on both topics and a KIP-848 member subscribed to both, made directly at
  // the broker (retried while a fresh broker loads its group coordinator)
  const broker = await rawClient(brokerPort);
  const retriable = new Set([14, 15, 16]);
  const until = async (what: string, send: () => Promise<number[]>) => {
    for (let i = 0; ; i++) {
      const codes = await send();
      if (codes.every((c) => c === 0)) return;
      assert.ok(i < 150 && codes.every((c) => c === 0 || retriable.has(c)), `${what}: errors ${codes.join(',')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  try {
    // asking for a coordinator makes a fresh broker create its offsets topic
    for (const g of [GROUP, GROUP848]) await until('coordinator', async () => [((await broker.request(10, 4, { KeyType: 0, CoordinatorKeys: [g] })).Coordinators as Struct[])[0]!.ErrorCode as number]);
    await until('offset commit', async () => {
      const commit = await broker.request(8, 9, {
        GroupId: GROUP,
        GenerationIdOrMemberEpoch: -1,
        MemberId: '',
        GroupInstanceId: null,
        Topics: [OPEN, SECRET].map((Name) => ({ Name, Partitions: [{ PartitionIndex: 0, CommittedOffset: 0n, CommittedLeaderEpoch: -1, CommittedMetadata: '' }] })),
      });
      return (commit.Topics as Struct[]).map((t) => (t.Partitions as Struct[])[0]!.ErrorCode as number);
    });
    await until('heartbeat', async () => {
      const hb = await broker.request(68, 0, { GroupId: GROUP848, MemberId: '', MemberEpoch: 0, InstanceId: null, RackId: null, RebalanceTimeoutMs: 30000, SubscribedTopicNames: [OPEN, SECRET], ServerAssignor: null, TopicPartitions: [] });
      return [hb.ErrorCode as number];
    });
  } finally {
    broker.close();
  }
});

after(async () => {
  await gateway?.close();
});

async function login(who: string): Promise<Raw> {
  const client = await rawClient(gateway.addresses.kafka!.port);
  await client.request(17, 1, { Mechanism: 'OAUTHBEARER' });
  const auth = await client.request(36, 2, { AuthBytes: Buffer.from(`n,,\x01auth=Bearer ${await infra.idp.token(who)}\x01\x01`) });
  assert.equal(auth.ErrorCode, 0);
  return client;
}

const fetch = (sessionId: number, epoch: number, topics: string[]): Struct => fetchRequest(sessionId, epoch, topics, [], 100);

test('50 connections of two identities interleave fetch sessions, offset fetches and heartbeats for a minute: nothing reaches whom it must not', async () => {
  const deadline = Date.now() + DURATION_MS;
  const sessions: number[] = []; // every session id any connection was given: everyone tries them
  const problems = new Set<string>();
  const bobSaw = new Set<string>();
  let mallorySaw = 0;
  let requests = 0;
  const check = (who: 'bob' | 'mallory', what: string, res: Struct) => {
    requests++;
    const forbidden = who === 'bob' ? [SECRET] : [OPEN, SECRET];
    walkResponse(res, (s, hasError) => {
      for (const [k, x] of Object.entries(s)) {
        if (typeof x === 'string' && forbidden.includes(x) && !hasError) problems.add(`${who} ${what}: ${k} = ${x} without an error`);
        if (Array.isArray(x) && x.some((n) => forbidden.includes(n as string))) problems.add(`${who} ${what}: ${k} lists a forbidden topic`);
        if (k === 'Port' && x === brokerPort) problems.add(`${who} ${what}: the broker port`);
        if (x instanceof Uint8Array && x.byteLength > 0) {
          const text = Buffer.from(x).toString('latin1');
          if (text.includes(SECRET_MARK)) problems.add(`${who} ${what}: a secret record`);
          for (const m of text.match(OPEN_MARK) ?? []) {
            if (who === 'bob') bobSaw.add(m);
            else mallorySaw++;
          }
        }
      }
    });
  };

  // records keep arriving on both topics, written directly to the broker
  const producer = new Producer({ clientId: 'interleave-seed', bootstrapBrokers: [infra.kafka], serializers: stringSerializers });
  let written = 0;
  const writing = (async () => {
    while (Date.now() < deadline) {
      await producer.send({ messages: [{ topic: OPEN, value: `OPEN-${run}-${written}`, partition: 0 }, { topic: SECRET, value: `${SECRET_MARK}${written}`, partition: 0 }] });
      written++;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();

  const loop = async (who: 'bob' | 'mallory', index: number) => {
    let client = await login(who);
    let session = 0;
    let epoch = 0;
    try {
      for (let i = 0; Date.now() < deadline; i++) {
        const step = (i + index) % 8;
        try {
          if (step <= 2) {
            // an own session: open on the topic, then incremental fetches naming nothing
            const res = await client.request(1, 12, fetch(session, epoch, epoch === 0 ? [who === 'bob' ? OPEN : SECRET] : []));
            check(who, 'own session', res);
            if (res.ErrorCode === 0 && (res.SessionId as number) !== 0) {
              if (epoch === 0) sessions.push(res.SessionId as number);
              session = res.SessionId as number;
              epoch++;
            } else {
              session = 0;
              epoch = 0;
            }
          } else if (step === 3) {
            const stolen = sessions[Math.floor(Math.random() * sessions.length)];
            if (stolen !== undefined && stolen !== session) {
              const res = await client.request(1, 12, fetch(stolen, 1 + (i % 5), []));
              check(who, 'stolen session', res);
              if (res.ErrorCode !== 70) problems.add(`${who}: a stolen session was served (error ${String(res.ErrorCode)})`);
            }
          } else if (step === 4) {
            check(who, 'fetch by name', await client.request(1, 12, fetch(0, -1, [OPEN, SECRET])));
          } else if (step === 5) {
            check(who, 'offset fetch', await client.request(9, 9, { Groups: [{ GroupId: GROUP, MemberId: null, MemberEpoch: -1, Topics: null }], RequireStable: false }));
          } else if (step === 6) {
            const body = { GroupId: `analytics-il-hb-${run}-${index}`, MemberId: '', MemberEpoch: 0, InstanceId: null, RackId: null, RebalanceTimeoutMs: 30000, SubscribedTopicNames: i % 2 ? null : [OPEN, SECRET], SubscribedTopicRegex: i % 2 ? '.*' : null, ServerAssignor: null, TopicPartitions: [] };
            check(who, 'heartbeat', await client.request(68, 1, body));
          } else {
            check(who, 'group describe', await client.request(69, 0, { GroupIds: [GROUP848], IncludeAuthorizedOperations: false }));
          }
        } catch (err) {
          problems.add(`${who}: ${(err as Error).message}`);
          client.close();
          client = await login(who);
          session = 0;
          epoch = 0;
        }
      }
    } finally {
      client.close();
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => loop(i % 2 === 0 ? 'bob' : 'mallory', i)));
  await writing;
  await producer.close();

  assert.deepEqual([...problems], []);
  assert.equal(mallorySaw, 0, 'mallory received no record');
  // compared with the broker, read directly
  const open = new Set((await readTopic(infra.kafka, OPEN, written, 30_000)).map((r) => r.value));
  const secret = await readTopic(infra.kafka, SECRET, written, 30_000);
  assert.equal(secret.length, written, 'the secret topic holds every record written');
  assert.ok(bobSaw.size > 0, 'bob read records of his topic');
  for (const v of bobSaw) assert.ok(open.has(v), `${v} is a record of ${OPEN}`);
  assert.ok(sessions.length >= CONNECTIONS / 2, `sessions were opened (${sessions.length})`);
  assert.ok(requests > CONNECTIONS * 20, `requests interleaved (${requests})`);
});
