import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ensureKcat, plainJwtAuth, runKcat, type KcatResult } from './helpers/kcat.ts';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { watchAdvertisedAddresses } from './helpers/kafka-gateway.ts';
import type { Gateway } from '../src/gateway.ts';

// librdkafka (Debian's kcat) through the gateway, fetching its own tokens from the test
// IdP with sasl.oauthbearer.method=oidc (client credentials).

const run = `${process.pid}-${Date.now() % 100000}`;
const TOPIC = `payments.kcat-${run}`;
let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let bootstrap: string;
let oidc = false;
let watch: Awaited<ReturnType<typeof watchAdvertisedAddresses>>;

/**
 * Debian 12's librdkafka (2.0.2) is built without libcurl, so its OIDC token fetcher is
 * missing; there kcat authenticates with SASL/PLAIN carrying a JWT from the same IdP.
 */
function oidcSupported(): boolean {
  const probe = spawnSync('kcat', ['-b', '127.0.0.1:1', '-X', 'sasl.oauthbearer.method=oidc', '-L', '-m', '1'], { encoding: 'utf8', timeout: 10_000 });
  return !/not supported in this build/.test(probe.stderr);
}

async function kcat(args: string[], who: string, input?: string, timeoutMs = 30_000): Promise<KcatResult> {
  const auth = oidc
    ? [
        '-X', 'security.protocol=SASL_PLAINTEXT',
        '-X', 'sasl.mechanisms=OAUTHBEARER',
        '-X', 'sasl.oauthbearer.method=oidc',
        '-X', `sasl.oauthbearer.client.id=${who}`,
        '-X', `sasl.oauthbearer.client.secret=${who}-secret`,
        '-X', `sasl.oauthbearer.token.endpoint.url=${infra.idp.tokenEndpoint}`,
      ]
    : plainJwtAuth(who, await infra.idp.token(who));
  return runKcat(bootstrap, auth, args, input, timeoutMs);
}

before(async () => {
  ensureKcat();
  oidc = oidcSupported();
  infra = await getInfra();
  await createTopics(infra.kafka, [TOPIC], 2);
  watch = await watchAdvertisedAddresses();
  const made = testConfig(infra);
  spoolDir = made.spoolDir;
  gateway = await startGateway(made.config);
  bootstrap = `127.0.0.1:${gateway.addresses.kafka!.port}`;
});

after(() => watch?.stop());

test('kcat produces (idempotent, all four codecs) and consumes in a group through the gateway with IdP tokens', async (t) => {
  if (!oidc) t.diagnostic('this librdkafka has no OIDC token fetcher: SASL/PLAIN with a JWT password');
  const expected: string[] = [];
  for (const codec of ['gzip', 'snappy', 'lz4', 'zstd']) {
    const lines = Array.from({ length: 3 }, (_, i) => `kcat-${codec}-${i}`);
    expected.push(...lines);
    const res = await kcat(['-P', '-t', TOPIC, '-z', codec, '-X', 'enable.idempotence=true'], 'alice', lines.join('\n') + '\n');
    assert.equal(res.code, 0, res.stderr);
  }
  const direct = await readTopic(infra.kafka, TOPIC, expected.length);
  assert.deepEqual(direct.map((r) => r.value).sort(), [...expected].sort());

  const res = await kcat(['-G', `alice-kcat-${run}`, '-X', 'auto.offset.reset=earliest', '-c', String(expected.length), '-f', '%s\n', TOPIC], 'alice', undefined, 45_000);
  assert.equal(res.code, 0, res.stderr);
  assert.deepEqual(res.stdout.trim().split('\n').sort(), [...expected].sort());
  const rows = readAudit(spoolDir);
  assert.ok(rows.some((r) => r.subject === 'alice' && r.action === 'consume' && r.resource === TOPIC && r.record_count > 0));
  assert.ok(rows.some((r) => r.meta.api === 'JoinGroup' && r.resource === `alice-kcat-${run}`));
});

test('acks=0 produce is forwarded without a response and still audited', async () => {
  const topic = `payments.kcat-acks0-${run}`;
  await createTopics(infra.kafka, [topic], 1);
  const lines = ['a0-1', 'a0-2', 'a0-3'];
  const res = await kcat(['-P', '-t', topic, '-X', 'acks=0'], 'alice', lines.join('\n') + '\n');
  assert.equal(res.code, 0, res.stderr);
  const direct = await readTopic(infra.kafka, topic, 3);
  assert.deepEqual(direct.map((r) => r.value), lines);
  const row = readAudit(spoolDir).find((r) => r.resource === topic && r.action === 'produce');
  assert.ok(row);
  assert.equal(row.meta.acks, '0');
  assert.equal(row.decision, 'allow');
});

test('kcat as a read-only identity: produce is refused with TOPIC_AUTHORIZATION_FAILED', async () => {
  const res = await kcat(['-P', '-t', TOPIC, '-X', 'message.timeout.ms=5000'], 'bob', 'kcat-bob\n');
  assert.match(res.stderr, /Topic authorization failed|TOPIC_AUTHORIZATION_FAILED/i);
  const direct = await readTopic(infra.kafka, TOPIC, 13, 2000);
  assert.ok(!direct.some((r) => r.value === 'kcat-bob'));
});

test('kcat metadata lists gateway addresses only', async () => {
  const res = await kcat(['-L', '-J'], 'alice');
  assert.equal(res.code, 0, res.stderr);
  const md = JSON.parse(res.stdout) as { brokers: Array<{ name: string }>; topics: Array<{ topic: string }> };
  const brokerPort = infra.kafka.split(':')[1];
  for (const b of md.brokers) assert.ok(!b.name.endsWith(`:${brokerPort}`), `broker address leaked: ${b.name}`);
  assert.ok(md.topics.every((t) => !t.topic.startsWith('secret.')), 'alice cannot see secret topics');
  for (const a of watch.seen) assert.notEqual(a.port, Number(brokerPort));
});
