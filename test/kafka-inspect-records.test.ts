import { test } from 'node:test';
import assert from 'node:assert/strict';
import { snappyCompress } from '@platformatic/wasm-utils';
import { crc32c } from '@platformatic/wasm-utils';
// another implementation writes and reads the batches: @platformatic/kafka's record codec
import { readRecordsBatches } from '../node_modules/@platformatic/kafka/dist/protocol/records.js';
import { clientBatch } from './helpers/batches.ts';
import { Reader } from '../node_modules/@platformatic/kafka/dist/protocol/reader.js';
import { decodeRecords, encodeRecords, streamRecords } from '../src/formats/kafka-batch.ts';

const batch = clientBatch;

const mask = (v: Uint8Array | null) => (v ? Buffer.from(Buffer.from(v).toString().replace('4111 1111 1111 1111', '**** **** **** 1111')) : v);

for (const codec of ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const) {
  test(`${codec}: decode, mask, re-encode; everything but the values is preserved and the CRC is valid`, () => {
    const blob = Buffer.concat([batch(codec, 3), batch(codec, 2, 3)]);
    const decoded = decodeRecords(blob);
    assert.equal(decoded.batches.length, 2);
    const records = streamRecords(decoded, 5);
    assert.equal(records.length, 5);
    assert.ok(records.every((r) => r.partition === 5));
    records[1]!.value = mask(records[1]!.value);
    const { blob: out, changed, used } = encodeRecords(decoded, records);
    assert.ok(changed);
    assert.equal(used, 5);
    const before = readRecordsBatches(Reader.from(blob));
    const after = readRecordsBatches(Reader.from(Buffer.from(out)));
    assert.equal(after.length, 2);
    for (let b = 0; b < 2; b++) {
      const { records: rb, crc: _c1, length: _l1, ...hb } = before[b]!;
      const { records: ra, crc: _c2, length: _l2, ...ha } = after[b]!;
      assert.deepEqual(ha, hb, 'batch header fields (producer id, epoch, sequence, timestamps, attributes) are kept');
      for (let i = 0; i < ra.length; i++) {
        assert.equal(ra[i]!.timestampDelta, rb[i]!.timestampDelta);
        assert.equal(ra[i]!.offsetDelta, rb[i]!.offsetDelta);
        assert.deepEqual(ra[i]!.key, rb[i]!.key);
        assert.deepEqual(ra[i]!.headers, rb[i]!.headers);
      }
    }
    assert.equal(after[0]!.records[1]!.value!.toString(), '{"card":"**** **** **** 1111","i":1}');
    assert.equal(after[0]!.records[0]!.value!.toString(), '{"card":"4111 1111 1111 1111","i":0}');
    // the second batch did not change: its bytes are forwarded as they were
    assert.deepEqual(Buffer.from(out).subarray(out.byteLength - before[1]!.length - 12), blob.subarray(blob.byteLength - before[1]!.length - 12));
    // our decoder checks the CRC32C of what it re-encoded
    assert.equal(decodeRecords(out).batches.length, 2);
  });
}

test('unchanged records: the blob itself is returned; a truncated tail is reported and dropped on re-encode', () => {
  const full = batch('lz4', 3);
  const blob = Buffer.concat([full, batch('none', 2).subarray(0, 40)]);
  const decoded = decodeRecords(blob);
  assert.equal(decoded.truncated, 40);
  const records = streamRecords(decoded, 0);
  const same = encodeRecords({ ...decoded, truncated: 0 }, records);
  assert.equal(same.changed, false);
  assert.deepEqual(Buffer.from(same.blob), full);
  // values handed back by the pool are new views: equal bytes still count as unchanged
  for (const r of records) r.value = r.value && Uint8Array.from(r.value);
  assert.equal(encodeRecords({ ...decoded, truncated: 0 }, records).changed, false);
  records[0]!.value = mask(records[0]!.value);
  const out = encodeRecords(decoded, records);
  assert.equal(decodeRecords(out.blob).truncated, 0);
});

test('snappy-java (xerial) framing is read and written back framed', () => {
  const plain = batch('none', 40);
  const records = plain.subarray(61);
  const header = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1]);
  const parts: Buffer[] = [header];
  for (let o = 0; o < records.length; o += 500) {
    const block = snappyCompress(Buffer.from(records.subarray(o, Math.min(o + 500, records.length))));
    const len = Buffer.alloc(4);
    len.writeUInt32BE(block.length);
    parts.push(len, block);
  }
  const framed = Buffer.concat([plain.subarray(0, 61), ...parts]);
  framed.writeInt32BE(framed.length - 12, 8);
  framed.writeInt16BE(framed.readInt16BE(21) | 2, 21);
  framed.writeUInt32BE(crc32c(framed.subarray(21)), 17);
  const decoded = decodeRecords(framed);
  const recs = streamRecords(decoded, 0);
  assert.equal(recs.length, 40);
  recs[39]!.value = mask(recs[39]!.value);
  const out = Buffer.from(encodeRecords(decoded, recs).blob);
  assert.deepEqual(out.subarray(61, 69), header.subarray(0, 8), 'framed again');
  const again = streamRecords(decodeRecords(out), 0);
  assert.equal(Buffer.from(again[39]!.value!).toString(), '{"card":"**** **** **** 1111","i":39}');
});

test('control batches and corrupt batches', () => {
  const control = batch('none', 1);
  control.writeInt16BE(control.readInt16BE(21) | 0x20, 21);
  const decoded = decodeRecords(control);
  assert.equal(decoded.batches[0]!.records, null, 'control batches pass through undecoded');
  const corrupt = batch('none', 2);
  corrupt[corrupt.length - 1]! ^= 1;
  assert.throws(() => decodeRecords(corrupt), /CRC/);
});

test('re-encoding a batch with changed keys, headers and a null value round-trips every field', () => {
  for (const codec of ['none', 'lz4', 'zstd'] as const) {
    const decoded = decodeRecords(batch(codec, 3));
    const records = streamRecords(decoded, 0);
    records[0]!.key = Buffer.from('a-longer-replacement-key-'.repeat(10));
    records[1]!.headers = [['x', Buffer.from('y')], ['zz', Buffer.alloc(0)], ['ünï', Buffer.from('v'.repeat(300))]];
    records[2]!.value = null;
    const out = encodeRecords(decoded, records);
    assert.equal(out.changed, true);
    const again = streamRecords(decodeRecords(out.blob), 0);
    assert.equal(again.length, 3);
    assert.equal(Buffer.from(again[0]!.key!).toString(), 'a-longer-replacement-key-'.repeat(10));
    assert.deepEqual(again[1]!.headers.map(([k, v]) => [k, Buffer.from(v).toString()]), [['x', 'y'], ['zz', ''], ['ünï', 'v'.repeat(300)]]);
    assert.equal(again[2]!.value, null);
    // untouched fields as before
    assert.equal(Buffer.from(again[1]!.value!).toString(), Buffer.from(records[1]!.value!).toString());
    assert.equal(Buffer.from(again[2]!.key!).toString(), 'k2');
  }
});
