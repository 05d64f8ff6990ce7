import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import fc from 'fast-check';
import { crc32c, lz4Compress, snappyCompress } from '@platformatic/wasm-utils';
import { KafkaProtocolError, type MessageCodec } from '../src/protocols/kafka/codec.ts';
import { loadMessages, type MessageRegistry } from '../src/protocols/kafka/messages.ts';
import { MAX_VERSION, SUPPORTED } from '../src/protocols/kafka/apis.ts';
import { BatchFormatError, decodeRecords, MAX_DECOMPRESSED_BATCH_BYTES, CODECS } from '../src/formats/kafka-batch.ts';
import { clientBatch } from './helpers/batches.ts';
import { parseOauthBearer, parsePlain, SaslError } from '../src/protocols/kafka/sasl.ts';
import { fuzzRuns, sampleRequest, seeded } from './helpers/fuzz.ts';

// Property tests of everything that parses client bytes on the Kafka listener: the
// request codec for every accepted API and version, record batches (with every codec and
// compression bombs) and SASL messages. The only acceptable failure is the codec's own
// protocol error, which the listener turns into a closed connection and an audit row; any
// other exception (RangeError, TypeError, out-of-memory) would be a crash or a hang.
// `npm run fuzz` runs the same properties with many more cases (FUZZ_SCALE).

let reg: MessageRegistry;
before(async () => {
  reg = await loadMessages();
});

function versionsOf(apiKey: number): number[] {
  const codec = reg.requests.get(apiKey)!;
  const [lo, hi] = codec.validVersions;
  const top = Math.min(hi, MAX_VERSION[apiKey] ?? hi);
  return Array.from({ length: top - lo + 1 }, (_, i) => lo + i);
}

/** Decoding must return or throw KafkaProtocolError: nothing else. */
function decodeOrProtocolError(codec: MessageCodec, bytes: Uint8Array, version: number): void {
  try {
    codec.decode(bytes, 0, version);
  } catch (err) {
    if (!(err instanceof KafkaProtocolError)) throw new Error(`${codec.spec.name} v${version}: ${(err as Error).name}: ${(err as Error).message}`, { cause: err });
  }
}

test('every accepted API and version: random bytes decode or fail with a protocol error', () => {
  const apis = [...SUPPORTED];
  fc.assert(
    fc.property(fc.constantFrom(...apis), fc.nat(), fc.uint8Array({ maxLength: 512 }), (apiKey, v, bytes) => {
      const versions = versionsOf(apiKey);
      decodeOrProtocolError(reg.requests.get(apiKey)!, bytes, versions[v % versions.length]!);
    }),
    { numRuns: fuzzRuns(3000) },
  );
});

test('every accepted API and version: mutated valid requests (flipped bytes, lying lengths, cut short) never escape the codec', () => {
  let checked = 0;
  for (const apiKey of SUPPORTED) {
    const codec = reg.requests.get(apiKey)!;
    for (const version of versionsOf(apiKey)) {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 2 ** 31 - 1 }),
          fc.array(fc.tuple(fc.nat(), fc.constantFrom(0x00, 0x7f, 0x80, 0xff, 0x01, 0x3f)), { minLength: 1, maxLength: 6 }),
          fc.nat(),
          (seed, flips, cut) => {
            const rnd = seeded(seed);
            let valid: Uint8Array;
            try {
              valid = codec.encode(sampleRequest(codec, version, rnd), version).finish(false);
            } catch (err) {
              throw new Error(`encoding a sample ${codec.spec.name} v${version}: ${(err as Error).message}`);
            }
            // round trip first: the sample itself must decode
            codec.decode(valid, 0, version);
            const bytes = Uint8Array.from(valid);
            for (const [at, value] of flips) if (bytes.length > 0) bytes[at % bytes.length] = value;
            decodeOrProtocolError(codec, bytes, version);
            decodeOrProtocolError(codec, bytes.subarray(0, cut % (bytes.length + 1)), version);
            checked++;
          },
        ),
        { numRuns: fuzzRuns(12) },
      );
    }
  }
  assert.ok(checked > 500, `checked ${checked} mutated requests`);
});

test('an array or string claiming two billion elements fails fast instead of allocating', () => {
  // Metadata v12 (flexible): Topics is a compact array; length varint 0xffffffff -> 2^31 entries
  const metadata = reg.requests.get(3)!;
  const huge = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x07, 0x00]);
  assert.throws(() => metadata.decode(huge, 0, 12), KafkaProtocolError);
  // Produce v3 (non-flexible): TransactionalId string length int16, then TopicData int32 count
  const produce = reg.requests.get(0)!;
  const lying = Buffer.alloc(12);
  lying.writeInt16BE(-1, 0); // null transactional id
  lying.writeInt16BE(1, 2); // acks
  lying.writeInt32BE(30000, 4); // timeout
  lying.writeInt32BE(0x7fffffff, 8); // topics: 2^31 - 1
  assert.throws(() => produce.decode(lying, 0, 3), KafkaProtocolError);
});

test('record batches: random and mutated batch bytes decode or fail with a protocol error, with every codec', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...CODECS),
      fc.integer({ min: 1, max: 20 }),
      fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 4 }),
      (codec, n, flips) => {
        const batch = Uint8Array.from(clientBatch(codec, n));
        for (const [at, value] of flips) batch[at % batch.length] = value;
        try {
          decodeRecords(batch);
        } catch (err) {
          if (!(err instanceof BatchFormatError)) throw err;
        }
      },
    ),
    { numRuns: fuzzRuns(600) },
  );
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 61, maxLength: 400 }), (bytes) => {
      try {
        decodeRecords(bytes);
      } catch (err) {
        if (!(err instanceof BatchFormatError)) throw err;
      }
    }),
    { numRuns: fuzzRuns(600) },
  );
});

test('compression bombs: a batch that inflates past the bound is refused before it is inflated, with every codec', () => {
  const zeros = Buffer.alloc(MAX_DECOMPRESSED_BATCH_BYTES + 1024 * 1024);
  const bombs: Array<[string, number, Uint8Array]> = [
    ['gzip', 1, gzipSync(zeros, { level: 9 })],
    ['snappy', 2, snappyCompress(zeros)],
    ['lz4', 3, lz4Compress(zeros)],
    ['zstd', 4, zstdCompressSync(zeros)],
  ];
  for (const [name, codec, payload] of bombs) {
    assert.ok(payload.byteLength < zeros.byteLength / 20, `${name} compresses the zeros (${payload.byteLength} bytes)`);
    const before = process.memoryUsage().arrayBuffers;
    assert.throws(() => decodeRecords(bombBatch(codec, payload)), (err: unknown) => err instanceof BatchFormatError && /decompresses to more than/.test(err.message), name);
    // snappy and lz4 are refused from their headers; gzip and zstd stop inflating at the bound
    assert.ok(process.memoryUsage().arrayBuffers - before <= MAX_DECOMPRESSED_BATCH_BYTES + 16 * 1024 * 1024, `${name}: memory stays bounded`);
  }
});

/** A v2 batch header (valid CRC) around an arbitrary compressed payload claiming one record. */
function bombBatch(codec: number, payload: Uint8Array): Uint8Array {
  const real = clientBatch('none', 1);
  const header = Buffer.from(real.subarray(0, 61));
  header.writeInt32BE(61 - 12 + payload.byteLength, 8); // batch length
  header.writeInt16BE((header.readInt16BE(21) & ~7) | codec, 21); // attributes: compression
  const batch = Buffer.concat([header, payload]);
  batch.writeUInt32BE(crc32c(batch.subarray(21)), 17);
  return batch;
}

test('SASL messages: random OAUTHBEARER and PLAIN payloads parse or fail with a SASL error', () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.string({ maxLength: 200 }).map((s) => Buffer.from(`n,,\x01auth=Bearer ${s}\x01\x01`)), fc.string({ unit: 'binary', maxLength: 200 }).map((s) => Buffer.from(s))), (bytes) => {
      for (const parse of [parseOauthBearer, parsePlain]) {
        try {
          parse(bytes);
        } catch (err) {
          if (!(err instanceof SaslError)) throw err;
        }
      }
    }),
    { numRuns: fuzzRuns(2000) },
  );
});
