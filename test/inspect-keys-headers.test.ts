// The whole record goes through a topic's rules (issue 18, finding 5): keys, header names and
// header values as well as values, in the same engine call. Rules without `targets` apply
// their detectors everywhere; `targets` restrict a rule to `key`, `value`, `headers.*` or
// `headers.<name>`. Decoded records (HTTP, Kinesis, recorded Kafka topics) and Kafka wire
// batches (inline and in the pool) both.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createRecordsBatch } from '../node_modules/@platformatic/kafka/dist/protocol/records.js';
import { Inspect } from '../src/controls/inspect.ts';
import { Inspector } from '../src/inspect/inspector.ts';
import { planKeyHeaders } from '../src/inspect/key-headers.ts';
import { RuleBook } from '../src/inspect/rules.ts';
import { inspectionSchema } from '../src/inspect/schema.ts';
import { GatewayError, Refusals, type Operation, type StreamRecord } from '../src/operation.ts';
import { decodeRecords, streamRecords } from '../src/formats/kafka-batch.ts';

const CARD = '4111111111111111';
const MASKED = '************1111';
const PEM = '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----';
const enc = (s: string) => Buffer.from(s);
const str = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString());
const hash8 = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 8);

const config = (mode: 'inline' | 'pool') => inspectionSchema.parse({
  mode,
  poolThreads: 1,
  rules: [
    { id: 'card', detector: 'payment-card', action: { type: 'mask' } },
    { id: 'email', detector: 'email', action: { type: 'redact', replacement: '[email]' } },
    { id: 'trace', pattern: 'T-\\d{4}', targets: ['headers.trace'], action: { type: 'redact', replacement: '[t]' } },
    { id: 'ref', pattern: 'REF\\d+', targets: ['key'], action: { type: 'hash', length: 8 } },
    { id: 'ssn', detector: 'us-ssn', targets: ['value', 'headers.*'], action: { type: 'redact', replacement: '[ssn]' } },
    { id: 'pw', fields: ['$..password'], action: { type: 'redact', replacement: '[pw]' } },
    { id: 'keys', detector: 'pem-private-key', action: { type: 'block', reason: 'no keys' } },
  ],
  topics: [
    { topics: ['pay'], format: 'json', produce: ['card', 'email', 'trace', 'ref', 'ssn', 'pw', 'keys'], consume: [{ rules: ['card'] }] },
    { topics: ['refs'], produce: ['ref'] },
    { topics: ['values'], produce: ['ssn'] },
  ],
});

const inline = config('inline');
const book = new RuleBook(inline);
const inspectors: Inspector[] = [];
after(() => Promise.all(inspectors.map((i) => i.close())));

function control(mode: 'inline' | 'pool' = 'inline'): Inspect {
  const cfg = mode === 'inline' ? inline : config('pool');
  const inspector = new Inspector(cfg, book.program);
  inspectors.push(inspector);
  return new Inspect(inspector, () => book, () => cfg.limits);
}

function op(topic: string, fields: Partial<Operation>, action: 'produce' | 'consume' = 'produce'): Operation {
  return {
    id: 'op', receivedAt: 0, startedAt: 0, protocol: 'http', action, meta: {},
    session: { id: 's', protocol: 'http', client: { address: '127.0.0.1' }, startedAt: 0 },
    resource: { kind: 'topic', name: topic },
    identity: { subject: 'u', issuer: 'i', roles: [], groups: [], claims: {} },
    ...fields,
  };
}

async function through(c: Inspect, o: Operation): Promise<unknown> {
  try {
    await c.handle(o, async () => ({}));
    return null;
  } catch (err) {
    return err;
  }
}

const record = (key: string | null, value: string | null, headers: Array<[string, string]> = []): StreamRecord => ({
  key: key === null ? null : enc(key), value: value === null ? null : enc(value), headers: headers.map(([k, v]) => [k, enc(v)]),
});

test('decoded records: keys, header names and header values are masked by the rules that apply to them', async () => {
  const original: Array<[string, string]> = [['trace', `T-1234 card ${CARD}`], ['other', 'T-1234 a@b.com 123-45-6789'], [CARD, 'x'], ['plain', 'nothing']];
  const records = [
    record(`REF123 ${CARD}`, `{"password":"p","card":${CARD},"ssn":"123-45-6789"}`, original),
    record(null, '{"ok":1}', [['h', 'a@b.com']]),
    record('plain key', null),
  ];
  const headersBefore = records[0]!.headers;
  const o = op('pay', { records });
  assert.equal(await through(control(), o), null);
  assert.equal(str(records[0]!.key), `${hash8('REF123')} ${MASKED}`);
  assert.deepEqual(records[0]!.headers.map(([k, v]) => [k, str(v)]), [['trace', `[t] card ${MASKED}`], ['other', 'T-1234 [email] [ssn]'], [MASKED, 'x'], ['plain', 'nothing']]);
  assert.notEqual(records[0]!.headers, headersBefore, 'changed headers are a new list (re-encoders compare by identity)');
  assert.deepEqual(JSON.parse(str(records[0]!.value)!), { password: '[pw]', card: MASKED, ssn: '[ssn]' });
  assert.deepEqual(records[1]!.headers.map(([k, v]) => [k, str(v)]), [['h', '[email]']]);
  assert.equal(str(records[2]!.key), 'plain key');
  // audit facts: hashes are of values; keys and headers count in the masking summary and the notes
  assert.equal(o.inspection!.hashes.length, 3);
  assert.deepEqual(o.inspection!.masking, { card: 4, email: 2, trace: 1, ref: 1, ssn: 2, pw: 1 });
  assert.deepEqual(o.inspection!.notes, ['keys-changed:1', 'headers-changed:2']);
});

test('targets: a key-only rule leaves values and headers alone; a value-only rule leaves keys alone', async () => {
  const refs = op('refs', { records: [record('REF9', 'REF9', [['REF9', 'REF9']])] });
  assert.equal(await through(control(), refs), null);
  const [r] = refs.records!;
  assert.deepEqual([str(r!.key), str(r!.value), r!.headers[0]![0], str(r!.headers[0]![1])], [hash8('REF9'), 'REF9', 'REF9', 'REF9']);
  const values = op('values', { records: [record('123-45-6789', '123-45-6789')] });
  assert.equal(await through(control(), values), null);
  assert.deepEqual([str(values.records![0]!.key), str(values.records![0]!.value)], ['123-45-6789', '[ssn]']);
});

test('a block rule matching a key, a header name or a header value refuses the operation, naming the record', async () => {
  for (const bad of [record(PEM, '{}'), record('k', '{}', [[PEM, 'v']]), record('k', '{}', [['h', PEM]])]) {
    const err = await through(control(), op('pay', { records: [record('k', '{"ok":1}'), bad] }));
    assert.ok(err instanceof GatewayError, String(err));
    assert.equal(err.kind, 'blocked');
    assert.equal(err.rule, 'keys');
    assert.match(err.message, /^record 1 was blocked by inspection rule "keys": no keys/);
  }
  // per-record mode (Kinesis PutRecords): only that record fails
  const o = op('pay', { records: [record('k', '{"ok":1}'), record(PEM, '{}')], refusals: new Refusals<number>() });
  assert.equal(await through(control(), o), null);
  assert.equal(o.refusals!.get(0), undefined);
  assert.equal(o.refusals!.get(1)?.rule, 'keys');
});

test('a header name is scanned once per batch, and masked (and counted) in every record that carries it', async () => {
  const records = Array.from({ length: 50 }, (_, i) => record(null, `{"i":${i}}`, [[CARD, 'v'], ['trace', `${i}`]]));
  const plan = planKeyHeaders(records, book.rulesFor('pay', 'produce')!.ruleset, book.rulesFor('pay', 'produce')!.keyHeaders!);
  // 50 values, 2 distinct names, 100 header values
  assert.equal(plan.payloads.length, 50 + 2 + 100);
  const o = op('pay', { records });
  assert.equal(await through(control(), o), null);
  assert.ok(records.every((r) => r.headers[0]![0] === MASKED && r.headers[1]![0] === 'trace'));
  assert.deepEqual(o.inspection!.masking, { card: 50 });
  assert.deepEqual(o.inspection!.notes, ['headers-changed:50']);
});

test('consume side: keys and headers of fetched records are masked for the reader', async () => {
  const o = op('pay', { records: [record(CARD, '{"a":1}', [['h', CARD]])] }, 'consume');
  assert.equal(await through(control(), o), null);
  assert.deepEqual([str(o.records![0]!.key), str(o.records![0]!.headers[0]![1])], [MASKED, MASKED]);
});

function batch(messages: Array<{ key: string | null; value: string; headers: Array<[string, string]> }>): Buffer {
  return createRecordsBatch(messages.map((m, i) => ({
    topic: 'pay', partition: 0, key: m.key === null ? undefined : enc(m.key), value: enc(m.value),
    headers: new Map(m.headers.map(([k, v]) => [enc(k), enc(v)])), timestamp: 1_700_000_000_000n + BigInt(i),
  })) as never, { compression: 'lz4' } as never).buffer as Buffer;
}

for (const mode of ['inline', 'pool'] as const) {
  test(`Kafka wire batches (${mode}): keys and headers are masked and the batch is re-encoded`, async () => {
    const blob = batch([
      { key: `card ${CARD}`, value: '{"a":1}', headers: [['trace', `T-0001 ${CARD}`], [`n${CARD}`, 'x'], [CARD, 'y']] },
      { key: 'k2', value: '{"b":2}', headers: [['h', 'plain']] },
    ]);
    const o = op('pay', { protocol: 'kafka', encoded: { format: 'kafka', parts: [blob], partitions: [0], decodedBytes: mode === 'pool' ? 1_000_000 : 100 } });
    assert.equal(await through(control(mode), o), null);
    assert.deepEqual(o.encoded!.changed, [true]);
    const out = streamRecords(decodeRecords(o.encoded!.parts[0]!), 0);
    assert.equal(str(out[0]!.key), `card ${MASKED}`);
    assert.deepEqual(out[0]!.headers.map(([k, v]) => [k, str(v)]), [['trace', `[t] ${MASKED}`], [`n${CARD}`, 'x'], [MASKED, 'y']]);
    assert.deepEqual([str(out[1]!.key), str(out[1]!.value), out[1]!.headers.map(([k, v]) => [k, str(v)])], ['k2', '{"b":2}', [['h', 'plain']]]);
    assert.equal(o.inspection!.where, mode);
    assert.deepEqual(o.inspection!.masking, { card: 3, trace: 1 });
    assert.deepEqual(o.inspection!.maskedHashes, [null, null], 'values are unchanged');
    assert.deepEqual(o.inspection!.notes, ['keys-changed:1', 'headers-changed:1']);
    // a key that must block refuses the batch
    const bad = batch([{ key: PEM, value: '{}', headers: [] }]);
    const err = await through(control(mode), op('pay', { protocol: 'kafka', encoded: { format: 'kafka', parts: [bad], partitions: [0], decodedBytes: 100 } }));
    assert.ok(err instanceof GatewayError && err.rule === 'keys', String(err));
  });
}

test('config: targets are key, value, headers.* or headers.<name>; anything else is refused', () => {
  const rule = (targets: unknown) => inspectionSchema.safeParse({ rules: [{ id: 'r', detector: 'email', targets, action: { type: 'drop' } }] });
  for (const ok of [['key'], ['value'], ['headers.*'], ['headers.x-trace', 'key']]) assert.ok(rule(ok).success, JSON.stringify(ok));
  for (const bad of [[], ['keys'], ['headers.'], ['header.x'], 'key']) assert.ok(!rule(bad).success, JSON.stringify(bad));
  assert.ok(!inspectionSchema.safeParse({ topics: [{ topics: ['t'], malformedJson: 'maybe' }] }).success);
  assert.ok(inspectionSchema.safeParse({ malformedJson: 'block', topics: [{ topics: ['t'], malformedJson: 'scan' }] }).success);
});

test('topics whose rules apply to values only keep the values-only path (no key or header payloads)', () => {
  const resolved = new RuleBook(inspectionSchema.parse({
    rules: [{ id: 's', detector: 'us-ssn', targets: ['value'], action: { type: 'drop' } }, { id: 'pw', fields: ['$.p'], action: { type: 'drop' } }],
    topics: [{ topics: ['v'], produce: ['s', 'pw'] }],
  })).rulesFor('v', 'produce');
  assert.ok(resolved);
  assert.equal(resolved.keyHeaders, null);
  assert.ok(book.rulesFor('pay', 'produce')!.keyHeaders);
});

test('Kinesis entries: PartitionKey is the key, ExplicitHashKey a header; what is forwarded is built from the inspected record', async () => {
  const { deliveredRecord, entryRecord, forwardedEntry } = await import('../src/protocols/kinesis/records.ts');
  const entries = [
    { Data: Buffer.from('{"a":1}').toString('base64'), PartitionKey: `p ${CARD}`, ExplicitHashKey: CARD },
    { Data: Buffer.from('x').toString('base64'), PartitionKey: 'k\ud800', ExplicitHashKey: '42', SequenceNumberForOrdering: '1' },
  ];
  const records = entries.map(entryRecord);
  assert.deepEqual(records[0]!.headers.map(([k, v]) => [k, str(v)]), [['ExplicitHashKey', CARD]]);
  const o = op('pay', { protocol: 'kinesis', records, refusals: new Refusals<number>() });
  assert.equal(await through(control(), o), null);
  assert.deepEqual(forwardedEntry(entries[0]!, records[0]!), { Data: entries[0]!.Data, PartitionKey: `p ${MASKED}` }, 'a masked hash key is left out');
  // an untouched key goes out exactly as the client wrote it (even a lone surrogate)
  assert.deepEqual(forwardedEntry(entries[1]!, records[1]!), entries[1]);
  // a replacement that makes the key longer than Kinesis allows is cut; one that empties it refuses
  const long = { ...records[1]!, key: enc('é'.repeat(300)) };
  assert.equal(forwardedEntry(entries[1]!, long).PartitionKey, 'é'.repeat(256));
  assert.throws(() => forwardedEntry(entries[1]!, { ...records[1]!, key: new Uint8Array(0) }), (e: unknown) => e instanceof GatewayError && e.kind === 'blocked');
  // GetRecords: Data and PartitionKey as inspected for the reader
  const got = { Data: 'eA==', PartitionKey: CARD, SequenceNumber: '7' };
  assert.deepEqual(deliveredRecord(got, { key: enc(MASKED), value: enc('y'), headers: [] }), { Data: 'eQ==', PartitionKey: MASKED, SequenceNumber: '7' });
});
