import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { request } from 'undici';
import { getInfra, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { startCapturedKinesis, withKinesis } from './helpers/kinesis.ts';
import { fuzzRuns } from './helpers/fuzz.ts';
import type { Gateway } from '../src/gateway.ts';

// Hostile AWS JSON 1.1 bodies against the Kinesis listener, with kinesalite behind it: every
// action the listener serves, with random JSON, fields of the wrong type, deep nesting, bad
// base64 and raw bytes. Each answer is a Kinesis error document (`__type`, message) or a
// success; the connection is never dropped and the listener keeps serving.

const ACTIONS = ['PutRecord', 'PutRecords', 'GetShardIterator', 'GetRecords', 'ListShards', 'DescribeStream', 'DescribeStreamSummary', 'ListStreams', 'CreateStream', 'DeleteStream', 'UpdateShardCount'];
let infra: Infra;
let gateway: Gateway;
let endpoint: string;

before(async () => {
  infra = await getInfra();
  const upstream = await startCapturedKinesis();
  gateway = await startGateway(testConfig(infra, (c) => withKinesis(c, upstream.endpoint)).config);
  endpoint = `http://127.0.0.1:${gateway.addresses.kinesis!.port}`;
});

/** Values of the wrong shape for the fields Kinesis actions name. */
const field = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.anything({ maxDepth: 2 }), { maxLength: 5 }),
  fc.string({ unit: 'binary', maxLength: 100 }),
  fc.constantFrom('fuzz-stream', 'shardId-000000000000', 'AAAA', '!!not-base64!!', 'a'.repeat(5000), '', 'LATEST', 'TRIM_HORIZON', 'AT_SEQUENCE_NUMBER'),
);
const kinesisish = fc.record(
  {
    StreamName: field,
    StreamARN: field,
    ShardId: field,
    ShardIteratorType: field,
    ShardIterator: field,
    StartingSequenceNumber: field,
    PartitionKey: field,
    Data: field,
    Records: fc.oneof(field, fc.array(fc.record({ Data: field, PartitionKey: field, ExplicitHashKey: field }, { requiredKeys: [] }), { maxLength: 20 })),
    Limit: field,
    ShardCount: field,
    TargetShardCount: field,
    ScalingType: field,
    NextToken: field,
  },
  { requiredKeys: [] },
);
const body = fc.oneof(
  kinesisish.map((o) => JSON.stringify(o)),
  fc.json(),
  fc.string({ unit: 'binary', maxLength: 500 }),
  fc.nat({ max: 20_000 }).map((n) => '{"Records":' + '['.repeat(n) + ']'.repeat(n) + '}'),
  fc.constant('{"StreamName":"fuzz-stream","Records":[' + Array.from({ length: 600 }, (_, i) => `{"Data":"QUJD","PartitionKey":"k${i}"}`).join(',') + ']}'),
);

test('Kinesis: hostile bodies for every action get a Kinesis error document or a success, never a dropped connection', async () => {
  const token = await infra.idp.token('ops');
  const types = new Map<string, number>();
  const rssBefore = process.memoryUsage().rss;
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...ACTIONS, 'SubscribeToShard', 'Nope', ''),
      body,
      fc.constantFrom('application/x-amz-json-1.1', 'application/json', 'application/x-amz-cbor-1.1', 'text/plain'),
      async (action, payload, contentType) => {
        const res = await request(endpoint, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': contentType, 'x-amz-target': `Kinesis_20131202.${action}` },
          body: payload,
        });
        const text = await res.body.text();
        if (res.statusCode === 200) return;
        const doc = JSON.parse(text) as { __type?: string; message?: string };
        assert.ok(typeof doc.__type === 'string' && doc.__type.length > 0, `${action}: ${res.statusCode} ${text.slice(0, 200)}`);
        types.set(doc.__type, (types.get(doc.__type) ?? 0) + 1);
        assert.ok(res.statusCode === 400 || res.statusCode === 413 || res.statusCode >= 500, `${action}: status ${res.statusCode}`);
      },
    ),
    { numRuns: fuzzRuns(200) },
  );
  assert.ok((types.get('ValidationException') ?? 0) + (types.get('SerializationException') ?? 0) + (types.get('UnknownOperationException') ?? 0) > 0, JSON.stringify([...types]));
  // still serving well-formed calls
  const res = await request(endpoint, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'Kinesis_20131202.ListStreams' }, body: '{}' });
  assert.equal(res.statusCode, 200, await res.body.text());
  assert.ok(process.memoryUsage().rss - rssBefore < 300 * 1024 * 1024, 'memory stays bounded');
});
