import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import { request } from 'undici';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { kafkaUpstream, testConfig } from './helpers/config.ts';
import type { Gateway } from '../src/gateway.ts';

// Integration: real Kafka broker, real OIDC provider, gateway in process.

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
// per run: the tests read their topics from the start, so a broker kept between runs must not hold earlier records
const run = `${process.pid}-${Date.now() % 100000}`;
const MASKED_TOPIC = `payments.cards-${run}`;
const PLAIN_TOPIC = `sandbox.alice.orders-${run}`; // alice may write her sandbox; no inspection rules there

let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let base: string;
let aliceToken: string;

async function produce(path: string, body: unknown, token?: string, contentType = 'application/json') {
  const res = await request(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': contentType, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const json = (await res.body.json()) as Record<string, unknown>;
  return { status: res.statusCode, json };
}

const recordsPath = (topic: string, cluster = 'local') => `/v3/clusters/${cluster}/topics/${topic}/records`;

before(async () => {
  infra = await getInfra();
  await createTopics(infra.kafka, [MASKED_TOPIC, PLAIN_TOPIC, 'payments.empty'], 1);
  const made = testConfig(infra);
  spoolDir = made.spoolDir;
  gateway = await startGateway(made.config);
  base = `http://127.0.0.1:${gateway.addresses.http!.port}`;
  aliceToken = await infra.idp.token('alice');
});

test('an allowed produce masks the card number before Kafka and reports the real offset', async () => {
  const value = { card: '4111 1111 1111 1111', amount: 42, note: 'order 1234567890123456 is not a card' };
  const { status, json } = await produce(recordsPath(MASKED_TOPIC), { key: { type: 'STRING', data: 'k1' }, value: { type: 'JSON', data: value } }, aliceToken);
  assert.equal(status, 200, JSON.stringify(json));
  assert.equal(json.error_code, 200);
  assert.equal(json.topic_name, MASKED_TOPIC);
  assert.equal(json.partition_id, 0);
  assert.equal(typeof json.offset, 'number');

  const [record] = await readTopic(infra.kafka, MASKED_TOPIC, 1);
  assert.ok(record);
  assert.equal(record.offset, BigInt(json.offset as number));
  assert.equal(record.key, 'k1');
  const seen = JSON.parse(record.value!) as typeof value;
  assert.equal(seen.card, '**** **** **** 1111');
  assert.equal(seen.note, value.note, 'a Luhn-invalid 16-digit id is not a card');

  const row = readAudit(spoolDir).find((r) => r.offsets.includes(`0:${json.offset}`));
  assert.ok(row, 'audit row for the produce');
  assert.equal(row.subject, 'alice');
  assert.equal(row.action, 'produce');
  assert.equal(row.resource, MASKED_TOPIC);
  assert.equal(row.decision, 'allow');
  assert.deepEqual(row.record_hashes, [sha256(JSON.stringify(value))]);
  assert.equal(row.masked_hashes[0], sha256(record.value!));
  assert.deepEqual(row.masking, { 'pci.card-number': 1 });
  assert.ok(row.roles.includes('payments-writer'));
});

test('a topic without rules is passed through unchanged, batch form answers 207 per entry', async () => {
  const entries = [0, 1, 2].map((i) => ({ id: `e${i}`, value: { type: 'STRING', data: `card 4111111111111111 #${i}` } }));
  const { status, json } = await produce(`${recordsPath(PLAIN_TOPIC)}:batch`, { entries }, aliceToken);
  assert.equal(status, 207, JSON.stringify(json));
  const successes = json.successes as Array<{ id: string; offset: number }>;
  assert.deepEqual(successes.map((s) => s.id), ['e0', 'e1', 'e2']);
  assert.deepEqual(successes.map((s) => s.offset - successes[0]!.offset), [0, 1, 2]);
  const records = await readTopic(infra.kafka, PLAIN_TOPIC, 3);
  assert.deepEqual(records.map((r) => r.value), entries.map((e) => e.value.data));
});

test('missing, expired, foreign-audience and unsigned tokens get 401 and an audit row', async () => {
  const otherAudience = await infra.idp.token('alice', { audience: 'other-service' });
  const shortLived = await infra.idp.token('shortlived');
  const claims = decodeJwt(aliceToken);
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
  await new Promise((r) => setTimeout(r, 3100)); // shortlived tokens live 2 s

  const cases: Array<[string, string | undefined, RegExp]> = [
    ['missing', undefined, /bearer token is required/],
    ['wrong audience', otherAudience, /aud/],
    ['expired', shortLived, /expired/],
    ['alg none', unsigned, /alg "none"/],
    ['garbage', 'not.a.jwt', /well-formed JWT/],
  ];
  for (const [name, token, message] of cases) {
    const { status, json } = await produce(recordsPath(MASKED_TOPIC), { value: { data: { n: name } } }, token);
    assert.equal(status, 401, name);
    assert.equal(json.error_code, 40101, name);
    assert.match(String(json.message), message, name);
  }
  const denied = readAudit(spoolDir).filter((r) => r.reason === 'unauthenticated');
  assert.ok(denied.length >= cases.length);
  for (const row of denied) {
    assert.equal(row.decision, 'deny');
    assert.equal(row.resource, MASKED_TOPIC);
    assert.equal(row.record_hashes.length, 0, 'the body of an unauthenticated request is never read');
    assert.ok(!JSON.stringify(row).includes(aliceToken.split('.')[2]!), 'no token material in audit rows');
  }
});

test('an identity without a grant gets 403, nothing reaches the broker, and the denial is audited', async () => {
  const bob = await infra.idp.token('bob'); // analyst: may consume payments.*, not produce
  const value = { card: '5555 5555 5555 4444' };
  const { status, json } = await produce(recordsPath('payments.empty'), { value: { data: value } }, bob);
  assert.equal(status, 403);
  assert.equal(json.error_code, 40301);
  assert.match(String(json.message), /bob may not produce to topic "payments.empty"/);
  assert.equal(json.rule, 'default-deny');

  const reached = await readTopic(infra.kafka, 'payments.empty', 1, 2000);
  assert.equal(reached.length, 0);
  const row = readAudit(spoolDir).find((r) => r.subject === 'bob' && r.resource === 'payments.empty');
  assert.ok(row);
  assert.equal(row.decision, 'deny');
  assert.equal(row.rule, 'default-deny');
  assert.deepEqual(row.record_hashes, [sha256(JSON.stringify(value))]);
});

test('malformed bodies get 400 with a precise message and an audit row', async () => {
  const cases: Array<[unknown, RegExp, string?]> = [
    ['{"value": ', /not valid JSON/],
    [{ value: { type: 'BINARY', data: '***' } }, /base64/],
    [{ value: { type: 'XML', data: 1 } }, /type must be one of/],
    [{ partition_id: -1, value: { data: 1 } }, /partition_id/],
    [{ value: { data: 1 }, extra: true }, /unknown property \(member 2\)/],
    [{ value: { data: 1 } }, /Content-Type/, 'text/plain'],
  ];
  for (const [body, message, ctype] of cases) {
    const { status, json } = await produce(recordsPath(MASKED_TOPIC), body, aliceToken, ctype);
    assert.equal(status, 400, String(message));
    assert.equal(json.error_code, 40001);
    assert.match(String(json.message), message);
  }
  const rows = readAudit(spoolDir).filter((r) => r.reason === 'invalid');
  assert.ok(rows.length >= cases.length);
  assert.ok(rows.every((r) => r.subject === 'alice'), 'decode failures still carry the authenticated identity');
});

test('an unknown topic, an unknown cluster and an oversized body get clear errors', async () => {
  const ops = await infra.idp.token('ops'); // platform-admin may produce anywhere
  let r = await produce(recordsPath('no.such.topic'), { value: { data: 1 } }, ops);
  assert.equal(r.status, 404);
  assert.match(String(r.json.message), /topic "no.such.topic" does not exist/);

  r = await produce(recordsPath(PLAIN_TOPIC, 'elsewhere'), { value: { data: 1 } }, ops);
  assert.equal(r.status, 404);
  assert.match(String(r.json.message), /cluster "elsewhere"/);

  r = await produce(recordsPath(PLAIN_TOPIC), { value: { type: 'STRING', data: 'x'.repeat(2 * 1024 * 1024) } }, ops);
  assert.equal(r.status, 413);
  assert.equal(r.json.error_code, 41301);
  assert.match(String(r.json.message), /limit is 1048576/);

  r = await produce(recordsPath('payments.ledger'), { value: { data: 1 } }, ops);
  assert.equal(r.status, 403, 'an explicit deny beats the admin allow');
  assert.equal(r.json.rule, 'grants[4]');
});

test('pool mode masks the same way and says where the batch was inspected', async () => {
  const { config, spoolDir: dir } = testConfig(infra, (c) => {
    c.inspection!.mode = 'pool';
  });
  const pooled = await startGateway(config);
  const url = `http://127.0.0.1:${pooled.addresses.http!.port}`;
  const entries = Array.from({ length: 20 }, (_, i) => ({ id: String(i), value: { data: { card: `4111-1111-1111-1111`, i } } }));
  const res = await request(`${url}${recordsPath(MASKED_TOPIC)}:batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${aliceToken}` },
    body: JSON.stringify({ entries }),
  });
  assert.equal(res.statusCode, 207);
  await res.body.dump();
  const row = readAudit(dir).find((r) => r.record_count === 20);
  assert.ok(row);
  assert.equal(row.inspected, 'pool');
  assert.deepEqual(row.masking, { 'pci.card-number': 20 });
  assert.ok(row.masked_hashes.every((h) => h.length === 64));
});

test('an unreachable broker gives 503, not a crash', async () => {
  const { config } = testConfig(infra, (c) => {
    kafkaUpstream(c).bootstrap = ['127.0.0.1:1'];
    kafkaUpstream(c).timeoutMs = 1000;
  });
  const down = await startGateway(config);
  const url = `http://127.0.0.1:${down.addresses.http!.port}`;
  const res = await request(`${url}${recordsPath(PLAIN_TOPIC)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${aliceToken}` },
    body: JSON.stringify({ value: { data: 1 } }),
  });
  const json = (await res.body.json()) as { error_code: number; message: string };
  assert.equal(res.statusCode, 503, JSON.stringify(json));
  assert.equal(json.error_code, 50301);
  assert.match(json.message, /not reachable/);
});
