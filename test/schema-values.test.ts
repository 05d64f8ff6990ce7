// Schema-registry values through the inspection step (src/inspect/values.ts, formats/values):
// Avro records framed as a Confluent serializer frames them, inside Kafka batches a real client
// encodes, masked by path, by detector and by schema tag, written back with the same schema
// id and decoded again with avsc; unknown, unframed, undecodable values refused with a reason.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import avro from 'avsc';
import fc from 'fast-check';
import { createRecordsBatch } from '../node_modules/@platformatic/kafka/dist/protocol/records.js';
import { parseConfig } from '../src/config/load.ts';
import { inspectEncoded, type EncodedResult, type EncodedTask } from '../src/inspect/encoded.ts';
import { WasmEngine } from '../src/inspect/engine.ts';
import { RuleBook } from '../src/inspect/rules.ts';
import { decodeRecords, streamRecords } from '../src/formats/kafka-batch.ts';
import { writeFraming } from '../src/formats/schema-framing.ts';
import type { RegisteredSchema } from '../src/schemas/source.ts';
import { fuzzRuns } from './helpers/fuzz.ts';

const addressSchema = {
  type: 'record', name: 'Address', namespace: 'shop',
  fields: [
    { name: 'street', type: 'string', 'confluent:tags': ['PII'] },
    { name: 'city', type: 'string' },
    { name: 'geo', type: { type: 'record', name: 'Geo', fields: [{ name: 'lat', type: 'double', 'confluent:tags': ['PII'] }, { name: 'label', type: 'string' }] } },
  ],
};
const customerSchema = {
  type: 'record', name: 'Customer', namespace: 'shop',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'email', type: 'string' },
    { name: 'card', type: ['null', 'string'], default: null },
    { name: 'note', type: 'string' },
    { name: 'phone', type: ['null', 'string'], 'confluent:tags': ['PII'] },
    { name: 'home', type: 'shop.Address' },
    { name: 'tags', type: { type: 'array', items: 'string' } },
    { name: 'attrs', type: { type: 'map', values: 'string' } },
    { name: 'score', type: 'int' },
    { name: 'kind', type: { type: 'enum', name: 'Kind', symbols: ['RETAIL', 'BUSINESS'] } },
  ],
};
const address: RegisteredSchema = { id: 7, type: 'AVRO', schema: JSON.stringify(addressSchema), references: [], resolved: new Map() };
const customer: RegisteredSchema = {
  id: 8, type: 'AVRO', schema: JSON.stringify(customerSchema),
  references: [{ name: 'shop.Address', subject: 'address', version: 1 }],
  resolved: new Map([['shop.Address', address]]),
};
const bigIntLong = avro.types.LongType.__with({
  fromBuffer: (b: Buffer) => b.readBigInt64LE(),
  toBuffer: (n: bigint) => { const b = Buffer.alloc(8); b.writeBigInt64LE(n); return b; },
  fromJSON: BigInt, toJSON: Number, isValid: (n: unknown) => typeof n === 'bigint', compare: () => 0,
});
const exactRegistry: Record<string, avro.Type> = { long: bigIntLong as unknown as avro.Type };
avro.Type.forSchema(addressSchema as avro.Schema, { registry: exactRegistry });
const customerType = avro.Type.forSchema(customerSchema as avro.Schema, { registry: exactRegistry });

const sample = (i: number) => ({
  id: 2n ** 53n + BigInt(2 * i), // past what a double holds exactly
  email: `ann${i}@example.com`,
  card: '4111 1111 1111 1111',
  note: `call me, card 5555555555554444 (#${i})`,
  phone: '+1 202 555 0100',
  home: { street: '1 Main St', city: 'Springfield', geo: { lat: 39.78, label: 'home' } },
  tags: ['vip', '4111111111111111'],
  attrs: { 'ref': 'x', '5555555555554444': 'y' },
  score: 10 + i,
  kind: 'RETAIL',
});

function framed(id: number, value: unknown): Buffer {
  return Buffer.concat([writeFraming('confluent', id), customerType.toBuffer(value)]);
}

function batch(values: Array<Buffer | null>): Buffer {
  const messages = values.map((v, i) => ({ topic: 't', partition: 0, key: Buffer.from(`k${i}`), value: v, headers: new Map(), timestamp: 1_700_000_000_000n }));
  return createRecordsBatch(messages as never, { compression: 'lz4' } as never).buffer;
}

function book(schema = '{ framing: confluent }', produce = '[card, email-hash, pii]') {
  return new RuleBook(parseConfig(`
listeners: { http: { port: 1 } }
upstream: { kind: ack }
identity: { issuers: [{ issuer: "http://127.0.0.1:1", jwksUri: "http://127.0.0.1:1/jwks", audience: a }] }
policy: { roles: {}, grants: [] }
schemas: { catalog: { dir: ".", schemas: [{ id: 1, subject: s, file: package.json }] } }
inspection:
  rules:
    - { id: card, detector: payment-card, action: { type: mask, keepLast: 4 } }
    - { id: email-hash, fields: ["$.email"], action: { type: hash, length: 16 } }
    - { id: pii, tags: [PII], action: { type: redact, replacement: "[pii]" } }
    - { id: score-mask, fields: ["$.score", "$.id"], action: { type: mask, keepLast: 0 } }
  topics:
    - { topics: ["t"], schema: ${schema}, produce: ${produce} }
`).inspection);
}

function run(b: RuleBook, values: Array<Buffer | null>, extra: Partial<EncodedTask> = {}) {
  const rules = b.rulesFor('t', 'produce', [])!;
  const engine = WasmEngine.load(b.program.bytes);
  const task: EncodedTask = { format: 'kafka', parts: [batch(values)], ruleset: rules.ruleset, keyHeaders: rules.keyHeaders, values: rules.values, schemaEpoch: 'e', ...extra };
  return inspectEncoded(engine, task);
}

function done(r: ReturnType<typeof inspectEncoded>): EncodedResult {
  assert.ok(!('invalid' in r) && !('needSchemas' in r), JSON.stringify(r));
  return r;
}

const outValues = (r: EncodedResult) => streamRecords(decodeRecords(r.parts[0]!), 0).map((x) => (x.value ? Buffer.from(x.value) : null));
const decodeExact = (b: Buffer) => customerType.fromBuffer(b.subarray(5)) as Record<string, any>;

test('an unknown schema id is asked for; with the schema the values are masked by detector, path and tag, and decode with the same schema', () => {
  const b = book();
  const values = [framed(8, sample(0)), framed(8, sample(1))];
  const first = run(b, values);
  assert.deepEqual(first, { needSchemas: [8] });
  const r = done(run(b, values, { schemas: [customer] }));
  const out = outValues(r);
  for (const [i, v] of out.entries()) {
    assert.deepEqual([...v!.subarray(0, 5)], [0, 0, 0, 0, 8], 'same framing and schema id');
    const got = decodeExact(v!);
    assert.equal(got.id, 2n ** 53n + BigInt(2 * i), 'a long no rule touched stays exact');
    assert.match(got.email, /^[0-9a-f]{16}$/, 'path rule: hashed');
    assert.equal(got.card, '**** **** **** 1111', 'detector inside a union branch');
    assert.equal(got.note, `call me, card ************4444 (#${i})`);
    assert.equal(got.phone, '[pii]', 'tagged union field');
    assert.equal(got.home.street, '[pii]', 'tagged, one level down');
    assert.equal(got.home.city, 'Springfield', 'untagged sibling untouched');
    assert.equal(got.home.geo.lat, 0, 'tagged double, two levels down: a masked number becomes the configured number');
    assert.equal(got.home.geo.label, 'home');
    assert.deepEqual(got.tags, ['vip', '************1111'], 'array items');
    assert.deepEqual(Object.keys(got.attrs).sort(), ['************4444', 'ref'], 'map keys are data: masked');
    assert.equal(got.score, 10 + i);
    assert.equal(got.kind, 'RETAIL');
  }
  // the audit facts: hashes of the originals, actions per rule
  assert.equal(r.hashes.length, 128);
  assert.equal(r.problems.length, 0);
  const hitRules = new Set(Array.from(r.hits).map((h) => b.ruleId(h)));
  assert.deepEqual([...hitRules].sort(), ['card', 'email-hash', 'pii']);
});

test('a rule that masks a number field writes the configured number; every other field stays as it was', () => {
  const b = book('{ numbers: -1 }', '[score-mask]');
  const r = done(run(b, [framed(8, sample(3))], { schemas: [customer] }));
  const got = decodeExact(outValues(r)[0]!);
  assert.equal(got.score, -1);
  assert.equal(got.id, -1n);
  assert.equal(got.email, 'ann3@example.com');
});

test('unframed values on a topic that requires schemas, unknown ids and undecodable values are refused with a reason; scan lets them through as bytes', () => {
  const b = book('{ required: true }');
  const truncated = framed(8, sample(0)).subarray(0, 20);
  const values = [Buffer.from('{"card":"4111111111111111"}'), framed(99, sample(0)), truncated, null];
  const r = done(run(b, values, { schemas: [customer], schemaFailures: [{ id: 99, code: 'SCHEMA_NOT_FOUND', message: 'the registry has no schema 99' }] }));
  assert.deepEqual(r.problems.map((p) => [p.record, p.rule]), [[0, 'schema.unframed'], [1, 'schema.unknown'], [2, 'schema.undecodable']]);
  assert.match(r.problems[2]!.message, /does not decode with its Avro schema/);
  assert.deepEqual(r.parts, [null], 'nothing is re-encoded when a record is refused');

  const lax = book('{ undecodable: scan }');
  const s = done(run(lax, [truncated, Buffer.from('{"card":"4111111111111111"}')], { schemas: [customer] }));
  assert.equal(s.problems.length, 0);
  const out = outValues(s);
  assert.equal(out[1]!.toString(), '{"card":"************1111"}', 'an unframed value on a topic that does not require schemas: inspected as JSON');
  assert.ok(!out[0]!.includes(Buffer.from('4111 1111 1111 1111')), 'an undecodable value is still scanned as bytes');
});

test('schemas that cannot be decoded safely are refused: arrays of items that take no bytes', () => {
  const b = book();
  const bad: RegisteredSchema = { id: 9, type: 'AVRO', schema: JSON.stringify({ type: 'record', name: 'R', fields: [{ name: 'a', type: { type: 'array', items: 'null' } }] }), references: [], resolved: new Map() };
  // four bytes claiming 2^62 nulls would keep the decoder busy for ever
  const hostile = Buffer.concat([writeFraming('confluent', 9), Buffer.from([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])]);
  const r = done(run(b, [hostile], { schemas: [bad] }));
  assert.deepEqual(r.problems.map((p) => p.rule), ['schema.unsupported']);
});

test('fuzz: mutated Avro values never throw, never pass a known card through, and what goes out decodes with the schema', () => {
  const b = book('{ undecodable: refuse }', '[card]');
  const clean = framed(8, sample(1));
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.nat({ max: 8 }), (flips, cut) => {
      const v = Buffer.from(clean);
      for (const [at, value] of flips) v[5 + (at % (v.length - 5))] = value;
      const value = cut > 0 ? v.subarray(0, v.length - cut) : v;
      const r = run(b, [value], { schemas: [customer] });
      assert.ok(!('needSchemas' in r) && !('invalid' in r));
      if (r.problems.length > 0) return;
      const out = r.parts[0] ? outValues(r)[0]! : value;
      customerType.fromBuffer(out.subarray(5));
      assert.ok(!out.includes(Buffer.from('4111 1111 1111 1111')) && !out.includes(Buffer.from('5555555555554444')));
    }),
    { numRuns: fuzzRuns(300) },
  );
});
