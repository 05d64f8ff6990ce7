// Integration: inspection rules through the HTTP produce path to a real Kafka broker.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';

const TOPIC = 'payments.inspect';
const BLOCKED = 'payments.inspect-blocked';
let infra: Infra;
let base: string;
let spoolDir: string;
let token: string;

before(async () => {
  infra = await getInfra();
  await createTopics(infra.kafka, [TOPIC, BLOCKED], 1);
  const made = testConfig(infra, (c) => {
    c.inspection!.topics![0]!.produce = ['pci.card-number', 'pii.ssn', 'secrets.password', 'secrets.private-key'];
  });
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

test('a batch answers per entry: a blocked record fails alone (207 failures), the others reach the broker; all blocked is still 207', async () => {
  const TOPIC_BATCH = BLOCKED;
  const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----';
  const before = (await readTopic(infra.kafka, TOPIC_BATCH, 10, 1000)).length;
  const batch = async (entries: unknown[]) => {
    const res = await request(`${base}/${TOPIC_BATCH}/records:batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ entries }),
    });
    return { status: res.statusCode, json: (await res.body.json()) as { successes: Array<Record<string, unknown>>; failures: Array<Record<string, unknown>> } };
  };
  const mixed = await batch([
    { id: 'a', value: { type: 'JSON', data: { n: 1 } } },
    { id: 'b', value: { type: 'JSON', data: { key: pem } } },
    { id: 'c', value: { type: 'JSON', data: { n: 3 } } },
  ]);
  assert.equal(mixed.status, 207, JSON.stringify(mixed.json));
  assert.deepEqual(mixed.json.successes.map((s) => s.id), ['a', 'c']);
  assert.ok(mixed.json.successes.every((s) => s.error_code === 200 && typeof s.offset === 'number' && s.offset >= 0));
  assert.deepEqual(mixed.json.failures.map((f) => [f.id, f.error_code, f.rule]), [['b', 42201, 'secrets.private-key']]);
  const stored = (await readTopic(infra.kafka, TOPIC_BATCH, before + 2)).slice(before).map((r) => JSON.parse(r.value!) as { n: number });
  assert.deepEqual(stored.map((v) => v.n), [1, 3]);
  const row = readAudit(spoolDir).findLast((r) => r.resource === TOPIC_BATCH && r.meta.path === 'records:batch');
  assert.equal(row?.decision, 'allow');
  assert.equal(row?.meta.failed_records, '1');
  assert.equal(row?.meta.record_errors, '1:secrets.private-key');
  assert.equal(row?.record_hashes.length, 3, 'every record is hashed, the refused one too');

  const none = await batch([{ id: 'x', value: { type: 'JSON', data: { key: pem } } }]);
  assert.equal(none.status, 207, JSON.stringify(none.json));
  assert.deepEqual(none.json, { successes: [], failures: [{ id: 'x', error_code: 42201, rule: 'secrets.private-key', message: none.json.failures[0]!.message }] });
  assert.equal(readAudit(spoolDir).findLast((r) => r.resource === TOPIC_BATCH)?.decision, 'block');
});
