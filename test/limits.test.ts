import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Client, request } from 'undici';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { rawClient, rawExchange } from './helpers/kafka-gateway.ts';
import { clientBatch } from './helpers/batches.ts';
import type { Gateway } from '../src/gateway.ts';
import { decodeRecords, streamRecords } from '../src/formats/kafka-batch.ts';

// Resource limits with the real broker: connection caps (global and per identity), the
// Kafka authentication deadline (slow-loris), and per-identity rates — HTTP refuses with
// 429 + Retry-After, Kafka throttles like a broker (throttle_time_ms, muted connection)
// and loses nothing.

let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
const run = `${process.pid}-${Date.now() % 100000}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  infra = await getInfra();
  const made = testConfig(infra, (c) => {
    c.limits!.connections = { max: 6, perIdentity: 2 };
    c.limits!.authTimeoutMs = 700;
    c.limits!.rate = { requestsPerSecond: 10, bytesPerSecond: 4000, burstSeconds: 1 };
  });
  spoolDir = made.spoolDir;
  assert.deepEqual(made.config.limits, { connections: { max: 6, perIdentity: 2 }, authTimeoutMs: 700, idleTimeoutMs: 600_000, maxInflightBytes: 67_108_864, rate: { requestsPerSecond: 10, bytesPerSecond: 4000, burstSeconds: 1 } });
  gateway = await startGateway(made.config);
});

async function login(port: number, who: string) {
  const client = await rawClient(port);
  await client.request(17, 1, { Mechanism: 'PLAIN' });
  const res = await client.request(36, 2, { AuthBytes: Buffer.from(`\0${who}\0${await infra.idp.token(who)}`) });
  return { client, errorCode: res.ErrorCode as number, message: res.ErrorMessage as string | null };
}

test('a Kafka connection that does not authenticate in time is closed and audited (slow-loris)', async () => {
  const { closed } = await rawExchange(gateway.addresses.kafka!.port, Buffer.alloc(0), 5000);
  assert.ok(closed, 'closed by the gateway before the 5 s test timeout');
  await sleep(100);
  assert.ok(readAudit(spoolDir).some((r) => /not authenticated within 700 ms/.test(r.meta.violation ?? '')));
});

test('connections over limits.connections.perIdentity fail SASL with a clear message; other identities are unaffected', async () => {
  const port = gateway.addresses.kafka!.port;
  const a = await login(port, 'alice');
  const b = await login(port, 'alice');
  const c = await login(port, 'alice');
  const d = await login(port, 'bob');
  try {
    assert.equal(a.errorCode, 0);
    assert.equal(b.errorCode, 0);
    assert.equal(c.errorCode, 58, 'SASL_AUTHENTICATION_FAILED');
    assert.match(c.message ?? '', /alice already holds 2 connections \(limits\.connections\.perIdentity\)/);
    assert.equal(d.errorCode, 0, 'bob has his own allowance');
  } finally {
    for (const x of [a, b, c, d]) x.client.close();
  }
  await sleep(100);
  assert.ok(readAudit(spoolDir).some((r) => r.subject === 'alice' && r.reason === 'throttled' && r.rule === 'limits.connections.perIdentity'));
});

test('connections over limits.connections.max are closed at once and audited', async () => {
  await sleep(200); // the previous test's connections are gone
  const port = gateway.addresses.kafka!.port;
  const held = await Promise.all(Array.from({ length: 6 }, () => rawClient(port)));
  try {
    const { closed } = await rawExchange(port, Buffer.alloc(0), 300);
    assert.ok(closed, 'the seventh connection is closed before the auth deadline');
  } finally {
    for (const h of held) h.close();
  }
  await sleep(100);
  assert.ok(readAudit(spoolDir).some((r) => /too many connections \(limits\.connections\.max = 6\)/.test(r.meta.violation ?? '')));
});

test('HTTP over the request rate gets 429 with Retry-After and an audit row', async () => {
  const token = await infra.idp.token('alice');
  const topic = `payments.limits-http-${run}`;
  await createTopics(infra.kafka, [topic]);
  const statuses: number[] = [];
  let retryAfter: string | undefined;
  for (let i = 0; i < 25; i++) {
    const res = await request(`http://127.0.0.1:${gateway.addresses.http!.port}/v3/clusters/local/topics/${topic}/records`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ value: { data: { i } } }),
    });
    const body = (await res.body.json()) as { error_code?: number; message?: string };
    statuses.push(res.statusCode);
    if (res.statusCode === 429) {
      retryAfter = res.headers['retry-after'] as string;
      assert.equal(body.error_code, 42901);
      assert.match(body.message ?? '', /alice is over its rate limit; retry in \d+ ms/);
    }
  }
  assert.ok(statuses.filter((s) => s === 200).length >= 10, `the burst passes: ${statuses.join(',')}`);
  assert.ok(statuses.includes(429), `then 429: ${statuses.join(',')}`);
  assert.equal(retryAfter, '1');
  assert.ok(readAudit(spoolDir).some((r) => r.resource === topic && r.reason === 'throttled' && r.rule === 'limits.rate'));
});

test('HTTP connections over limits.connections.perIdentity get 429 naming the limit; a freed connection is usable again', async () => {
  const token = await infra.idp.token('ops');
  const topic = `payments.limits-conns-${run}`;
  await createTopics(infra.kafka, [topic]);
  const base = `http://127.0.0.1:${gateway.addresses.http!.port}`;
  // one keep-alive connection each
  const clients = [new Client(base), new Client(base), new Client(base)];
  const post = async (c: Client) => {
    const res = await c.request({ method: 'POST', path: `/v3/clusters/local/topics/${topic}/records`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"value":{"data":1}}' });
    return { status: res.statusCode, body: (await res.body.json()) as { message?: string } };
  };
  try {
    assert.equal((await post(clients[0]!)).status, 200);
    assert.equal((await post(clients[1]!)).status, 200);
    const third = await post(clients[2]!);
    assert.equal(third.status, 429);
    assert.match(third.body.message ?? '', /ops already holds 2 connections \(limits\.connections\.perIdentity\)/);
    await clients[0]!.close();
    await sleep(200); // the gateway notices the closed socket
    assert.equal((await post(clients[2]!)).status, 200, 'the freed allowance is usable on a new connection');
  } finally {
    for (const c of clients) await c.close().catch(() => {});
  }
  assert.ok(readAudit(spoolDir).some((r) => r.subject === 'ops' && r.reason === 'throttled' && r.rule === 'limits.connections.perIdentity'));
});

test('Kafka over the byte rate is throttled like a broker throttles: throttle_time_ms in the answer, nothing refused, nothing lost', async () => {
  const topic = `payments.limits-kafka-${run}`;
  await createTopics(infra.kafka, [topic]);
  await sleep(1100); // a full bucket
  const { client } = await login(gateway.addresses.kafka!.port, 'alice');
  try {
    const throttles: number[] = [];
    // 8 batches of 40 records (~2 KB each): well over 4 KB/s
    for (let i = 0; i < 8; i++) {
      const res = await client.request(0, 9, {
        TransactionalId: null,
        Acks: -1,
        TimeoutMs: 30_000,
        TopicData: [{ Name: topic, PartitionData: [{ Index: 0, Records: clientBatch('none', 40, i * 40, { transactional: false }) }] }],
      });
      const part = (res.Responses as Array<{ PartitionResponses: Array<{ ErrorCode: number }> }>)[0]!.PartitionResponses[0]!;
      assert.equal(part.ErrorCode, 0, `batch ${i} is accepted`);
      throttles.push(res.ThrottleTimeMs as number);
    }
    assert.ok(throttles.some((t) => t > 0), `throttle_time_ms reported: ${throttles.join(',')}`);
  } finally {
    client.close();
  }
  // Read back with plain Fetch requests straight to the broker, decoded by our own batch decoder:
  // no consumer group. Three full CI runs saw the group-based reader stop early (at 200, then
  // 40 with a fresh second reader at 0) while every batch had been acknowledged with acks=-1
  // and the test alone read all 320: the group join under a loaded suite, not the records.
  const stored = await fetchAll(topic, 320, 60_000);
  assert.equal(stored.length, 320, 'every record arrived');
  assert.ok(stored.every((v) => v.includes('**** **** **** 1111')), 'and was masked');
});

/** The values of partition 0 of `topic`, fetched from the broker (Fetch v12) until `count` or the timeout. */
async function fetchAll(topic: string, count: number, timeoutMs: number): Promise<string[]> {
  const [, port] = infra.kafka.split(':');
  const broker = await rawClient(Number(port));
  const values: string[] = [];
  const deadline = Date.now() + timeoutMs;
  try {
    let offset = 0n;
    while (values.length < count && Date.now() < deadline) {
      const res = await broker.request(1, 12, {
        ReplicaId: -1, MaxWaitMs: 200, MinBytes: 1, MaxBytes: 8 << 20, IsolationLevel: 0, SessionId: 0, SessionEpoch: -1,
        Topics: [{ Topic: topic, Partitions: [{ Partition: 0, CurrentLeaderEpoch: -1, FetchOffset: offset, LastFetchedEpoch: -1, LogStartOffset: -1, PartitionMaxBytes: 8 << 20 }] }],
        ForgottenTopicsData: [], RackId: '',
      });
      const part = (res.Responses as Array<{ Partitions: Array<{ ErrorCode: number; Records: Uint8Array | null }> }>)[0]!.Partitions[0]!;
      assert.equal(part.ErrorCode, 0, 'the broker answers the fetch');
      const records = streamRecords(decodeRecords(part.Records), 0, [], true);
      for (const r of records) {
        values.push(Buffer.from(r.value ?? []).toString());
        offset = BigInt(r.offset!) + 1n;
      }
    }
  } finally {
    broker.close();
  }
  return values;
}

test('a client pipelining more request bytes than limits.maxInflightBytes is paused, not refused: every request is answered, nothing lost', async () => {
  // a gateway of its own: 64 KiB in flight per connection, no rate limit
  const made = testConfig(infra, (c) => {
    c.limits!.maxInflightBytes = 65_536;
  });
  assert.equal(made.config.limits.maxInflightBytes, 65_536);
  const small = await startGateway(made.config);
  const topic = `payments.limits-inflight-${run}`;
  await createTopics(infra.kafka, [topic]);
  const { client } = await login(small.addresses.kafka!.port, 'alice');
  try {
    // 12 produce requests of ~25 KiB written back to back: ~300 KiB ahead of the gateway
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        client.request(0, 9, {
          TransactionalId: null,
          Acks: -1,
          TimeoutMs: 30_000,
          TopicData: [{ Name: topic, PartitionData: [{ Index: 0, Records: clientBatch('none', 500, i * 500, { transactional: false }) }] }],
        }),
      ),
    );
    for (const res of answers) assert.equal((res.Responses as Array<{ PartitionResponses: Array<{ ErrorCode: number }> }>)[0]!.PartitionResponses[0]!.ErrorCode, 0);
  } finally {
    client.close();
  }
  const stored = await readTopic(infra.kafka, topic, 6000, 60_000);
  assert.equal(stored.length, 6000, 'every record arrived');
});
