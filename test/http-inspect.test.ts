// Integration: inspection rules through the HTTP produce path to a real Kafka broker.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { createTopics, getInfra, readAudit, readTopic, startGateway, testConfig, type Infra } from './helpers/infra.ts';

const TOPIC = 'payments.inspect';
const BLOCKED = 'payments.inspect-blocked';
let infra: Infra;
let base: string;
let spoolDir: string;
let token: string;

before(async () => {
  infra = await getInfra();
  await createTopics(infra.kafka, [TOPIC, BLOCKED], 1);
  const made = testConfig(infra, (y) => y.replace('produce: [pci.card-number]', 'produce: [pci.card-number, pii.ssn, secrets.password, secrets.private-key]'));
  spoolDir = made.spoolDir;
  const gateway = await startGateway(made.config);
  base = `http://127.0.0.1:${gateway.addresses.http!.port}/v3/clusters/local/topics`;
  token = await infra.idp.token('alice');
});

async function produce(topic: string, body: unknown) {
  const res = await request(`${base}/${topic}/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

test('JSON field rules and detectors rewrite the value before Kafka; the audit row counts each rule', async () => {
  const value = { customer: { ssn: '123-45-6789', password: 'hunter2' }, card: '4111 1111 1111 1111', ref: 'order 1234567890123456' };
  const { status, json } = await produce(TOPIC, { value: { type: 'JSON', data: value } });
  assert.equal(status, 200, JSON.stringify(json));
  const [record] = await readTopic(infra.kafka, TOPIC, 1);
  const seen = JSON.parse(record!.value!);
  assert.equal(seen.customer.ssn, '***-**-****');
  assert.match(seen.customer.password, /^[0-9a-f]{16}$/);
  assert.equal(seen.card, '**** **** **** 1111');
  assert.equal(seen.ref, value.ref);
  const row = readAudit(spoolDir).find((r) => r.resource === TOPIC && r.decision === 'allow');
  assert.deepEqual(row?.masking, { 'pii.ssn': 1, 'secrets.password': 1, 'pci.card-number': 1 });
});

test('a blocked record is refused with 422 and the rule id; nothing reaches the broker; the audit row says block', async () => {
  const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----';
  const { status, json } = await produce(BLOCKED, { value: { type: 'JSON', data: { note: 'deploy key', key: pem } } });
  assert.equal(status, 422, JSON.stringify(json));
  assert.equal(json.error_code, 42201);
  assert.equal(json.rule, 'secrets.private-key');
  assert.match(String(json.message), /blocked by inspection rule "secrets\.private-key": private keys must not be published/);
  assert.equal((await readTopic(infra.kafka, BLOCKED, 1, 2000)).length, 0);
  const row = readAudit(spoolDir).find((r) => r.resource === BLOCKED);
  assert.ok(row);
  assert.equal(row.decision, 'block');
  assert.equal(row.rule, 'secrets.private-key');
  assert.equal(row.record_hashes.length, 1);
});
