import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type RunningRegistry } from '../src/dev/registry.ts';
import { createTopics, getInfra, readAudit, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { runJavaClient } from './helpers/java-serdes.ts';
import type { Gateway } from '../src/gateway.ts';

// The Java clients with Apicurio Registry's own Avro serializer and deserializer (2.x serdes,
// from Maven Central, unchanged: the global id in the apicurio.value.globalId header, the
// schema registered by the producer through the registry's native API), through the gateway.

const run = `${process.pid}-${Date.now() % 100000}`;
const TOPIC = `customers.apicurio-${run}`;
let infra: Infra;
let registry: RunningRegistry;
let gateway: Gateway;
let spoolDir: string;
let dir: string;

function props(who: string | null): string {
  const file = join(dir, `${who ?? 'direct'}-${Math.random().toString(36).slice(2)}.properties`);
  const lines = who
    ? [
        `bootstrap.servers=127.0.0.1:${gateway.addresses.kafka!.port}`,
        'security.protocol=SASL_PLAINTEXT',
        'sasl.mechanism=OAUTHBEARER',
        'sasl.login.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler',
        `sasl.oauthbearer.token.endpoint.url=${infra.idp.tokenEndpoint}`,
        `sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required clientId="${who}" clientSecret="${who}-secret";`,
      ]
    : [`bootstrap.servers=${infra.kafka}`];
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

// the Java client fetches its tokens from the test identity provider, which it must be allowed to reach
const java = (args: string[]) => runJavaClient('AvroClient.java', args, { jvmOpts: [`-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=${infra.idp.tokenEndpoint}`] });

before(async () => {
  [infra, registry] = await Promise.all([getInfra(), startRegistry()]);
  dir = mkdtempSync(join(tmpdir(), 'sg-serdes-'));
  await createTopics(infra.kafka, [TOPIC], 1);
  const made = testConfig(infra, (c) => {
    c.schemas = { registry: { url: registry.ccompat } };
    c.policy.grants!.push({ roles: ['payments-writer'], actions: ['produce', 'describe'], topics: ['customers.apicurio-*'] });
    c.policy.grants!.push({ roles: ['analyst'], actions: ['consume', 'describe'], topics: ['customers.apicurio-*'], groups: ['serdes-*'] } as never);
    c.inspection!.topics!.unshift({
      topics: ['customers.apicurio-*'],
      schema: { framing: 'apicurio-header', required: true },
      produce: ['pci.card-number', 'pii.tagged'],
      consume: [{ roles: ['analyst'], rules: ['pii.email'] }],
    });
  });
  spoolDir = made.spoolDir;
  gateway = await startGateway(made.config);
});

after(async () => {
  await registry?.stop();
});

test("Apicurio's Java Avro serializer through the gateway: masked and tag-selected fields before the broker, the unchanged deserializer reads them, an analyst reads e-mails tokenized", async () => {
  const apiV2 = `${registry.url}/apis/registry/v2`;
  const sent = await java(['produce', props('alice'), TOPIC, apiV2, '3']);
  assert.equal(sent.code, 0, sent.stderr.slice(-3000));

  // straight from the broker, with Apicurio's deserializer
  const stored = await java(['consume', props(null), TOPIC, apiV2, '3', `direct-${run}`]);
  assert.equal(stored.code, 0, stored.stderr.slice(-3000));
  const records = stored.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
  assert.equal(records.length, 3);
  for (const c of records) {
    assert.equal(c.card, '**** **** **** 1111');
    assert.equal(c.phone, '[pii]');
    assert.equal(c.home.street, '[pii]');
    assert.equal(c.home.city, 'Springfield');
    assert.match(c.email, /^java\d@example\.com$/);
  }

  const read = await java(['consume', props('bob'), TOPIC, apiV2, '3', `serdes-bob-${run}`]);
  assert.equal(read.code, 0, read.stderr.slice(-3000));
  for (const line of read.stdout.trim().split('\n')) assert.match((JSON.parse(line) as { email: string }).email, /^tok_v1_/);

  const rows = readAudit(spoolDir).filter((r) => r.resource === TOPIC && r.action === 'produce' && r.decision === 'allow');
  assert.equal(rows.reduce((n, r) => n + (r.masking['pii.tagged'] ?? 0), 0), 6, 'two tagged fields in each of three records');
});
