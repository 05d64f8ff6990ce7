// Masking covers the whole record, end to end (issue 18, finding 5): a card number in a Kafka
// record key, header name or header value, in an HTTP produce's key and headers, and in a
// Kinesis PartitionKey / ExplicitHashKey is masked in what the broker (or Kinesis) stores.
// The example config's rule pci.card-number (no targets) applies to payments.*.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { CreateStreamCommand, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { request } from 'undici';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { ensureKcat, plainJwtAuth, runKcat } from './helpers/kcat.ts';
import { bearerClient, kinesisClient, startCapturedKinesis, waitActive, withKinesis, type CapturedKinesis } from './helpers/kinesis.ts';
import type { Gateway } from '../src/gateway.ts';

const run = `${process.pid}-${Date.now() % 100000}`;
const CARD = '4111111111111111';
const MASKED = '************1111';
let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let kinesis: CapturedKinesis;

before(async () => {
  ensureKcat();
  infra = await getInfra();
  kinesis = await startCapturedKinesis();
  const made = testConfig(infra, (c) => withKinesis(c, kinesis.endpoint));
  spoolDir = made.spoolDir;
  gateway = await startGateway(made.config);
});

test('Kafka: a card in a record key, a header name and a header value is masked in what the broker stores', async () => {
  const topic = `payments.keys-${run}`;
  await createTopics(infra.kafka, [topic], 1);
  const bootstrap = `127.0.0.1:${gateway.addresses.kafka!.port}`;
  const res = await runKcat(bootstrap, plainJwtAuth('alice', await infra.idp.token('alice')), [
    '-P', '-t', topic, '-K', '|', '-z', 'lz4', '-H', `card=${CARD}`, '-H', `${CARD}=name`, '-H', 'plain=ok',
  ], `order ${CARD}|{"card":${CARD},"n":1}\nk2|{"n":2}\n`);
  assert.equal(res.code, 0, res.stderr);
  const stored = await readTopic(infra.kafka, topic, 2);
  assert.equal(stored.length, 2);
  const [first, second] = stored.sort((a, b) => Number(a.offset - b.offset));
  assert.equal(first!.key, `order ${MASKED}`);
  assert.deepEqual(first!.headers, { card: MASKED, [MASKED]: 'name', plain: 'ok' });
  assert.equal(first!.value, `{"card":"${MASKED}","n":1}`);
  assert.equal(second!.key, 'k2');
  assert.deepEqual(second!.headers, { card: MASKED, [MASKED]: 'name', plain: 'ok' });
  for (const r of stored) assert.ok(![r.key, r.value, ...Object.entries(r.headers).flat()].join('|').includes(CARD));
  const row = readAudit(spoolDir).find((r) => r.resource === topic && r.action === 'produce' && r.decision === 'allow');
  assert.ok(row, 'audited');
  // key 1 + value 1 + per record a header name and a header value
  assert.equal(row.masking['pci.card-number'], 6);
  assert.deepEqual(row.inspection_notes, ['keys-changed:1', 'headers-changed:2']);
});

test('HTTP produce: a card in the key and in headers is masked before Kafka stores it', async () => {
  const topic = `payments.http-keys-${run}`;
  await createTopics(infra.kafka, [topic], 1);
  const res = await request(`http://127.0.0.1:${gateway.addresses.http!.port}/v3/clusters/local/topics/${topic}/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${await infra.idp.token('alice')}` },
    body: JSON.stringify({
      key: { type: 'STRING', data: `customer ${CARD}` },
      headers: [{ name: 'card', value: Buffer.from(`4111 1111 1111 1111`).toString('base64') }, { name: CARD, value: Buffer.from('v').toString('base64') }],
      value: { type: 'JSON', data: { card: Number(CARD), note: 'json number' } },
    }),
  });
  const body = (await res.body.json()) as Record<string, unknown>;
  assert.equal(res.statusCode, 200, JSON.stringify(body));
  const [stored] = await readTopic(infra.kafka, topic, 1);
  assert.ok(stored);
  assert.equal(stored.key, `customer ${MASKED}`);
  assert.deepEqual(stored.headers, { card: '**** **** **** 1111', [MASKED]: 'v' });
  assert.deepEqual(JSON.parse(stored.value!), { card: MASKED, note: 'json number' });
});

test('Kinesis PutRecords: a card in PartitionKey is masked when forwarded; a masked ExplicitHashKey is not forwarded', async () => {
  const stream = `payments.kin-keys-${run}`;
  // the stream is made straight in kinesalite: this test is about what the gateway forwards
  const direct = kinesisClient(kinesis.kinesalite.endpoint, { accessKeyId: 'x', secretAccessKey: 'y' }, { http1: true });
  await direct.send(new CreateStreamCommand({ StreamName: stream, ShardCount: 1 }));
  await waitActive(direct, stream);
  const endpoint = `http://127.0.0.1:${gateway.addresses.kinesis!.port}`;
  const alice = bearerClient(endpoint, await infra.idp.token('alice'));
  const before = kinesis.captured.length;
  const res = await alice.send(new PutRecordsCommand({
    StreamName: stream,
    Records: [
      { Data: Buffer.from('{"a":1}'), PartitionKey: `card ${CARD}` },
      { Data: Buffer.from('{"a":2}'), PartitionKey: 'plain', ExplicitHashKey: CARD },
      { Data: Buffer.from('{"a":3}'), PartitionKey: 'kept', ExplicitHashKey: '12345' },
    ],
  }));
  assert.equal(res.FailedRecordCount, 0, JSON.stringify(res.Records));
  const forwarded = kinesis.captured.slice(before).find((c) => c.target.endsWith('.PutRecords'));
  assert.ok(forwarded, 'the PutRecords reached Kinesis');
  assert.ok(!forwarded.body.includes(CARD), forwarded.body);
  const entries = (JSON.parse(forwarded.body) as { Records: Array<{ PartitionKey: string; ExplicitHashKey?: string }> }).Records;
  assert.deepEqual(entries.map((e) => [e.PartitionKey, e.ExplicitHashKey]), [[`card ${MASKED}`, undefined], ['plain', undefined], ['kept', '12345']]);
});
