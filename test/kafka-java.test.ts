import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runKafkaTool } from '../src/dev/kafka.ts';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { watchAdvertisedAddresses } from './helpers/kafka-gateway.ts';
import type { Gateway } from '../src/gateway.ts';

// The Java clients from the same Kafka jars, unchanged, through the gateway: OAUTHBEARER
// with the client-credentials login handler fetching real tokens from the test IdP.

const run = `${process.pid}-${Date.now() % 100000}`;
const TOPIC = `payments.java-${run}`;
let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let bootstrap: string;
let dir: string;
let watch: Awaited<ReturnType<typeof watchAdvertisedAddresses>>;

function clientProps(who: string, extra: Record<string, string> = {}): string {
  const file = join(dir, `${who}-${Object.keys(extra).length}-${Math.random().toString(36).slice(2)}.properties`);
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

before(async () => {
  infra = await getInfra();
  dir = mkdtempSync(join(tmpdir(), 'sg-java-'));
  await createTopics(infra.kafka, [TOPIC], 2);
  watch = await watchAdvertisedAddresses();
  const made = testConfig(infra);
  spoolDir = made.spoolDir;
  gateway = await startGateway(made.config);
  bootstrap = `127.0.0.1:${gateway.addresses.kafka!.port}`;
});

after(() => watch?.stop());

test('console producer (idempotent, gzip/snappy/lz4/zstd) and console consumers (classic and KIP-848 groups) through the gateway', async () => {
  const codecs = ['gzip', 'snappy', 'lz4', 'zstd'];
  const produced = await Promise.all(
    codecs.map(async (codec) => {
      const lines = Array.from({ length: 5 }, (_, i) => `${codec}-${i}`);
      const res = await runKafkaTool(
        'org.apache.kafka.tools.ConsoleProducer',
        ['--bootstrap-server', bootstrap, '--topic', TOPIC, '--command-config', clientProps('alice', { 'compression.type': codec, 'enable.idempotence': 'true', acks: 'all' })],
        { input: lines.join('\n') + '\n', jvmOpts: jvmOpts(), timeoutMs: 60_000 },
      );
      assert.equal(res.code, 0, res.stderr);
      return lines;
    }),
  );
  const expected = produced.flat().sort();
  const direct = await readTopic(infra.kafka, TOPIC, expected.length);
  assert.deepEqual(direct.map((r) => r.value).sort(), expected);

  for (const protocol of ['classic', 'consumer']) {
    const res = await runKafkaTool(
      'org.apache.kafka.tools.consumer.ConsoleConsumer',
      [
        '--bootstrap-server', bootstrap, '--topic', TOPIC, '--from-beginning', '--max-messages', String(expected.length), '--timeout-ms', '30000',
        '--group', `alice-java-${protocol}-${run}`,
        '--command-config', clientProps('alice', { 'group.protocol': protocol }),
      ],
      { jvmOpts: jvmOpts(), timeoutMs: 60_000 },
    );
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(res.stdout.trim().split('\n').sort(), expected, `${protocol} group protocol`);
  }
  const rows = readAudit(spoolDir);
  assert.ok(rows.some((r) => r.meta.api === 'ConsumerGroupHeartbeat' && r.resource === `alice-java-consumer-${run}` && r.decision === 'allow'), 'KIP-848 heartbeat authorized');
  assert.ok(rows.some((r) => r.meta.api === 'JoinGroup' && r.resource === `alice-java-classic-${run}`), 'classic JoinGroup authorized');
  // Java uses incremental fetch sessions: records of partitions a request did not name are audited too
  const consumed = rows.filter((r) => r.subject === 'alice' && r.action === 'consume' && r.resource === TOPIC && r.meta.api === 'Fetch' && r.decision === 'allow');
  assert.equal(consumed.reduce((n, r) => n + r.record_count, 0), 2 * expected.length, 'every consumed record is in the audit');
});

test('the Java console producer of a read-only identity gets TOPIC_AUTHORIZATION_FAILED and nothing reaches the broker', async () => {
  const res = await runKafkaTool(
    'org.apache.kafka.tools.ConsoleProducer',
    ['--bootstrap-server', bootstrap, '--topic', TOPIC, '--command-config', clientProps('bob', { 'max.block.ms': '10000', 'delivery.timeout.ms': '10000', 'request.timeout.ms': '5000', 'linger.ms': '0' })],
    { input: 'bob-java\n', jvmOpts: jvmOpts(), timeoutMs: 60_000 },
  );
  assert.match(res.stderr, /TopicAuthorizationException|Not authorized to access topics/);
  const direct = await readTopic(infra.kafka, TOPIC, 21, 2000);
  assert.ok(!direct.some((r) => r.value === 'bob-java'));
  assert.ok(readAudit(spoolDir).some((r) => r.subject === 'bob' && r.action === 'produce' && r.decision === 'deny'));
});

test('ProducerPerformance runs through the gateway', async () => {
  const res = await runKafkaTool(
    'org.apache.kafka.tools.ProducerPerformance',
    ['--topic', TOPIC, '--num-records', '5000', '--record-size', '200', '--throughput', '-1', '--command-config', clientProps('alice', { 'bootstrap.servers': bootstrap, acks: 'all' })],
    { jvmOpts: jvmOpts(), timeoutMs: 90_000 },
  );
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /5000 records sent/);
});

test('KIP-368: the Java producer re-authenticates on its connections as its 2-second tokens come and go, and sends every record', async () => {
  const topic = `payments.java-reauth-${run}`;
  await createTopics(infra.kafka, [topic], 1);
  // ~8 s at 50 records/s: several token lifetimes (the shortlived client's tokens live 2 s;
  // the Java login refreshes halfway through each, the gateway reports the session lifetime)
  const res = await runKafkaTool(
    'org.apache.kafka.tools.ProducerPerformance',
    ['--topic', topic, '--num-records', '400', '--record-size', '100', '--throughput', '50', '--command-config', clientProps('shortlived', { 'bootstrap.servers': bootstrap, acks: 'all' })],
    { jvmOpts: jvmOpts(), timeoutMs: 90_000 },
  );
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /400 records sent/);
  assert.equal((await readTopic(infra.kafka, topic, 400, 10_000)).length, 400, 'the broker holds every record');
  const logins = readAudit(spoolDir).filter((r) => r.subject === 'shortlived' && r.meta.api === 'SaslAuthenticate' && r.decision === 'allow');
  const perSession = new Map<string, number>();
  for (const r of logins) perSession.set(r.session_id, (perSession.get(r.session_id) ?? 0) + 1);
  assert.ok(Math.max(...perSession.values()) >= 3, `re-authentication on one connection (SASL logins per session: ${[...perSession.values()].join(', ')})`);
});

test('no Java client ever saw a broker address', () => {
  const brokerPort = Number(infra.kafka.split(':')[1]);
  assert.ok(watch.seen.length > 0);
  for (const a of watch.seen) assert.notEqual(a.port, brokerPort, `API ${a.api} leaked the broker port`);
});
