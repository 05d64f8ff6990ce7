import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runKafkaTool } from '../src/dev/kafka.ts';
import { ensureKcat, plainJwtAuth, runKcat, type KcatResult } from './helpers/kcat.ts';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import type { Gateway } from '../src/gateway.ts';
import { clientBatch } from './helpers/batches.ts';
import { rawClient } from './helpers/kafka-gateway.ts';

// Record-level inspection on the Kafka wire protocol, with the real broker and unchanged
// clients: the example config masks card numbers produced to payments.*; this test's
// config adds the block rule for private keys there.

const run = `${process.pid}-${Date.now() % 100000}`;
const CARD = '4111 1111 1111 1111';
const MASKED = '**** **** **** 1111';
let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let bootstrap: string;
let dir: string;

async function kcat(args: string[], who: string, input?: string, timeoutMs = 30_000): Promise<KcatResult> {
  return runKcat(bootstrap, plainJwtAuth(who, await infra.idp.token(who)), args, input, timeoutMs);
}

function clientProps(who: string, extra: Record<string, string> = {}): string {
  const file = join(dir, `${who}-${Math.random().toString(36).slice(2)}.properties`);
  const props: Record<string, string> = {
    'security.protocol': 'SASL_PLAINTEXT',
    'sasl.mechanism': 'OAUTHBEARER',
    'sasl.login.callback.handler.class': 'org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler',
    'sasl.oauthbearer.token.endpoint.url': infra.idp.tokenEndpoint,
    'sasl.jaas.config': `org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required clientId="${who}" clientSecret="${who}-secret";`,
    ...extra,
  };
  writeFileSync(file, Object.entries(props).map(([k, v]) => `${k}=${v}`).join('\n') + '\n');
  return file;
}

const jvmOpts = () => [`-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=${infra.idp.tokenEndpoint}`];
const payment = (tag: string, i: number) => JSON.stringify({ id: `${tag}-${i}`, card: CARD, note: 'x'.repeat(i * 7) });

before(async () => {
  ensureKcat();
  infra = await getInfra();
  dir = mkdtempSync(join(tmpdir(), 'sg-kinspect-'));
  const made = testConfig(infra, (c) => {
    c.inspection!.topics![0]!.produce = ['pci.card-number', 'secrets.private-key'];
  });
  spoolDir = made.spoolDir;
  gateway = await startGateway(made.config);
  bootstrap = `127.0.0.1:${gateway.addresses.kafka!.port}`;
});

test('librdkafka: card numbers are masked before the broker stores them, with every codec and idempotence', async () => {
  const topic = `payments.inspect-kcat-${run}`;
  await createTopics(infra.kafka, [topic], 2);
  const expected: string[] = [];
  for (const codec of ['none', 'gzip', 'snappy', 'lz4', 'zstd']) {
    const lines = Array.from({ length: 4 }, (_, i) => payment(`kcat-${codec}`, i));
    expected.push(...lines.map((l) => l.replace(CARD, MASKED)));
    const res = await kcat(['-P', '-t', topic, '-z', codec, '-X', 'enable.idempotence=true', '-K', '|'], 'alice', lines.map((l, i) => `k${i}|${l}`).join('\n') + '\n');
    assert.equal(res.code, 0, res.stderr);
    assert.doesNotMatch(res.stderr, /CRC|OUT_OF_ORDER|corrupt/i);
  }
  const direct = await readTopic(infra.kafka, topic, expected.length);
  assert.deepEqual(direct.map((r) => r.value).sort(), [...expected].sort());
  assert.ok(direct.every((r) => /^k\d$/.test(r.key ?? '')), 'keys are kept');
  const rows = readAudit(spoolDir).filter((r) => r.resource === topic && r.action === 'produce' && r.decision === 'allow');
  assert.equal(rows.reduce((n, r) => n + r.record_hashes.length, 0), expected.length);
  assert.ok(rows.every((r) => r.masking['pci.card-number']! > 0 && r.masked_hashes.every((h) => h.length === 64)));
});

test('Java: idempotent producers with each codec and a transactional producer write masked records exactly once', async () => {
  const topic = `payments.inspect-java-${run}`;
  await createTopics(infra.kafka, [topic], 2);
  const codecs = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];
  const payloads = join(dir, 'payloads.txt');
  writeFileSync(payloads, Array.from({ length: 20 }, (_, i) => payment('txn', i)).join('\n'));
  const [consoles, perf] = await Promise.all([
    Promise.all(
      codecs.map(async (codec) => {
        const lines = Array.from({ length: 5 }, (_, i) => payment(`java-${codec}`, i));
        const res = await runKafkaTool(
          'org.apache.kafka.tools.ConsoleProducer',
          ['--bootstrap-server', bootstrap, '--topic', topic, '--command-config', clientProps('alice', { 'compression.type': codec, 'enable.idempotence': 'true', acks: 'all', 'linger.ms': '50' })],
          { input: lines.join('\n') + '\n', jvmOpts: jvmOpts(), timeoutMs: 60_000 },
        );
        assert.equal(res.code, 0, res.stderr);
        return lines;
      }),
    ),
    runKafkaTool(
      'org.apache.kafka.tools.ProducerPerformance',
      [
        '--topic', topic, '--num-records', '200', '--throughput', '-1', '--payload-file', payloads,
        '--transactional-id', `payments-alice-${run}`, '--transaction-duration-ms', '200',
        '--command-config', clientProps('alice', { 'bootstrap.servers': bootstrap, acks: 'all', 'compression.type': 'lz4' }),
      ],
      { jvmOpts: jvmOpts(), timeoutMs: 90_000 },
    ),
  ]);
  assert.equal(perf.code, 0, perf.stderr);
  assert.match(perf.stdout, /200 records sent/);
  assert.doesNotMatch(perf.stdout + perf.stderr, /OutOfOrderSequence|CorruptRecord|InvalidRecord/);
  const total = consoles.flat().length + 200;
  const direct = await readTopic(infra.kafka, topic, total + 1, 8000);
  assert.equal(direct.length, total, 'every record exactly once');
  assert.ok(direct.every((r) => r.value!.includes(MASKED) && !r.value!.includes(CARD)), 'all card numbers masked');
  assert.deepEqual(direct.filter((r) => !r.value!.includes('"txn-')).map((r) => r.value).sort(), consoles.flat().map((l) => l.replace(CARD, MASKED)).sort());
  // a consumer through the gateway reads them too (CRCs and offsets valid for the Java client)
  const res = await runKafkaTool(
    'org.apache.kafka.tools.consumer.ConsoleConsumer',
    ['--bootstrap-server', bootstrap, '--topic', topic, '--from-beginning', '--max-messages', String(total), '--timeout-ms', '20000',
      '--group', `alice-inspect-${run}`, '--command-config', clientProps('alice', { 'isolation.level': 'read_committed', 'check.crcs': 'true' })],
    { jvmOpts: jvmOpts(), timeoutMs: 60_000 },
  );
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stdout.trim().split('\n').length, total);
});

test('a batch with one blocked record is refused as a whole, naming the rule; nothing reaches the broker', async () => {
  const topic = `payments.inspect-block-${run}`;
  await createTopics(infra.kafka, [topic], 1);
  const key = '-----BEGIN PRIVATE KEY-----\\nMIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEA\\n-----END PRIVATE KEY-----';
  const lines = ['{"ok":1}', `{"leak":"${key}"}`, '{"ok":3}'];
  const res = await kcat(['-P', '-t', topic, '-X', 'linger.ms=100', '-X', 'message.send.max.retries=0', '-z', 'lz4'], 'alice', lines.join('\n') + '\n');
  assert.match(res.stderr, /Policy violation|POLICY_VIOLATION/i, res.stderr);
  const direct = await readTopic(infra.kafka, topic, 1, 3000);
  assert.equal(direct.length, 0);
  const row = readAudit(spoolDir).find((r) => r.resource === topic && r.action === 'produce' && r.decision !== 'allow');
  assert.ok(row, 'refusal audited');
  assert.equal(row.rule, 'secrets.private-key');
  assert.equal(row.record_hashes.length, 3);

  // the Java producer reports the rule for the offending record (RecordErrors, KIP-467)
  const java = await runKafkaTool(
    'org.apache.kafka.tools.ConsoleProducer',
    ['--bootstrap-server', bootstrap, '--topic', topic, '--command-config', clientProps('alice', { 'linger.ms': '200', 'delivery.timeout.ms': '10000', 'request.timeout.ms': '5000', retries: '0' })],
    { input: lines.join('\n') + '\n', jvmOpts: jvmOpts(), timeoutMs: 60_000 },
  );
  assert.match(java.stderr, /secrets\.private-key/, java.stderr);
  assert.equal((await readTopic(infra.kafka, topic, 1, 2000)).length, 0);
});

test('batches over inlineMaxBytes are inspected in the pool and still masked exactly once', async () => {
  const topic = `payments.inspect-pool-${run}`;
  await createTopics(infra.kafka, [topic], 1);
  const lines = Array.from({ length: 150 }, (_, i) => payment('pool', 150 + i));
  const res = await kcat(['-P', '-t', topic, '-z', 'lz4', '-X', 'linger.ms=300', '-X', 'batch.size=1000000', '-X', 'enable.idempotence=true'], 'alice', lines.join('\n') + '\n');
  assert.equal(res.code, 0, res.stderr);
  const direct = await readTopic(infra.kafka, topic, lines.length + 1, 3000);
  assert.deepEqual(direct.map((r) => r.value).sort(), lines.map((l) => l.replace(CARD, MASKED)).sort());
  const rows = readAudit(spoolDir).filter((r) => r.resource === topic && r.action === 'produce');
  assert.ok(rows.some((r) => r.inspected === 'pool'), rows.map((r) => r.inspected).join(','));
});

test('pipelined Produce requests on one connection reach the broker in the client\'s order, pool and inline mixed', async () => {
  // Large batches are inspected in the pool while the connection goes on with the next
  // requests; small ones are inspected inline at once. They must still be forwarded, and
  // answered, in the order the client sent them.
  const topic = `payments.inspect-order-${run}`;
  await createTopics(infra.kafka, [topic], 1);
  const client = await rawClient(gateway.addresses.kafka!.port);
  try {
    await client.request(17, 1, { Mechanism: 'PLAIN' });
    assert.equal((await client.request(36, 2, { AuthBytes: Buffer.from(`\0alice\0${await infra.idp.token('alice')}`) })).ErrorCode, 0);
    const sizes = [2000, 2, 2000, 3, 1, 2000, 2];
    let base = 0;
    const sent = sizes.map((n) => {
      const batch = clientBatch('none', n, base, { transactional: false });
      base += n;
      return client.request(0, 9, { TransactionalId: null, Acks: 1, TimeoutMs: 5000, TopicData: [{ Name: topic, PartitionData: [{ Index: 0, Records: batch }] }] });
    });
    const answers = await Promise.all(sent);
    const offsets = answers.map((a) => {
      const p = (a.Responses as Array<{ PartitionResponses: Array<{ ErrorCode: number; BaseOffset: bigint }> }>)[0]!.PartitionResponses[0]!;
      assert.equal(p.ErrorCode, 0);
      return Number(p.BaseOffset);
    });
    // each request's records start where the previous request's ended
    let expected = 0;
    offsets.forEach((o, k) => {
      assert.equal(o, expected, `request ${k} stored at ${o}, expected ${expected} (offsets ${offsets.join(',')})`);
      expected += sizes[k]!;
    });
    const direct = await readTopic(infra.kafka, topic, base, 20_000);
    assert.equal(direct.length, base);
    direct.forEach((r, i) => assert.equal(r.value, `{"card":"${MASKED}","i":${i}}`));
    const rows = readAudit(spoolDir).filter((r) => r.resource === topic && r.action === 'produce');
    assert.deepEqual(new Set(rows.map((r) => r.inspected)), new Set(['pool', 'inline']));
  } finally {
    client.close();
  }
});

test('topics without rules stay on the passthrough path', async () => {
  const topic = `orders`;
  await createTopics(infra.kafka, [topic], 1);
  const line = `{"card":"${CARD}","run":"${run}"}`;
  const res = await kcat(['-P', '-t', topic], 'alice', line + '\n');
  assert.equal(res.code, 0, res.stderr);
  const row = readAudit(spoolDir).find((r) => r.resource === topic && r.action === 'produce' && r.decision === 'allow');
  assert.ok(row);
  assert.equal(row.inspected, 'none');
});

// todo: one clean-clone CI run saw the raw reader (kcat, no consume rules) receive one record
// twice and miss another (5 earlier full runs passed). Kept running and reported; marked todo
// until the cause (gateway fetch path or kcat's own re-fetch) is found: see README, known issues.
test('consume side: two readers of the same raw topic; platform-admin reads raw, an analyst reads e-mails tokenized', async () => {
  const { Producer, stringSerializers } = await import('@platformatic/kafka');
  const topic = `payments.inspect-raw-${run}`;
  await createTopics(infra.kafka, [topic], 2);
  // written straight to the broker: it holds raw values, in several batches and codecs per partition
  // idempotent: a plain producer may retry a partly written request after the new topic's
  // first metadata error, storing a record twice (seen once; it looked like a gateway duplicate)
  const producer = new Producer({ clientId: 'inspect-raw', bootstrapBrokers: [infra.kafka], idempotent: true, serializers: stringSerializers } as never);
  const raw: string[] = [];
  try {
    for (const compression of ['none', 'lz4', 'zstd', 'snappy', 'gzip'] as const) {
      const values = [0, 1, 2].map((i) => JSON.stringify({ id: `${compression}-${i}`, email: `user${i}@example.com` }));
      await producer.send({ messages: values.map((value, i) => ({ topic, key: `k${i}`, value, partition: i % 2 })), compression } as never);
      raw.push(...values);
    }
  } finally {
    await producer.close();
  }
  const read = async (who: string) => {
    const res = await kcat(['-C', '-t', topic, '-o', 'beginning', '-c', String(raw.length), '-e', '-f', '%s\n'], who, undefined, 30_000);
    assert.equal(res.code, 0, res.stderr);
    return res.stdout.trim().split('\n').sort();
  };
  // one more than written: a duplicate would show up here rather than as a gateway fault
  const direct = await readTopic(infra.kafka, topic, raw.length + 1, 4000);
  assert.deepEqual(direct.map((r) => r.value).sort(), [...raw].sort(), 'the broker holds each raw value once');
  const [admin, analyst] = await Promise.all([read('ops'), read('bob')]);
  assert.deepEqual(admin, [...raw].sort(), 'platform-admin reads the records as stored');
  assert.equal(analyst.length, raw.length);
  assert.ok(analyst.every((v) => !v.includes('@example.com') && /"email":"tok_v1_/.test(v)), analyst.join('\n'));
  const rows = readAudit(spoolDir).filter((r) => r.resource === topic && r.action === 'consume' && r.subject === 'bob' && r.inspected !== 'none');
  assert.equal(rows.reduce((n, r) => n + r.record_hashes.length, 0), raw.length);
  assert.ok(rows.every((r) => r.meta.inspect_roles === 'analyst' && r.masking['pii.email']! > 0));

  // the Java consumer (incremental fetch sessions, CRC checks) as the analyst
  const res = await runKafkaTool(
    'org.apache.kafka.tools.consumer.ConsoleConsumer',
    ['--bootstrap-server', bootstrap, '--topic', topic, '--from-beginning', '--max-messages', String(raw.length), '--timeout-ms', '20000',
      '--group', `bob-inspect-${run}`, '--command-config', clientProps('bob', { 'check.crcs': 'true' })],
    { jvmOpts: jvmOpts(), timeoutMs: 60_000 },
  );
  assert.equal(res.code, 0, res.stderr);
  assert.deepEqual(res.stdout.trim().split('\n').sort(), analyst);
});

test('consume side with transactions: aborted records stay hidden from read_committed readers, control batches pass, values are masked', async () => {
  const { Producer, stringSerializers } = await import('@platformatic/kafka');
  const topic = `payments.inspect-txn-${run}`;
  await createTopics(infra.kafka, [topic], 1);
  const producer = new Producer({ clientId: 'inspect-txn', bootstrapBrokers: [infra.kafka], idempotent: true, transactionalId: `inspect-txn-${run}`, serializers: stringSerializers } as never);
  const value = (tag: string, i: number) => JSON.stringify({ id: `${tag}-${i}`, email: `${tag}${i}@example.com` });
  try {
    for (const [tag, commit] of [['aborted', false], ['committed', true], ['aborted2', false], ['committed2', true]] as const) {
      const tx = await producer.beginTransaction();
      await tx.send({ messages: [0, 1].map((i) => ({ topic, value: value(tag, i), partition: 0 })) } as never);
      if (commit) await tx.commit();
      else await tx.abort();
    }
  } finally {
    await producer.close();
  }
  const res = await kcat(['-C', '-t', topic, '-o', 'beginning', '-e', '-f', '%s\n', '-X', 'isolation.level=read_committed'], 'bob', undefined, 30_000);
  assert.equal(res.code, 0, res.stderr);
  const got = res.stdout.trim().split('\n');
  assert.equal(got.length, 4, got.join('\n'));
  assert.ok(got.every((v) => /"id":"committed2?-\d"/.test(v) && /"email":"tok_v1_/.test(v) && !v.includes('@example.com')), got.join('\n'));
});
