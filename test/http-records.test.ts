import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeBatch, decodeRecord } from '../src/protocols/http/records.ts';

test('REST v3 record bodies decode to protocol-neutral records', () => {
  const d = decodeRecord({
    partition_id: 2,
    headers: [{ name: 'trace', value: Buffer.from('abc').toString('base64') }],
    key: { type: 'BINARY', data: Buffer.from([0, 1, 2]).toString('base64') },
    value: { data: { a: 1 } },
    timestamp: '2026-01-02T03:04:05.006Z',
  });
  assert.equal(d.record.partition, 2);
  assert.deepEqual([...d.record.key!], [0, 1, 2]);
  assert.equal(Buffer.from(d.record.value!).toString(), '{"a":1}');
  assert.equal(d.valueType, 'JSON');
  assert.equal(d.record.timestamp, Date.UTC(2026, 0, 2, 3, 4, 5, 6));
  assert.equal(Buffer.from(d.record.headers[0]![1]).toString(), 'abc');
  assert.equal(decodeRecord({}).record.value, null, 'a record may have neither key nor value (tombstone)');
  assert.equal(Buffer.from(decodeRecord({ value: { type: 'STRING', data: 'héllo' } }).record.value!).toString(), 'héllo');
});

test('each malformed part is named', () => {
  const cases: Array<[unknown, RegExp]> = [
    [[], /must be a JSON object/],
    [{ value: 1 }, /value must be an object/],
    [{ value: { type: 'JSON' } }, /value\.data is required/],
    [{ value: { type: 'STRING', data: 1 } }, /must be a string/],
    [{ key: { type: 'BINARY', data: 'a' } }, /key\.data must be standard base64/],
    [{ value: { type: 'AVRO', schema: '"string"', data: 'x' } }, /does not register schemas/],
    [{ value: { schema_id: -1, data: {} } }, /schema_id must be a schema id/],
    [{ value: { schema_id: 1, subject: 's', data: {} } }, /leave out subject and schema_version/],
    [{ value: { subject_name_strategy: 'RECORD_NAME', data: {} } }, /only TOPIC_NAME is supported/],
    [{ value: { schema_id: 1 } }, /value\.data is required/],
    [{ value: { schema_id: 1, data: {}, extra: 1 } }, /unknown property \(member 3\)/],
    [{ headers: [{ name: '', value: null }] }, /headers\[0\]\.name/],
    [{ headers: {} }, /headers must be an array/],
    [{ timestamp: 'yesterday' }, /timestamp/],
    [{ partition_id: 1.5 }, /partition_id/],
    // found by the gateway fuzz test: JSON.stringify overflows its stack at a few thousand levels
    [{ value: { data: JSON.parse('{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000)) } }, /value\.data is nested too deeply/],
    [{ value: { type: JSON.parse('{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000)), data: 1 } }, /value\.type must be one of JSON, STRING, BINARY, AVRO, PROTOBUF, JSONSCHEMA \(got object\)/],
  ];
  for (const [body, message] of cases) assert.throws(() => decodeRecord(body), message, String(message));
});

test('values with a registry schema are kept as data and a reference, in each of the REST Proxy v3 forms', () => {
  assert.deepEqual(decodeRecord({ value: { schema_id: 7, data: { a: 1 } } }).withSchema, { value: { ref: { schemaId: 7 }, data: { a: 1 } } });
  assert.deepEqual(decodeRecord({ value: { subject: 's', schema_version: 2, data: 1 } }).withSchema?.value?.ref, { subject: 's', version: 2 });
  assert.deepEqual(decodeRecord({ value: { subject_name_strategy: 'TOPIC_NAME', data: 1 } }).withSchema?.value?.ref, { subject: null, version: 'latest' });
  assert.deepEqual(decodeRecord({ key: { type: 'AVRO', schema_version: 3, data: 'k' } }).withSchema?.key?.ref, { subject: null, version: 3 });
});

test('batches need unique ids and at least one entry', () => {
  assert.deepEqual(decodeBatch({ entries: [{ id: 'a' }, { id: 2 }] }).map((e) => e.id), ['a', '2']);
  assert.throws(() => decodeBatch({ entries: [] }), /must not be empty/);
  assert.throws(() => decodeBatch({ entries: [{ id: 'a' }, { id: 'a' }] }), /entries\[1\]\.id is the id of entries\[0\] too/);
  assert.throws(() => decodeBatch({ entries: [{}] }), /entries\[0\]\.id is required/);
  assert.throws(() => decodeBatch([]), /"entries"/);
  assert.throws(() => decodeBatch({ entries: [{ id: 'x', value: 3 }] }), /entries\[0\]\.value must be an object/);
});
