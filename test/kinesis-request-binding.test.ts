import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { CreateStreamCommand, DescribeStreamSummaryCommand, KinesisClient } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { request } from 'undici';
import { TokenBinder } from '../src/protocols/kinesis/tokens.ts';
import { getInfra, readAudit, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { jitCredentials, signKinesisCall, startCapturedKinesis, withKinesis, type AwsCredentials, type CapturedKinesis } from './helpers/kinesis.ts';

// Issue 18, finding 7 (Kinesis half): the listener accepted `UNSIGNED-PAYLOAD` signatures, so
// without TLS a body could be swapped under a valid signature; and a request naming one stream
// by StreamName and another by StreamARN was authorized for one and forwarded with both.
// Hand-built requests (hand-signed SigV4, raw JSON) against kinesalite behind the gateway.

const run = randomUUID().slice(0, 8);
// alice may do everything on payments.bind-* (a grant added below) and nothing on secret.bind-*
const MINE = `payments.bind-${run}`;
const THEIRS = `secret.bind-${run}`;
const ITERATOR_SECRET = `iterator-secret-of-this-test-${'x'.repeat(32)}`;
const arnOf = (stream: string) => `arn:aws:kinesis:us-east-1:000000000000:stream/${stream}`;

let infra: Infra;
let upstream: CapturedKinesis;
let spoolDir: string;
let endpoint: string;
let httpBase: string;
let alice: AwsCredentials;

before(async () => {
  infra = await getInfra();
  upstream = await startCapturedKinesis();
  const made = testConfig(infra, (c) => {
    withKinesis(c, upstream.endpoint);
    c.listeners.kinesis!.iteratorSecret = ITERATOR_SECRET;
    c.policy.grants!.unshift({ roles: ['payments-writer'], actions: ['produce', 'consume', 'describe', 'admin'], topics: ['payments.bind-*'] });
  });
  spoolDir = made.spoolDir;
  const gw = await startGateway(made.config);
  endpoint = `http://127.0.0.1:${gw.addresses.kinesis!.port}`;
  httpBase = `http://127.0.0.1:${gw.addresses.http!.port}`;
  // the streams, made on kinesalite directly (it takes any credentials)
  const direct = new KinesisClient({ endpoint: upstream.kinesalite.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' }, requestHandler: new NodeHttpHandler(), maxAttempts: 1 });
  try {
    for (const stream of [MINE, THEIRS]) await direct.send(new CreateStreamCommand({ StreamName: stream, ShardCount: 2 }));
    for (const stream of [MINE, THEIRS]) {
      for (let i = 0; i < 100 && (await direct.send(new DescribeStreamSummaryCommand({ StreamName: stream }))).StreamDescriptionSummary?.StreamStatus !== 'ACTIVE'; i++) await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    direct.destroy();
  }
  alice = await jitCredentials(httpBase, await infra.idp.token('alice'), `produce:${MINE} consume:${MINE} describe:${MINE} admin:${MINE}`);
});

interface KinesisAnswer {
  status: number;
  type: string | undefined;
  body: Record<string, unknown>;
}

async function call(headers: Record<string, string>, body: string): Promise<KinesisAnswer> {
  const res = await request(endpoint, { method: 'POST', headers, body });
  const json = (await res.body.json()) as Record<string, unknown>;
  return { status: res.statusCode, type: json.__type as string | undefined, body: json };
}

/** A call as alice with a bearer token. */
async function asAlice(api: string, body: Record<string, unknown>): Promise<KinesisAnswer> {
  return call({ authorization: `Bearer ${await infra.idp.token('alice')}`, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': `Kinesis_20131202.${api}` }, JSON.stringify(body));
}

test('UNSIGNED-PAYLOAD is refused on a listener without TLS: the body could be swapped under the signature', async () => {
  const before = upstream.captured.length;
  const honest = JSON.stringify({ StreamName: MINE });
  // the control: the same call with the body signed is accepted
  const signed = await call(await signKinesisCall(endpoint, alice, 'DescribeStreamSummary', honest), honest);
  assert.equal(signed.status, 200, JSON.stringify(signed.body));
  assert.equal(upstream.captured.length, before + 1);

  const unsigned = await call(await signKinesisCall(endpoint, alice, 'DescribeStreamSummary', honest, { payloadHash: 'UNSIGNED-PAYLOAD' }), honest);
  assert.equal(unsigned.status, 400);
  assert.equal(unsigned.type, 'InvalidSignatureException');
  assert.match(String(unsigned.body.message), /UNSIGNED-PAYLOAD is not accepted/);

  // what it allows: a PutRecord signed for one record, delivered with another of the same length
  const signedFor = JSON.stringify({ StreamName: MINE, PartitionKey: 'k', Data: Buffer.from('pay 10 to bob').toString('base64') });
  const swapped = JSON.stringify({ StreamName: MINE, PartitionKey: 'k', Data: Buffer.from('pay 99 to eve').toString('base64') });
  assert.equal(swapped.length, signedFor.length);
  const tampered = await call(await signKinesisCall(endpoint, alice, 'PutRecord', signedFor, { payloadHash: 'UNSIGNED-PAYLOAD' }), swapped);
  assert.equal(tampered.type, 'InvalidSignatureException');
  assert.equal(upstream.captured.length, before + 1, 'nothing unsigned reached Kinesis');
  const rows = readAudit(spoolDir).filter((r) => r.protocol === 'kinesis' && /UNSIGNED-PAYLOAD/.test(r.message));
  assert.equal(rows.length, 2, 'both refusals are audited');
  assert.ok(rows.every((r) => r.decision === 'deny' && r.subject === 'alice' && r.meta.access_key === alice.accessKeyId));
});

test('allowUnsignedPayload is a listener setting that needs TLS', () => {
  const withListener = testConfig(infra, (c) => withKinesis(c, upstream.endpoint));
  const withSetting = (setting: { allowUnsignedPayload: boolean; tls?: { cert: string; key: string } }) =>
    withListener.with((c) => {
      Object.assign(c.listeners.kinesis!, setting);
    }).config;
  assert.throws(() => withSetting({ allowUnsignedPayload: true }), /allowUnsignedPayload needs tls/);
  const config = withSetting({ allowUnsignedPayload: true, tls: { cert: './server.crt', key: './server.key' } });
  assert.equal(config.listeners.kinesis?.allowUnsignedPayload, true);
  assert.equal(withListener.config.listeners.kinesis?.allowUnsignedPayload, false, 'off by default');
});

/** Every call that takes StreamName and StreamARN, with what else it needs to be valid. */
const BOTH: Array<[string, Record<string, unknown>]> = [
  ['PutRecord', { PartitionKey: 'k', Data: 'QUJD' }],
  ['PutRecords', { Records: [{ PartitionKey: 'k', Data: 'QUJD' }] }],
  ['GetShardIterator', { ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' }],
  ['ListShards', {}],
  ['DescribeStream', {}],
  ['DescribeStreamSummary', {}],
  ['ListTagsForStream', {}],
  ['AddTagsToStream', { Tags: { owner: 'alice' } }],
  ['RemoveTagsFromStream', { TagKeys: ['owner'] }],
  ['IncreaseStreamRetentionPeriod', { RetentionPeriodHours: 48 }],
  ['DecreaseStreamRetentionPeriod', { RetentionPeriodHours: 24 }],
  ['UpdateShardCount', { TargetShardCount: 4, ScalingType: 'UNIFORM_SCALING' }],
  ['SplitShard', { ShardToSplit: 'shardId-000000000000', NewStartingHashKey: '100' }],
  ['MergeShards', { ShardToMerge: 'shardId-000000000000', AdjacentShardToMerge: 'shardId-000000000001' }],
  ['DeleteStream', {}],
];

test('a StreamName and a StreamARN naming different streams are refused for every call that takes both, audited, nothing forwarded', async () => {
  const before = upstream.captured.length;
  for (const [api, rest] of BOTH) {
    const answer = await asAlice(api, { ...rest, StreamName: MINE, StreamARN: arnOf(THEIRS) });
    assert.equal(answer.status, 400, `${api}: ${JSON.stringify(answer.body)}`);
    assert.equal(answer.type, 'InvalidArgumentException', api);
    assert.match(String(answer.body.message), /name different streams/, api);
    // the other way round too
    const reversed = await asAlice(api, { ...rest, StreamName: THEIRS, StreamARN: arnOf(MINE) });
    assert.equal(reversed.type, 'InvalidArgumentException', `${api} (reversed)`);
  }
  assert.equal(upstream.captured.length, before, 'nothing reached Kinesis');
  const rows = readAudit(spoolDir).filter((r) => r.protocol === 'kinesis' && /name different streams/.test(r.message));
  assert.equal(rows.length, BOTH.length * 2);
  assert.ok(rows.every((r) => r.decision === 'error' && r.reason === 'invalid' && r.subject === 'alice'));
  assert.deepEqual(new Set(rows.map((r) => r.meta.api)), new Set(BOTH.map(([api]) => api)));
});

test('a StreamARN that is not a stream ARN is refused even beside a valid StreamName', async () => {
  const before = upstream.captured.length;
  const answer = await asAlice('DescribeStreamSummary', { StreamName: MINE, StreamARN: `arn:aws:kinesis:us-east-1:000000000000:stream/${THEIRS}/consumer/x:1` });
  assert.equal(answer.type, 'ValidationException');
  assert.equal(upstream.captured.length, before);
});

test('a request with only a StreamARN is authorized for the ARN\'s stream', async () => {
  const theirs = await asAlice('DescribeStreamSummary', { StreamARN: arnOf(THEIRS) });
  assert.equal(theirs.type, 'AccessDeniedException');
  const before = upstream.captured.length;
  // (kinesalite predates StreamARN and answers it with a ValidationException: what matters here is that it was let through)
  await asAlice('DescribeStreamSummary', { StreamARN: arnOf(MINE) });
  assert.equal(upstream.captured.length, before + 1);
  const rows = readAudit(spoolDir).filter((r) => r.meta.api === 'DescribeStreamSummary' && r.subject === 'alice' && r.meta.auth === 'bearer');
  assert.ok(rows.some((r) => r.resource === THEIRS && r.decision === 'deny' && r.reason === 'forbidden'));
  assert.ok(rows.some((r) => r.resource === MINE && r.reason !== 'forbidden'));
});

test('GetRecords: a StreamARN other than the shard iterator\'s stream is refused', async () => {
  const iterator = await asAlice('GetShardIterator', { StreamName: MINE, ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' });
  assert.equal(iterator.status, 200, JSON.stringify(iterator.body));
  const before = upstream.captured.length;
  const answer = await asAlice('GetRecords', { ShardIterator: iterator.body.ShardIterator, StreamARN: arnOf(THEIRS) });
  assert.equal(answer.type, 'InvalidArgumentException', JSON.stringify(answer.body));
  assert.equal(upstream.captured.length, before);
  const ok = await asAlice('GetRecords', { ShardIterator: iterator.body.ShardIterator, StreamARN: arnOf(MINE) });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
});

test('ListShards: a NextToken of another stream than the StreamName is refused', async () => {
  // a page token of THEIRS, as the gateway hands them out (to ops, say); kinesalite has no
  // paging of its own, so the test makes one with the listener's key
  const token = new TokenBinder(ITERATOR_SECRET).wrap(THEIRS, '', 'upstream-page-token');
  const before = upstream.captured.length;
  // alice may list MINE: naming it must not carry her token over to THEIRS
  const answer = await asAlice('ListShards', { StreamName: MINE, NextToken: token });
  assert.equal(answer.type, 'InvalidArgumentException', JSON.stringify(answer.body));
  assert.match(String(answer.body.message), /NextToken belongs to stream/);
  assert.equal(upstream.captured.length, before);
});
