import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateStreamCommand, GetRecordsCommand, GetShardIteratorCommand, PutRecordsCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { getInfra, readAudit, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { bearerClient, startCapturedKinesis, withKinesis, waitActive } from './helpers/kinesis.ts';
import { recordingSchema } from '../src/recording/schema.ts';
import { readSession } from '../src/recording/store.ts';

// The record control on the Kinesis listener (kinesalite upstream): a PutRecords caller's
// records with their sequence numbers, and a GetRecords reader's records as delivered.

const run = randomUUID().slice(0, 8);
const STREAM = `payments.kinrec-${run}`; // alice produces payments.*, bob (analyst) reads it
const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
let infra: Infra;
let endpoint: string;
let spoolDir: string;
let recDir: string;

before(async () => {
  infra = await getInfra();
  const upstream = await startCapturedKinesis();
  const t = testConfig(infra, (c) => withKinesis(c, upstream.endpoint));
  spoolDir = t.spoolDir;
  recDir = mkdtempSync(join(tmpdir(), 'sg-rec-kin-'));
  t.config.recording = recordingSchema.parse({ dir: recDir, sessions: [{ topics: ['payments.kinrec-*'] }], flushIntervalMs: 20 });
  const gateway = await startGateway(t.config);
  endpoint = `http://127.0.0.1:${gateway.addresses.kinesis!.port}`;
});

async function recorded(subject: string, action: string, n: number) {
  const sessions = new Set(readAudit(spoolDir).filter((r) => r.event === 'operation' && r.subject === subject && r.resource === STREAM && r.action === action && r.record_count > 0).map((r) => r.session_id));
  for (let i = 0; i < 100; i++) {
    const rows = [...sessions].flatMap((s) => readSession(recDir, s)).filter((r) => r.action === action);
    if (rows.length >= n) return rows;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${n} ${action} records of ${subject} were not recorded`);
}

test('Kinesis PutRecords and GetRecords are recorded with sequence numbers and audit hashes', async () => {
  const ops = bearerClient(endpoint, await infra.idp.token('ops'), true);
  await ops.send(new CreateStreamCommand({ StreamName: STREAM, ShardCount: 1 }));
  await waitActive(ops, STREAM);
  const alice = bearerClient(endpoint, await infra.idp.token('alice'), true);
  const values = Array.from({ length: 6 }, (_, i) => JSON.stringify({ i, email: `k${i}@example.com` }));
  const put = await alice.send(new PutRecordsCommand({ StreamName: STREAM, Records: values.map((v, i) => ({ Data: Buffer.from(v), PartitionKey: `p${i}` })) }));
  assert.equal(put.FailedRecordCount, 0);
  const produced = await recorded('alice', 'produce', values.length);
  assert.deepEqual(produced.map((r) => r.offset), put.Records!.map((r) => r.SequenceNumber));
  assert.deepEqual(produced.map((r) => r.hash), values.map(sha));
  assert.ok(produced.every((r) => r.protocol === 'kinesis' && r.topic === STREAM));

  const bob = bearerClient(endpoint, await infra.idp.token('bob'), true);
  const shardIt = (await bob.send(new GetShardIteratorCommand({ StreamName: STREAM, ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' }))).ShardIterator;
  const got = await bob.send(new GetRecordsCommand({ ShardIterator: shardIt, Limit: 100 }));
  assert.equal(got.Records?.length, values.length);
  const consumed = await recorded('bob', 'consume', values.length);
  assert.deepEqual(consumed.map((r) => r.offset), got.Records!.map((r) => r.SequenceNumber));
  // as delivered to bob: the consume-side rules for analysts tokenize e-mail addresses
  assert.deepEqual(consumed.map((r) => Buffer.from(r.value!, 'base64').toString()), got.Records!.map((r) => Buffer.from(r.Data!).toString()));
  assert.ok(consumed.every((r) => r.masked === 1 && Buffer.from(r.value!, 'base64').toString().includes('tok_')));
  assert.deepEqual(consumed.map((r) => r.original_hash), values.map(sha));
});
