import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FramingError, readFraming, writeFraming } from '../src/formats/schema-framing.ts';

// The schema-registry wire formats of a record value, against byte layouts written out from
// the formats' documentation, and against hostile bytes.
const body = [0xde, 0xad];

test('Confluent framing: magic 0, a 4-byte big-endian schema id, then the body', () => {
  assert.deepEqual(readFraming(Uint8Array.from([0, 0, 0, 1, 0x2c, ...body]), 'confluent', false), { schemaId: 300, bodyOffset: 5 });
  assert.deepEqual([...writeFraming('confluent', 300)], [0, 0, 0, 1, 0x2c]);
  assert.deepEqual(readFraming(Uint8Array.from([0, 0x7f, 0xff, 0xff, 0xff]), 'confluent', false).schemaId, 0x7fffffff);
});

test('Confluent Protobuf: message indexes as zigzag varints, a single 0 for the first message', () => {
  // [0] is written as one 0 byte
  assert.deepEqual(readFraming(Uint8Array.from([0, 0, 0, 0, 7, 0, ...body]), 'confluent', true), { schemaId: 7, messageIndexes: [0], bodyOffset: 6 });
  assert.deepEqual([...writeFraming('confluent', 7, [0])], [0, 0, 0, 0, 7, 0]);
  // [1, 2]: count 2 -> 4, 1 -> 2, 2 -> 4
  assert.deepEqual(readFraming(Uint8Array.from([0, 0, 0, 0, 7, 4, 2, 4, ...body]), 'confluent', true), { schemaId: 7, messageIndexes: [1, 2], bodyOffset: 8 });
  assert.deepEqual([...writeFraming('confluent', 7, [1, 2])], [0, 0, 0, 0, 7, 4, 2, 4]);
  // an index of 64 takes two varint bytes (zigzag 128)
  assert.deepEqual(readFraming(Uint8Array.from([0, 0, 0, 0, 7, 2, 0x80, 0x01]), 'confluent', true).messageIndexes, [64]);
});

test('Apicurio framing: magic 0 and an 8-byte big-endian global id', () => {
  assert.deepEqual(readFraming(Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 1, 0x2c, ...body]), 'apicurio', false), { schemaId: 300, bodyOffset: 9 });
  assert.deepEqual([...writeFraming('apicurio', 300)], [0, 0, 0, 0, 0, 0, 0, 1, 0x2c]);
  assert.deepEqual(readFraming(Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 9, 0]), 'apicurio', true), { schemaId: 9, messageIndexes: [0], bodyOffset: 10 });
});

test('values that are not framed, or framed badly, name their problem', () => {
  const problem = (bytes: number[], framing: 'confluent' | 'apicurio', protobuf = false) => {
    try {
      readFraming(Uint8Array.from(bytes), framing, protobuf);
    } catch (err) {
      assert.ok(err instanceof FramingError, String(err));
      return err.problem;
    }
    return 'none';
  };
  assert.equal(problem([], 'confluent'), 'truncated');
  assert.equal(problem([0, 0, 0, 1], 'confluent'), 'truncated');
  assert.equal(problem([0, 0, 0, 0, 0, 0, 0, 1], 'apicurio'), 'truncated');
  assert.equal(problem([0x7b, 0x22, 0x61, 0x22, 0x3a], 'confluent'), 'not-framed'); // '{"a":' plain JSON
  assert.equal(problem([0, 0xff, 0xff, 0xff, 0xff], 'confluent'), 'invalid-id');
  assert.equal(problem([0, 0x80, 0, 0, 0, 0, 0, 0, 1], 'apicurio'), 'invalid-id');
  assert.equal(problem([0, 0x00, 0x20, 0, 0, 0, 0, 0, 1], 'apicurio'), 'invalid-id'); // past 2^53
  assert.equal(problem([0, 0, 0, 0, 1], 'confluent', true), 'invalid-message-indexes'); // no indexes at all
  assert.equal(problem([0, 0, 0, 0, 1, 4, 2], 'confluent', true), 'invalid-message-indexes'); // 2 announced, 1 given
  assert.equal(problem([0, 0, 0, 0, 1, 1], 'confluent', true), 'invalid-message-indexes'); // count -1
  assert.equal(problem([0, 0, 0, 0, 1, 0x7e], 'confluent', true), 'invalid-message-indexes'); // count 63 > 32
  assert.equal(problem([0, 0, 0, 0, 1, 2, 3], 'confluent', true), 'invalid-message-indexes'); // index -2
  assert.equal(problem([0, 0, 0, 0, 1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 'confluent', true), 'invalid-message-indexes'); // past 32 bits
});

test('property: any bytes either read as a framing inside the value or fail with a FramingError; written framings read back', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), fc.constantFrom('confluent' as const, 'apicurio' as const), fc.boolean(), (bytes, framing, protobuf) => {
      try {
        const f = readFraming(bytes, framing, protobuf);
        assert.ok(f.bodyOffset <= bytes.length && f.schemaId >= 0);
        assert.ok((f.messageIndexes?.length ?? 0) <= 32);
      } catch (err) {
        assert.ok(err instanceof FramingError, String(err));
      }
    }),
    { numRuns: 5000 },
  );
  fc.assert(
    fc.property(
      fc.constantFrom('confluent' as const, 'apicurio' as const),
      fc.integer({ min: 0, max: 0x7fffffff }),
      fc.option(fc.array(fc.integer({ min: 0, max: 0x3fffffff }), { minLength: 1, maxLength: 32 }), { nil: undefined }),
      fc.uint8Array({ maxLength: 8 }),
      (framing, id, indexes, rest) => {
        const head = writeFraming(framing, id, indexes);
        const value = new Uint8Array([...head, ...rest]);
        const f = readFraming(value, framing, indexes !== undefined);
        assert.equal(f.schemaId, id);
        assert.equal(f.bodyOffset, head.length);
        if (indexes) assert.deepEqual(f.messageIndexes, indexes);
      },
    ),
    { numRuns: 2000 },
  );
});
