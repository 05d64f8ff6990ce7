import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { request } from 'undici';
import { listSegments } from '../src/audit/spool.ts';
import { describeJsonError, jsonSyntaxErrorAt, jsonValuesOver } from '../src/protocols/request-body.ts';
import { getInfra, readAudit, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { startCapturedKinesis, withKinesis, type CapturedKinesis } from './helpers/kinesis.ts';
import { fuzzRuns } from './helpers/fuzz.ts';

// Issue 18, finding 6: a malformed body's parse error was stored as the audit message, and
// V8's JSON error quotes the body (`Unexpected token ... "S3cr3t-pw-..." is not valid JSON`);
// Kinesis' own error messages quote request values too. Parser and upstream errors now reach
// audit rows and clients as a kind and a position, never the bytes.

const SECRET = 'S3cr3t-pw-7d1c9e';

describe('JSON error positions (unit)', () => {
  const parses = (text: string) => {
    try {
      JSON.parse(text);
      return true;
    } catch {
      return false;
    }
  };

  test('valid exactly where JSON.parse is, for JSON texts, their damaged copies and noise', () => {
    const damaged = fc
      .tuple(fc.json(), fc.nat(), fc.constantFrom('', ' ', '"', '\\', ',', ':', '{', '}', '[', ']', '0', '-', 'e', '.', 'tru', '\u0001', '\\u12', '\ufeff'), fc.boolean())
      .map(([json, at, piece, replace]) => {
        const i = at % (json.length + 1);
        return json.slice(0, i) + piece + json.slice(replace ? i + 1 : i);
      });
    fc.assert(
      fc.property(fc.oneof(fc.json(), damaged, fc.string(), fc.string({ unit: 'binary' })), (text) => {
        const at = jsonSyntaxErrorAt(Buffer.from(text));
        assert.equal(at === undefined, parses(text), `${JSON.stringify(text)}: ${at}`);
        if (at !== undefined) assert.ok(at >= 0 && at <= Buffer.byteLength(text));
      }),
      { numRuns: fuzzRuns(20_000) },
    );
  });

  test('names the first byte that cannot continue the document', () => {
    const at = (text: string) => jsonSyntaxErrorAt(Buffer.from(text));
    assert.equal(at(`{"value": {"data": ${SECRET}}}`), 19);
    assert.equal(at('{"a":1,}'), 7);
    assert.equal(at('[1,2'), 4, 'ends early: the length');
    assert.equal(at('{"a":"\\x"}'), 7, 'a bad escape');
    assert.equal(at('{"a":1} x'), 8, 'trailing bytes');
    assert.equal(at('01'), 1);
    assert.equal(at('{"é":tru}'), 9, 'a byte offset, not a character offset');
    assert.equal(at('[[[[[]]]]]'), undefined);
    assert.equal(describeJsonError('the body', Buffer.from(`{"pw": ${SECRET}}`)), 'the body is not valid JSON (at byte 7)');
  });

  test('counting JSON values stops past the bound and skips strings', () => {
    assert.equal(jsonValuesOver(Buffer.from('[1,2,3]'), 4), false);
    assert.equal(jsonValuesOver(Buffer.from('[1,2,3,4]'), 4), true);
    assert.equal(jsonValuesOver(Buffer.from(JSON.stringify({ a: ',,,,[[[{{{', b: 'x\\",{' })), 3), false, 'brackets and commas inside strings do not count');
    assert.equal(jsonValuesOver(Buffer.from(`[${'{},'.repeat(1000)}{}]`), 1500), true);
  });
});

describe('through the gateway', () => {
  let infra: Infra;
  let upstream: CapturedKinesis;
  let spoolDir: string;
  let http: string;
  let kinesis: string;

  before(async () => {
    infra = await getInfra();
    upstream = await startCapturedKinesis();
    const made = testConfig(infra, (c) => withKinesis(c, upstream.endpoint));
    spoolDir = made.spoolDir;
    const gw = await startGateway(made.config);
    http = `http://127.0.0.1:${gw.addresses.http!.port}`;
    kinesis = `http://127.0.0.1:${gw.addresses.kinesis!.port}`;
  });

  /** every byte the audit spool holds */
  const spoolText = () => listSegments(spoolDir).map((f) => readFileSync(f, 'utf8')).join('');

  test('HTTP: a malformed body is described by where it breaks; the answer and the audit row never quote it', async () => {
    const topic = 'payments.error-texts';
    const res = await request(`${http}/v3/clusters/local/topics/${topic}/records`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await infra.idp.token('alice')}`, 'content-type': 'application/json' },
      body: `{"value": {"data": ${SECRET}}}`,
    });
    const answer = (await res.body.json()) as { error_code: number; message: string };
    assert.equal(res.statusCode, 400);
    assert.equal(answer.message, 'the body is not valid JSON (at byte 19)');
    const row = readAudit(spoolDir).findLast((r) => r.resource === topic);
    assert.equal(row?.reason, 'invalid');
    assert.equal(row?.subject, 'alice');
    assert.equal(row?.message, 'the body is not valid JSON (at byte 19)');
    assert.ok(!spoolText().includes('S3cr3t'), 'no audit row quotes the body');
  });

  test('Kinesis: a malformed body is described by where it breaks; the answer and the audit row never quote it', async () => {
    const before = upstream.captured.length;
    const res = await request(kinesis, {
      method: 'POST',
      headers: { authorization: `Bearer ${await infra.idp.token('alice')}`, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'Kinesis_20131202.PutRecord' },
      body: `{"StreamName": "payments.error-texts", "PartitionKey": ${SECRET}}`,
    });
    const answer = (await res.body.json()) as { __type: string; message: string };
    assert.equal(res.statusCode, 400);
    assert.equal(answer.__type, 'SerializationException');
    assert.equal(answer.message, 'the request body is not valid JSON (at byte 55)');
    const row = readAudit(spoolDir).findLast((r) => r.protocol === 'kinesis' && r.meta.api === 'PutRecord');
    assert.equal(row?.message, answer.message);
    assert.equal(row?.subject, 'alice');
    assert.ok(!spoolText().includes('S3cr3t'));
    assert.equal(upstream.captured.length, before);
  });

  test('Kinesis: an upstream error that quotes the request reaches the client and the audit row as its type only', async () => {
    const before = upstream.captured.length;
    // kinesalite (like Kinesis) answers "Value 'S3cr3t...' at 'shardIteratorType' failed to satisfy constraint ..."
    const res = await request(kinesis, {
      method: 'POST',
      headers: { authorization: `Bearer ${await infra.idp.token('bob')}`, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'Kinesis_20131202.GetShardIterator' },
      body: JSON.stringify({ StreamName: 'payments.error-texts', ShardId: 'shardId-000000000000', ShardIteratorType: SECRET }),
    });
    const text = await res.body.text();
    assert.equal(upstream.captured.length, before + 1, 'the call reached the upstream');
    assert.match(upstream.captured.at(-1)!.body, /S3cr3t/, '(which saw the value, as it must)');
    assert.equal(res.statusCode, 400);
    const answer = JSON.parse(text) as { __type: string; message: string };
    assert.equal(answer.__type, 'ValidationException');
    assert.equal(answer.message, 'the Kinesis endpoint answered ValidationException');
    assert.ok(!text.includes('S3cr3t'), text);
    const row = readAudit(spoolDir).findLast((r) => r.protocol === 'kinesis' && r.meta.api === 'GetShardIterator');
    assert.equal(row?.subject, 'bob');
    assert.equal(row?.message, 'the Kinesis endpoint answered ValidationException');
    assert.ok(!spoolText().includes('S3cr3t'));
  });
});
