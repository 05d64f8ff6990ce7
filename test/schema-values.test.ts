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

function batch(values: Array<Buffer | null>, keys?: Buffer[]): Buffer {
  const messages = values.map((v, i) => ({ topic: 't', partition: 0, key: keys?.[i] ?? Buffer.from(`k${i}`), value: v, headers: new Map(), timestamp: 1_700_000_000_000n }));
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
    - { id: id-hash, fields: ["$..id"], action: { type: hash } }
    - { id: pii-token, tags: [PII], action: { type: tokenize } }
  tokenization: { keys: [{ version: 1, secret: "a-test-secret-of-16+" }] }
  topics:
    - { topics: ["t"], schema: ${schema}, produce: ${produce} }
`).inspection);
}

function run(b: RuleBook, values: Array<Buffer | null>, extra: Partial<EncodedTask> = {}, keys?: Buffer[]) {
  const rules = b.rulesFor('t', 'produce', [])!;
  const engine = WasmEngine.load(b.program.bytes);
  const task: EncodedTask = { format: 'kafka', parts: [batch(values, keys)], ruleset: rules.ruleset, keyHeaders: rules.keyHeaders, values: rules.values, schemaEpoch: 'e', ...extra };
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

test('a hash or tokenize rule that would put a string into a number field is refused before it runs, naming the rule and the field', () => {
  const byPath = done(run(book('{}', '[id-hash]'), [framed(8, sample(0))], { schemas: [customer] }));
  assert.deepEqual(byPath.problems.map((p) => p.rule), ['schema.unfit']);
  assert.match(byPath.problems[0]!.message, /rule "id-hash" would hash \$\.id, a number in schema 8/);
  // a tag rule reaching a tagged double ($.home.geo.lat)
  const byTag = done(run(book('{}', '[pii-token]'), [framed(8, sample(0))], { schemas: [customer] }));
  assert.match(byTag.problems[0]!.message, /rule "pii-token" would tokenize \$\.home\.geo\.lat, a number/);
});

test('keys are not decoded: a rule that would rewrite a framed key refuses the record instead of breaking the key; plain keys are masked as before', () => {
  const keyType = avro.Type.forSchema('string');
  const framedKeyBytes = Buffer.concat([writeFraming('confluent', 9), keyType.toBuffer('card 4111 1111 1111 1111')]);
  const b = book('{}', '[card]');
  const r = done(run(b, [framed(8, sample(0)), framed(8, sample(1))], { schemas: [customer] }, [framedKeyBytes, Buffer.from('4111 1111 1111 1111')]));
  assert.deepEqual(r.problems.map((p) => [p.record, p.rule]), [[0, 'schema.key']]);
});

test('unframed values on a topic that requires schemas, unknown ids and undecodable values are refused with a reason; scan lets them through as bytes', () => {
  const b = book('{ required: true }');
  const truncated = framed(8, sample(0)).subarray(0, 20);
  const values = [Buffer.from('{"card":"4111111111111111"}'), framed(99, sample(0)), truncated, null];
  const r = done(run(b, values, { schemas: [customer], schemaFailures: [{ id: 99, code: 'SCHEMA_NOT_FOUND', message: 'the registry has no schema 99' }] }));
  assert.deepEqual(r.problems.map((p) => [p.record, p.rule]), [[0, 'schema.unframed'], [1, 'schema.unknown'], [2, 'schema.undecodable']]);
  assert.match(r.problems[2]!.message, /does not decode with its Avro schema/);
  assert.deepEqual(r.parts, [null], 'nothing is re-encoded when a record is refused');

  // a topic that requires schemas refuses what does not decode, whatever undecodable says
  const strict = done(run(book('{ required: true, undecodable: scan }'), [truncated], { schemas: [customer] }));
  assert.deepEqual(strict.problems.map((p) => p.rule), ['schema.undecodable']);

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

test('fuzz: mutated Avro values never throw, and what goes out decodes with the schema and holds nothing the rules would still change', () => {
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
      // nothing the detector would still find: inspecting what went out changes nothing
      const again = done(run(b, [out], { schemas: [customer] }));
      assert.deepEqual(again.parts, [null]);
    }),
    { numRuns: fuzzRuns(300) },
  );
});

// Protobuf: an import from a reference, a nested message, repeated, map, oneof, an int64 past
// 2^53, a well-known type, an enum; the second message of the file by its message index
const moneyProto = 'syntax = "proto3";\npackage shop;\nmessage Money { string currency = 1; int64 units = 2; }\n';
const paymentProto = `syntax = "proto3";
package shop;
import "money.proto";
import "google/protobuf/timestamp.proto";
import "confluent/meta.proto";
message Envelope { string id = 1; }
message Payment {
  string card = 1;
  Money amount = 2;
  oneof via { string iban = 3; string wallet = 4; }
  repeated string notes = 5;
  map<string, string> attrs = 6;
  google.protobuf.Timestamp at = 7;
  Kind kind = 8;
  string email = 9;
  Holder holder = 10;
  int64 ref = 11;
  message Holder { string name = 1 [(confluent.field_meta) = { tags: ["PII"] }]; Address address = 2; }
  message Address { string street = 1 [(confluent.field_meta).tags = "PII"]; string city = 2; }
  enum Kind { CARD = 0; TRANSFER = 1; }
}
`;
const money: RegisteredSchema = { id: 20, type: 'PROTOBUF', schema: moneyProto, references: [], resolved: new Map() };
const payment: RegisteredSchema = { id: 21, type: 'PROTOBUF', schema: paymentProto, references: [{ name: 'money.proto', subject: 'money', version: 1 }], resolved: new Map([['money.proto', money]]) };

async function paymentType() {
  const protobuf = (await import('protobufjs')).default;
  const root = new protobuf.Root();
  protobuf.parse(moneyProto, root, { keepCase: true });
  protobuf.parse(paymentProto.replace('import "confluent/meta.proto";\n', ''), root, { keepCase: true });
  root.addJSON((protobuf.common.get('google/protobuf/timestamp.proto') as { nested: Record<string, never> }).nested);
  root.resolveAll();
  return root.lookupType('shop.Payment');
}

test('Protobuf: nested, repeated, map, oneof and tagged fields masked; the rest exact; the same message index and schema id', async () => {
  const Payment = await paymentType();
  const value = Payment.fromObject({
    card: '4111 1111 1111 1111', amount: { currency: 'EUR', units: '9007199254740993' }, wallet: 'wallet-5555555555554444',
    notes: ['ok', 'card 4111111111111111'], attrs: { a: '5555555555554444' }, at: { seconds: 1700000000, nanos: 5 }, kind: 'TRANSFER',
    email: 'ann@example.com', holder: { name: 'Ann', address: { street: '1 Main St', city: 'Springfield' } }, ref: '-9007199254740993',
  });
  const framedValue = Buffer.concat([writeFraming('confluent', 21, [1]), Payment.encode(value).finish()]);
  const b = book();
  const r = done(run(b, [framedValue], { schemas: [payment] }));
  const out = outValues(r)[0]!;
  assert.deepEqual([...out.subarray(0, 6)], [0, 0, 0, 0, 21, 2], 'same id; message indexes [1] (count 1, index 1, zigzag)');
  const got = Payment.toObject(Payment.decode(out.subarray(7)), { longs: String, enums: String, oneofs: true }) as Record<string, any>;
  assert.equal(got.card, '**** **** **** 1111');
  assert.equal(got.via, 'wallet');
  assert.equal(got.wallet, 'wallet-************4444', 'oneof member');
  assert.deepEqual(got.notes, ['ok', 'card ************1111'], 'repeated');
  assert.deepEqual(got.attrs, { a: '************4444' }, 'map values');
  assert.equal(got.amount.units, '9007199254740993', 'int64 past 2^53 exact in a nested message');
  assert.equal(got.ref, '-9007199254740993');
  assert.equal(got.at.seconds, '1700000000');
  assert.equal(got.kind, 'TRANSFER');
  assert.match(got.email, /^[0-9a-f]{16}$/, 'path rule');
  assert.equal(got.holder.name, '[pii]', 'tagged (message option form)');
  assert.equal(got.holder.address.street, '[pii]', 'tagged (flat option form), three levels down');
  assert.equal(got.holder.address.city, 'Springfield');

  // a message index the file does not have, and bytes that do not decode: refused
  const wrongIndex = Buffer.concat([writeFraming('confluent', 21, [5]), Payment.encode(value).finish()]);
  const garbage = Buffer.concat([writeFraming('confluent', 21, [1]), Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 1])]);
  const bad = done(run(b, [wrongIndex, garbage], { schemas: [payment] }));
  assert.deepEqual(bad.problems.map((p) => p.rule), ['schema.undecodable', 'schema.undecodable']);
});

// JSON Schema: the value is its own view; it must validate before and after
const addressJson = { $id: 'address.json', type: 'object', properties: { street: { type: 'string', 'confluent:tags': ['PII'] }, city: { type: 'string' } }, required: ['street', 'city'] };
const orderJson: RegisteredSchema = {
  id: 30, type: 'JSON',
  schema: JSON.stringify({
    $schema: 'http://json-schema.org/draft-07/schema#', type: 'object',
    properties: {
      email: { type: 'string' }, card: { type: 'string' }, score: { type: 'integer' },
      ship: { $ref: 'address.json' },
      lines: { type: 'array', items: { $ref: '#/definitions/line' } },
    },
    required: ['email', 'card', 'score'],
    definitions: { line: { type: 'object', properties: { sku: { type: 'string' }, note: { type: 'string', 'confluent:tags': ['PII'] } } } },
  }),
  references: [{ name: 'address.json', subject: 'address-json', version: 1 }],
  resolved: new Map([['address.json', { id: 31, type: 'JSON', schema: JSON.stringify(addressJson), references: [], resolved: new Map() }]]),
};
const jsonValue = (v: unknown) => Buffer.concat([writeFraming('confluent', 30), Buffer.from(JSON.stringify(v))]);

test('JSON Schema: detectors, paths and tags (through local and referenced $refs) applied; values that do not validate refused before and after', () => {
  const order = { email: 'ann@example.com', card: '4111 1111 1111 1111', score: 7, ship: { street: '1 Main St', city: 'Springfield' }, lines: [{ sku: 'A-1', note: 'leave at door' }] };
  const r = done(run(book('{ numbers: 0 }'), [jsonValue(order), jsonValue({ email: 'x' }), Buffer.concat([writeFraming('confluent', 30), Buffer.from('{"email":')])], { schemas: [orderJson] }));
  assert.deepEqual(r.problems.map((p) => [p.record, p.rule]), [[1, 'schema.undecodable'], [2, 'schema.undecodable']]);
  assert.match(r.problems[0]!.message, /must have required property/);

  const ok = done(run(book(), [jsonValue(order)], { schemas: [orderJson] }));
  const out = outValues(ok)[0]!;
  assert.equal(out.readInt32BE(1), 30);
  const got = JSON.parse(out.subarray(5).toString());
  assert.equal(got.card, '**** **** **** 1111');
  assert.match(got.email, /^[0-9a-f]{16}$/);
  assert.deepEqual(got.ship, { street: '[pii]', city: 'Springfield' });
  assert.deepEqual(got.lines, [{ sku: 'A-1', note: '[pii]' }]);
  assert.equal(got.score, 7);

  // a masked integer must still be an integer: the configured number
  const masked = done(run(book('{ numbers: -1 }', '[score-mask]'), [jsonValue({ ...order, score: 123456 })], { schemas: [orderJson] }));
  assert.equal(JSON.parse(outValues(masked)[0]!.subarray(5).toString()).score, -1);
});

test('fuzz: mutated Protobuf values and message indexes never throw, and what goes out holds nothing the rules would still change', async () => {
  const Payment = await paymentType();
  const body = Buffer.from(Payment.encode(Payment.fromObject({ card: '4111 1111 1111 1111', notes: ['card 5555555555554444'], wallet: 'w', holder: { name: 'Ann', address: { street: 's', city: 'c' } } })).finish());
  const clean = Buffer.concat([writeFraming('confluent', 21, [1]), body]);
  const b = book('{ undecodable: refuse }', '[card]');
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.nat({ max: 8 }), (flips, cut) => {
      const v = Buffer.from(clean);
      // past the schema id: the message indexes and the body
      for (const [at, value] of flips) v[5 + (at % (v.length - 5))] = value;
      const value = cut > 0 ? v.subarray(0, v.length - cut) : v;
      const r = run(b, [value], { schemas: [payment, money] });
      assert.ok(!('needSchemas' in r) && !('invalid' in r));
      if (r.problems.length > 0) return;
      const out = r.parts[0] ? outValues(r)[0]! : value;
      const again = done(run(b, [out], { schemas: [payment, money] }));
      assert.deepEqual(again.parts, [null], 'nothing the detector would still find');
    }),
    { numRuns: fuzzRuns(300) },
  );
});

test('fuzz: mutated JSON Schema values never throw, and what goes out validates and holds nothing the rules would still change', () => {
  const order = { email: 'ann@example.com', card: '4111 1111 1111 1111', score: 7, ship: { street: '1 Main St', city: 'Springfield' }, lines: [{ sku: 'A-1', note: 'card 5555555555554444' }] };
  const clean = jsonValue(order);
  const b = book('{ undecodable: refuse }', '[card, pii]');
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (flips) => {
      const v = Buffer.from(clean);
      for (const [at, value] of flips) v[5 + (at % (v.length - 5))] = value;
      const r = run(b, [v], { schemas: [orderJson] });
      assert.ok(!('needSchemas' in r) && !('invalid' in r));
      if (r.problems.length > 0) return;
      const out = r.parts[0] ? outValues(r)[0]! : v;
      const again = done(run(b, [out], { schemas: [orderJson] }));
      assert.equal(again.problems.length, 0, 'what went out decodes and validates');
      // (a redaction applies again, to the same text: the bytes are what counts)
      assert.deepEqual(again.parts[0] ? outValues(again)[0] : out, out, 'nothing the rules would still change');
    }),
    { numRuns: fuzzRuns(300) },
  );
});
