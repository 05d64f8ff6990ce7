import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  ListStreamsCommand,
  PutRecordCommand,
  PutRecordsCommand,
  type KinesisClient,
} from '@aws-sdk/client-kinesis';
import { request } from 'undici';
import { getInfra, readAudit, startGateway } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { bearerClient, jitCredentials, kinesisClient, startCapturedKinesis, withKinesis, type CapturedKinesis, waitActive } from './helpers/kinesis.ts';
import type { Gateway } from '../src/gateway.ts';
import type { RunningIdp } from '../src/dev/idp.ts';

// Streams of this run: kin-<run>-*; analysts consume them with card numbers masked, admins raw.
const run = randomUUID().slice(0, 8);
const CARDS = `kin-${run}-cards`;
const OTHER = `other-${run}`;
const MAX_RECORD = 4096;

let gateway: Gateway;
let spoolDir: string;
let upstream: CapturedKinesis;
let idp: RunningIdp;
let endpoint: string;
let httpBase: string;

before(async () => {
  const infra = await getInfra();
  idp = infra.idp;
  upstream = await startCapturedKinesis();
  const t = testConfig(infra, (c) => {
    withKinesis(c, upstream.endpoint, { skewSeconds: 3 });
    // ahead of the example's grants and inspection entries
    c.policy.grants!.unshift(
      { roles: ['payments-writer'], actions: ['produce', 'describe'], topics: ['kin-*'] },
      { roles: ['analyst'], actions: ['consume', 'describe'], topics: ['kin-*'] },
    );
    c.inspection!.topics!.unshift({
      topics: ['kin-*'],
      produce: ['secrets.private-key'],
      consume: [
        { roles: ['platform-admin'], rules: [] },
        { roles: ['analyst'], rules: ['pci.card-number'] },
      ],
      limits: { maxRecordBytes: MAX_RECORD },
    });
    // just-in-time credentials expire on time (the example allows 5 s of clock tolerance)
    c.credentials!.clockToleranceSeconds = 0;
  });
  spoolDir = t.spoolDir;
  gateway = await startGateway(t.config);
  endpoint = `http://127.0.0.1:${gateway.addresses.kinesis!.port}`;
  httpBase = `http://127.0.0.1:${gateway.addresses.http!.port}`;
});

// what each identity asks the token exchange for; items the policy does not allow are dropped
const SCOPES: Record<string, string> = {
  ops: `admin:kin-${run}-* admin:${OTHER} produce:kin-${run}-* consume:kin-${run}-* describe:kin-${run}-* describe:${OTHER} consume:${OTHER}`,
  alice: `produce:kin-${run}-* consume:kin-${run}-*`,
  bob: `produce:kin-${run}-* consume:kin-${run}-*`,
};

/** An SDK client with a just-in-time SigV4 key pair of `user` (HTTP/2 unless http1). */
async function as(user: string, http1 = false): Promise<KinesisClient> {
  const aws = await jitCredentials(httpBase, await idp.token(user), SCOPES[user]!);
  return kinesisClient(endpoint, aws, { http1 });
}

async function expectError(p: Promise<unknown>, name: string): Promise<Error> {
  const err = await p.then(
    () => assert.fail(`expected ${name}`),
    (e: Error) => e,
  );
  assert.equal(err.name, name, `${err.name}: ${err.message}`);
  return err;
}

async function readAll(client: KinesisClient, stream: string, expected: number): Promise<Array<{ data: string; seq: string; key: string }>> {
  const shards = (await client.send(new ListShardsCommand({ StreamName: stream }))).Shards ?? [];
  const out: Array<{ data: string; seq: string; key: string }> = [];
  for (const shard of shards) {
    let it = (await client.send(new GetShardIteratorCommand({ StreamName: stream, ShardId: shard.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }))).ShardIterator;
    for (let polls = 0; it && polls < 20; polls++) {
      const r = await client.send(new GetRecordsCommand({ ShardIterator: it, Limit: 1000 }));
      for (const rec of r.Records ?? []) out.push({ data: Buffer.from(rec.Data!).toString(), seq: rec.SequenceNumber!, key: rec.PartitionKey! });
      if ((r.Records ?? []).length === 0) break;
      it = r.NextShardIterator;
    }
  }
  assert.equal(out.length, expected);
  return out;
}

const card = (i: number) => JSON.stringify({ card: '4111 1111 1111 1111', order: i });

test('an admin creates streams; an analyst may not', async () => {
  const ops = await as('ops');
  await ops.send(new CreateStreamCommand({ StreamName: CARDS, ShardCount: 2 }));
  await ops.send(new CreateStreamCommand({ StreamName: OTHER, ShardCount: 1 }));
  await waitActive(ops, CARDS);
  await waitActive(ops, OTHER);
  const before = upstream.captured.length;
  await expectError((await as('bob')).send(new CreateStreamCommand({ StreamName: `kin-${run}-bob`, ShardCount: 1 })), 'AccessDeniedException');
  assert.equal(upstream.captured.length, before, 'a denied call never reaches Kinesis');
});

test('PutRecords: 500 records with card numbers, stored as sent; audited with hashes and sequence numbers', async () => {
  const alice = await as('alice');
  const entries = Array.from({ length: 500 }, (_v, i) => ({ Data: Buffer.from(card(i)), PartitionKey: `order-${i}` }));
  const res = await alice.send(new PutRecordsCommand({ StreamName: CARDS, Records: entries }));
  assert.equal(res.FailedRecordCount, 0);
  assert.equal(res.Records!.length, 500);
  for (const r of res.Records!) assert.match(r.SequenceNumber!, /^\d+$/);
  const row = readAudit(spoolDir).find((r) => r.action === 'produce' && r.resource === CARDS && r.record_count === 500);
  assert.ok(row, 'an audit row for the batch');
  assert.equal(row.decision, 'allow');
  assert.equal(row.protocol, 'kinesis');
  assert.equal(row.record_hashes.length, 500);
  assert.deepEqual(
    row.offsets,
    res.Records!.map((r) => `${Number(/\d+$/.exec(r.ShardId!)![0])}:${r.SequenceNumber}`),
  );
});

test('GetRecords: the raw role reads card numbers as stored, an analyst reads them masked', async () => {
  const raw = await readAll(await as('ops'), CARDS, 500);
  assert.ok(raw.every((r) => r.data.includes('4111 1111 1111 1111')));
  const masked = await readAll(await as('bob'), CARDS, 500);
  assert.ok(masked.every((r) => r.data.includes('**** **** **** 1111') && !r.data.includes('4111 1111')));
  assert.deepEqual(masked.map((r) => r.seq).sort(), raw.map((r) => r.seq).sort(), 'same records, same sequence numbers');
  const rows = readAudit(spoolDir).filter((r) => r.action === 'consume' && r.resource === CARDS && r.subject === 'bob' && r.record_count > 0);
  assert.ok(rows.length > 0);
  assert.ok(rows.every((r) => r.meta.inspect_roles === 'analyst' && r.masking['pci.card-number']! > 0 && r.masked_hashes.every((h) => h !== '')));
  assert.equal(rows.reduce((n, r) => n + r.record_count, 0), 500);
});

test('an idle GetRecords poll is not audited; a refused one is', async () => {
  const ops = await as('ops');
  const shard = (await ops.send(new ListShardsCommand({ StreamName: OTHER }))).Shards![0]!.ShardId!;
  const it = (await ops.send(new GetShardIteratorCommand({ StreamName: OTHER, ShardId: shard, ShardIteratorType: 'LATEST' }))).ShardIterator!;
  const before = readAudit(spoolDir).filter((r) => r.meta.api === 'GetRecords' && r.resource === OTHER).length;
  const polled = await ops.send(new GetRecordsCommand({ ShardIterator: it }));
  assert.equal(polled.Records!.length, 0);
  assert.equal(readAudit(spoolDir).filter((r) => r.meta.api === 'GetRecords' && r.resource === OTHER).length, before);
  // bob may not read OTHER: the iterator ops got does not help him
  await expectError((await as('bob')).send(new GetRecordsCommand({ ShardIterator: polled.NextShardIterator! })), 'AccessDeniedException');
  const denied = readAudit(spoolDir).findLast((r) => r.meta.api === 'GetRecords' && r.resource === OTHER);
  assert.equal(denied?.subject, 'bob');
  assert.equal(denied?.decision, 'deny');
});

test('a reader-only identity gets AccessDeniedException on PutRecord, audited, nothing forwarded', async () => {
  const before = upstream.captured.length;
  const err = await expectError((await as('bob')).send(new PutRecordCommand({ StreamName: CARDS, Data: Buffer.from('x'), PartitionKey: 'k' })), 'AccessDeniedException');
  assert.match(err.message, /outside the credential's scope/, 'the token exchange dropped produce from his scope');
  // with his identity-provider token the policy itself refuses
  const bearer = await expectError(bearerClient(endpoint, await idp.token('bob')).send(new PutRecordCommand({ StreamName: CARDS, Data: Buffer.from('x'), PartitionKey: 'k' })), 'AccessDeniedException');
  assert.match(bearer.message, /bob may not produce/);
  assert.equal(upstream.captured.length, before);
  const row = readAudit(spoolDir).findLast((r) => r.subject === 'bob' && r.action === 'produce');
  assert.equal(row?.decision, 'deny');
  assert.equal(row?.meta.api, 'PutRecord');
});

test('PutRecords: an over-limit record and a blocked record fail alone, the rest are stored', async () => {
  const alice = await as('alice');
  const big = Buffer.alloc(MAX_RECORD + 1, 'a');
  const key = Buffer.from('-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----');
  const entries = [card(1), big, card(2), key, card(3)].map((d, i) => ({ Data: typeof d === 'string' ? Buffer.from(d) : d, PartitionKey: `p-${i}` }));
  const before = upstream.captured.filter((c) => c.target.endsWith('PutRecords')).length;
  const res = await alice.send(new PutRecordsCommand({ StreamName: CARDS, Records: entries }));
  assert.equal(res.FailedRecordCount, 2);
  const codes = res.Records!.map((r) => r.ErrorCode ?? 'ok');
  assert.deepEqual(codes, ['ok', 'InvalidArgumentException', 'ok', 'InvalidArgumentException', 'ok']);
  assert.match(res.Records![1]!.ErrorMessage!, /limit is 4096/);
  assert.match(res.Records![3]!.ErrorMessage!, /secrets\.private-key/);
  const sent = upstream.captured.filter((c) => c.target.endsWith('PutRecords'));
  assert.equal(sent.length, before + 1);
  const forwarded = (JSON.parse(sent.at(-1)!.body) as { Records: Array<{ PartitionKey: string }> }).Records.map((r) => r.PartitionKey);
  assert.deepEqual(forwarded, ['p-0', 'p-2', 'p-4'], 'only the allowed records reach Kinesis');
  const row = readAudit(spoolDir).findLast((r) => r.action === 'produce' && r.resource === CARDS && r.record_count === 5)!;
  assert.equal(row.meta.failed_records, '2');
  assert.match(row.meta.record_errors!, /^1:limits\.maxRecordBytes,3:secrets\.private-key$/);
  assert.equal(row.offsets[1], '-1:');
});

test('PutRecords with every record refused: all fail per record, nothing forwarded, audited as a block', async () => {
  const alice = await as('alice');
  const before = upstream.captured.length;
  const res = await alice.send(new PutRecordsCommand({ StreamName: CARDS, Records: [0, 1].map((i) => ({ Data: Buffer.alloc(MAX_RECORD + 10, 'b'), PartitionKey: `all-${i}` })) }));
  assert.equal(res.FailedRecordCount, 2);
  assert.ok(res.Records!.every((r) => r.ErrorCode === 'InvalidArgumentException' && /limit is 4096/.test(r.ErrorMessage!)));
  assert.equal(upstream.captured.length, before);
  const row = readAudit(spoolDir).findLast((r) => r.action === 'produce' && r.resource === CARDS)!;
  assert.equal(row.decision, 'block');
  assert.equal(row.record_count, 2);
});

test('3 MiB of records in two PutRecords over HTTP/2, and their GetRecords, come through whole', async () => {
  const ops = await as('ops');
  const big = `kin-${run}-big`;
  await ops.send(new CreateStreamCommand({ StreamName: big, ShardCount: 1 }));
  await waitActive(ops, big);
  // under the test limit of 4 KiB per record: 800 records of ~4,000 bytes in two calls
  const value = (i: number) => JSON.stringify({ i, card: '4111 1111 1111 1111', pad: 'x'.repeat(3900) });
  for (const half of [0, 1]) {
    const res = await ops.send(new PutRecordsCommand({ StreamName: big, Records: Array.from({ length: 400 }, (_v, k) => ({ Data: Buffer.from(value(half * 400 + k)), PartitionKey: `p${k}` })) }));
    assert.equal(res.FailedRecordCount, 0);
  }
  const read = await readAll(await as('ops'), big, 800);
  assert.deepEqual(new Set(read.map((r) => (JSON.parse(r.data) as { i: number }).i)).size, 800);
  const masked = await readAll(await as('bob'), big, 800);
  assert.ok(masked.every((r) => r.data.includes('**** **** **** 1111')));
});

test('ListStreams lists only the streams the identity may describe', async () => {
  // mallory may not be issued any scope: listed with her identity-provider token (bearer)
  const names = async (user: string) => (await (user === 'mallory' ? bearerClient(endpoint, await idp.token(user)) : await as(user)).send(new ListStreamsCommand({}))).StreamNames ?? [];
  const bob = await names('bob');
  assert.ok(bob.includes(CARDS));
  assert.ok(!bob.includes(OTHER));
  assert.ok((await names('ops')).includes(OTHER));
  assert.deepEqual(await names('mallory'), []);
});

test('HTTP/1.1 clients are served too (SDK with NodeHttpHandler)', async () => {
  const res = await (await as('alice', true)).send(new PutRecordCommand({ StreamName: CARDS, Data: Buffer.from(card(9)), PartitionKey: 'h1' }));
  assert.match(res.SequenceNumber!, /^\d+$/);
});

test('a session per credential, whatever the connections (the SDK opens one per HTTP/2 call)', async () => {
  const sessionsOf = async (client: KinesisClient) => {
    for (let i = 0; i < 3; i++) await client.send(new DescribeStreamSummaryCommand({ StreamName: OTHER }));
    const key = readAudit(spoolDir).findLast((r) => r.subject === 'ops' && r.meta.api === 'DescribeStreamSummary')!.meta.access_key;
    const rows = readAudit(spoolDir).filter((r) => r.meta.access_key === key);
    assert.equal(rows.length, 3);
    return new Set(rows.map((r) => r.session_id));
  };
  const h2 = await sessionsOf(await as('ops'));
  const h1 = await sessionsOf(await as('ops', true));
  assert.equal(h2.size, 1);
  assert.equal(h1.size, 1);
  assert.notDeepEqual([...h1], [...h2], 'another key, another session');
  const started = new Set(readAudit(spoolDir).filter((r) => r.event === 'session-start' && r.protocol === 'kinesis').map((r) => r.session_id));
  assert.ok(started.has([...h2][0]!) && started.has([...h1][0]!));
});

test('a malformed body gets SerializationException and an audit row; nothing reaches Kinesis', async () => {
  const before = upstream.captured.length;
  const token = await idp.token('alice');
  const send = (body: string, target = 'Kinesis_20131202.PutRecords') =>
    request(endpoint, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': target }, body });
  const bad = await send('{"StreamName": "x", "Records": [');
  assert.equal(bad.statusCode, 400);
  assert.equal(((await bad.body.json()) as { __type: string }).__type, 'SerializationException');
  const invalid = await send(JSON.stringify({ StreamName: CARDS, Records: [{ Data: 'not base64!', PartitionKey: 'k' }] }));
  assert.equal(((await invalid.body.json()) as { __type: string }).__type, 'ValidationException');
  const unknown = await send('{}', 'Kinesis_20131202.SubscribeToShard');
  assert.equal(((await unknown.body.json()) as { __type: string }).__type, 'UnknownOperationException');
  assert.equal(upstream.captured.length, before);
  const rows = readAudit(spoolDir).filter((r) => r.subject === 'alice' && r.reason === 'invalid');
  assert.ok(rows.some((r) => /^the request body is not valid JSON \(at byte 32\)$/.test(r.message)));
  assert.ok(rows.some((r) => /Data must be base64/.test(r.message)));
});

test('odd bodies for every API get a Kinesis answer, never a crash', async () => {
  const token = await idp.token('ops');
  // a stream that does not exist: ops is an admin, and DeleteStream is among the calls
  const FUZZ = `kin-${run}-fuzz`;
  const apis = ['PutRecord', 'PutRecords', 'GetShardIterator', 'GetRecords', 'ListShards', 'DescribeStream', 'DescribeStreamSummary', 'ListStreams', 'CreateStream', 'DeleteStream', 'UpdateShardCount'];
  const bodies = ['{}', 'null', '[]', '"x"', '1e999', '{"StreamName":123}', `{"StreamName":"${FUZZ}","Records":"x"}`, `{"StreamName":"${FUZZ}","Records":[null,1]}`,
    `{"StreamName":"${FUZZ}","Records":[{"Data":{},"PartitionKey":[]}]}`, '{"ShardIterator":{}}', '{"ShardIterator":"sg1.a.b.c.d"}', '{"NextToken":5}', '{"StreamARN":"arn:aws:kinesis:x:1:stream/"}',
    `{"StreamName":"${FUZZ}","ShardId":{"a":1},"ShardIteratorType":"LATEST"}`, '\u0000\u0001', '{"a":'.repeat(50)];
  for (const api of apis) {
    for (const body of bodies) {
      const res = await request(endpoint, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': `Kinesis_20131202.${api}` }, body });
      const text = await res.body.text();
      const json = JSON.parse(text) as { __type?: string };
      if (res.statusCode !== 200) assert.ok(json.__type && res.statusCode < 500, `${api} ${body}: ${res.statusCode} ${text}`);
    }
  }
  // and the gateway still serves
  const d = await (await as('ops')).send(new DescribeStreamSummaryCommand({ StreamName: CARDS }));
  assert.equal(d.StreamDescriptionSummary?.StreamStatus, 'ACTIVE');
});

test('an expired identity-provider token gets ExpiredTokenException', async () => {
  const client = bearerClient(endpoint, await idp.token('shortlived'));
  await new Promise((r) => setTimeout(r, 3000));
  const before = upstream.captured.length;
  await expectError(client.send(new DescribeStreamSummaryCommand({ StreamName: CARDS })), 'ExpiredTokenException');
  assert.equal(upstream.captured.length, before);
});

test('an expired just-in-time key gets ExpiredTokenException, audited, nothing forwarded', async () => {
  // lifetimes count whole seconds from the issuing second, so 1 s can be almost nothing on a slow machine
  const aws = await jitCredentials(httpBase, await idp.token('alice'), `produce:kin-${run}-*`, 3);
  const client = kinesisClient(endpoint, aws);
  await client.send(new PutRecordCommand({ StreamName: CARDS, Data: Buffer.from(card(7)), PartitionKey: 'before-expiry' }));
  await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(aws.expiration.toISOString()) - Date.now()) + 1500));
  const before = upstream.captured.length;
  await expectError(client.send(new PutRecordCommand({ StreamName: CARDS, Data: Buffer.from(card(8)), PartitionKey: 'after-expiry' })), 'ExpiredTokenException');
  assert.equal(upstream.captured.length, before);
  const row = readAudit(spoolDir).findLast((r) => r.action === 'produce' && r.meta.access_key === aws.accessKeyId);
  assert.equal(row?.decision, 'deny');
});

test('every call above was SigV4 with just-in-time keys except the bearer ones', () => {
  const rows = readAudit(spoolDir).filter((r) => r.event === 'operation' && r.protocol === 'kinesis' && r.meta.auth === 'sigv4');
  assert.ok(rows.length > 20);
  assert.ok(rows.every((r) => String(r.meta.access_key).startsWith('SGJ')));
});

test('metrics count Kinesis operations like any listener\'s', async () => {
  const text = await (await fetch(`http://127.0.0.1:${gateway.addresses.admin!.port}/metrics`)).text();
  const series = (name: string, labels: RegExp) => text.split('\n').filter((l) => l.startsWith(name) && labels.test(l));
  const ok = series('streamgate_operations_total', /listener="kinesis".*action="produce".*outcome="ok"/);
  assert.equal(ok.length, 1);
  assert.ok(Number(ok[0]!.split(' ').at(-1)) >= 3);
  assert.equal(series('streamgate_operations_total', /listener="kinesis".*action="produce".*outcome="forbidden"/).length, 1);
  assert.ok(series('streamgate_upstream_duration_seconds_count', /listener="kinesis"/).length > 0);
});

test('readiness asks the Kinesis endpoint; raw garbage on the port is survived', async () => {
  assert.deepEqual((await gateway.readiness()).kinesis, { ok: true });
  const { connect } = await import('node:net');
  for (const bytes of ['PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n\0\0\0\0', 'GARBAGE\r\n\r\n', 'PR', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03']) {
    await new Promise<void>((done) => {
      const s = connect(gateway.addresses.kinesis!.port, '127.0.0.1', () => s.end(Buffer.from(bytes, 'latin1')));
      s.on('error', () => done());
      s.on('close', () => done());
      s.resume();
      setTimeout(() => s.destroy(), 1000);
    });
  }
  const res = await request(endpoint, { method: 'GET' });
  assert.equal(((await res.body.json()) as { __type: string }).__type, 'UnknownOperationException');
  assert.deepEqual((await gateway.readiness()).kinesis, { ok: true });
});

test('no request without credentials: MissingAuthenticationTokenException', async () => {
  const res = await request(endpoint, { method: 'POST', headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'Kinesis_20131202.ListStreams' }, body: '{}' });
  assert.equal(res.statusCode, 400);
  assert.equal(((await res.body.json()) as { __type: string }).__type, 'MissingAuthenticationTokenException');
});

test('the upstream only ever sees the gateway\'s own credentials', async () => {
  assert.ok(upstream.captured.length > 10);
  const tokens = await Promise.all(['alice', 'bob', 'ops'].map((u) => idp.token(u)));
  const jitKeys = readAudit(spoolDir).flatMap((r) => (r.meta.access_key ? [String(r.meta.access_key)] : []));
  assert.ok(jitKeys.length > 0);
  for (const c of upstream.captured) {
    assert.match(String(c.headers.authorization), /^AWS4-HMAC-SHA256 Credential=GATEWAYKEYID\//);
    assert.equal(c.headers['x-amz-security-token'], undefined);
    const all = JSON.stringify(c.headers) + c.body;
    assert.ok(!/Bearer/.test(all), 'no bearer token in what Kinesis received');
    for (const t of tokens) assert.ok(!all.includes(t.split('.')[1]!));
    for (const k of jitKeys) assert.ok(!all.includes(k), 'no client access key id');
  }
});
