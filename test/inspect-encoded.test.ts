// Inspection of records still in their wire encoding (src/inspect/encoded.ts): the batches a
// real client encodes (@platformatic/kafka's encoder) go in, masked batches come out, with
// the audit facts; the same on the accept thread and in the pool.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test, after } from 'node:test';
import { crc32c } from '@platformatic/wasm-utils';
import fc from 'fast-check';
import { parseConfig } from '../src/config/load.ts';
import { Inspect } from '../src/controls/inspect.ts';
import { GatewayError, type Operation } from '../src/operation.ts';
import { inspectEncoded, UNCHANGED_HASH, type EncodedResult } from '../src/inspect/encoded.ts';
import { WasmEngine } from '../src/inspect/engine.ts';
import { Inspector } from '../src/inspect/inspector.ts';
import { RuleBook } from '../src/inspect/rules.ts';
import { decodeRecords, streamRecords } from '../src/formats/kafka-batch.ts';
import { clientBatch } from './helpers/batches.ts';
import { fuzzRuns } from './helpers/fuzz.ts';

const MASKED = '**** **** **** 1111';

function config(mode: string, limits = '') {
  return parseConfig(`
listeners: { http: { port: 1 } }
upstream: { kind: ack }
identity: { issuers: [{ issuer: "http://127.0.0.1:1", jwksUri: "http://127.0.0.1:1/jwks", audience: a }] }
policy: { roles: {}, grants: [] }
inspection:
  mode: ${mode}
  ${limits}
  rules:
    - { id: pci.card-number, detector: payment-card, action: { type: mask, keepLast: 4 } }
  topics:
    - { topics: ["t"], format: json, produce: [pci.card-number] }
`).inspection;
}

const book = new RuleBook(config('inline'));
const engine = WasmEngine.load(book.program.bytes);
const ruleset = book.rulesFor('t', 'produce', [])!.ruleset;
const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

function ok(r: ReturnType<typeof inspectEncoded>): EncodedResult {
  assert.ok(!('invalid' in r), 'invalid' in r ? r.invalid : '');
  assert.ok(!('needSchemas' in r), 'no schema values here');
  return r;
}

for (const codec of ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const) {
  test(`${codec}: values masked and re-encoded, hashes of originals and masked values, counts and sizes`, () => {
    // a part of two batches with cards, and a part without any card (kept as it was)
    const cards = Buffer.concat([clientBatch(codec, 3), clientBatch(codec, 2, 3)]);
    const r = ok(inspectEncoded(engine, { format: 'kafka', parts: [cards, new Uint8Array(0)], ruleset }));
    assert.deepEqual(r.counts, [5, 0]);
    assert.equal(r.parts[1], null, 'a part without changes is forwarded as it was');
    const out = streamRecords(decodeRecords(r.parts[0]!), 0);
    const before = streamRecords(decodeRecords(cards), 0);
    assert.equal(out.length, 5);
    out.forEach((rec, i) => {
      assert.equal(Buffer.from(rec.value!).toString(), `{"card":"${MASKED}","i":${i}}`);
      assert.deepEqual(rec.key, before[i]!.key);
      assert.deepEqual(rec.headers, before[i]!.headers);
      assert.equal(r.hashes.slice(64 * i, 64 * i + 64), sha(before[i]!.value!));
      assert.equal(r.maskedHashes.slice(64 * i, 64 * i + 64), sha(rec.value!));
      assert.equal(r.sizes[i], before[i]!.value!.byteLength + before[i]!.key!.byteLength);
    });
  });
}

test('unchanged records keep their part; a truncated tail makes the part re-encoded without it', () => {
  // ruleset 0: no rules, the records are only hashed
  const unchanged = ok(inspectEncoded(engine, { format: 'kafka', parts: [clientBatch('lz4', 2)], ruleset: 0 }));
  assert.deepEqual(unchanged.parts, [null]);
  assert.equal(unchanged.maskedHashes, UNCHANGED_HASH.repeat(2));
  const withTail = Buffer.concat([clientBatch('lz4', 2), clientBatch('none', 2).subarray(0, 40)]);
  const r = ok(inspectEncoded(engine, { format: 'kafka', parts: [withTail], ruleset: 0 }));
  assert.ok(r.parts[0], 'a part with a partial batch is re-encoded');
  const again = decodeRecords(r.parts[0]!);
  assert.equal(again.truncated, 0, 'and the partial batch is gone');
  assert.equal(streamRecords(again, 0).length, 2);
});

test('a corrupt batch or a compression bomb is reported as invalid, not thrown', () => {
  const corrupt = clientBatch('none', 2);
  corrupt[corrupt.length - 1]! ^= 1;
  const r = inspectEncoded(engine, { format: 'kafka', parts: [corrupt], ruleset });
  assert.ok('invalid' in r && /CRC/.test(r.invalid));
});

const inspectors: Inspector[] = [];
after(() => Promise.all(inspectors.map((i) => i.close())));

test('the pool and the accept thread give the same result; undecodable records are refused as invalid', async () => {
  const parts = [Buffer.concat([clientBatch('lz4', 40), clientBatch('gzip', 7, 40)]), clientBatch('zstd', 3, 47)];
  const results = [];
  for (const mode of ['inline', 'pool'] as const) {
    const inspector = new Inspector(config(mode), book.program);
    inspectors.push(inspector);
    await inspector.warmUp();
    const { result, where } = await inspector.inspectEncoded({ format: 'kafka', parts, ruleset }, 1_000_000);
    assert.equal(where, mode);
    results.push(result);
    const corrupt = clientBatch('none', 2);
    corrupt[70]! ^= 1;
    await assert.rejects(inspector.inspectEncoded({ format: 'kafka', parts: [corrupt], ruleset }, 1_000_000), (err: Error & { kind?: string }) => err.kind === 'invalid' && /cannot be read/.test(err.message));
  }
  const [inline, pool] = results as [EncodedResult, EncodedResult];
  assert.deepEqual(pool.counts, inline.counts);
  assert.equal(pool.hashes, inline.hashes);
  assert.equal(pool.maskedHashes, inline.maskedHashes);
  assert.deepEqual([...pool.flags], [...inline.flags]);
  pool.parts.forEach((p, k) => assert.deepEqual(p && Buffer.from(p), inline.parts[k] && Buffer.from(inline.parts[k]!)));
});

function encodedOp(parts: Uint8Array[]): Operation {
  return {
    id: 'op', receivedAt: 0, startedAt: 0, protocol: 'kafka', action: 'produce', meta: {},
    session: { id: 's', protocol: 'kafka', client: { address: '127.0.0.1' }, startedAt: 0 },
    resource: { kind: 'topic', name: 't' },
    identity: { subject: 'u', issuer: 'i', roles: [], groups: [], claims: {} },
    encoded: { format: 'kafka', parts, partitions: parts.map((_p, k) => k), decodedBytes: 100 },
  };
}

test('the inspect control on encoded records: parts replaced, audit facts set, size limits refuse naming the record', async () => {
  const cfg = config('inline');
  const inspector = new Inspector(cfg, book.program);
  inspectors.push(inspector);
  const control = () => new Inspect(inspector, () => book, () => cfg.limits);
  const parts = [clientBatch('lz4', 3), clientBatch('zstd', 2, 3)];
  const op = encodedOp([...parts]);
  let forwarded = false;
  await control().handle(op, async () => {
    forwarded = true;
    return {};
  });
  assert.ok(forwarded);
  assert.deepEqual(op.encoded!.changed, [true, true]);
  assert.deepEqual(op.encoded!.counts, [3, 2]);
  assert.notEqual(op.encoded!.parts[0], parts[0]);
  assert.equal(Buffer.from(streamRecords(decodeRecords(op.encoded!.parts[1]!), 1)[1]!.value!).toString(), `{"card":"${MASKED}","i":4}`);
  assert.equal(op.batch?.records, 5);
  assert.equal(op.inspection?.hashes.length, 5);
  assert.equal(op.inspection?.maskedHashes.filter((h) => h !== null).length, 5);
  assert.deepEqual(op.inspection?.masking, { 'pci.card-number': 5 });

  // records 0-2 hold 38 key + value bytes, record 3 ('k100', '..."i":100}') 42: a 40-byte limit names record 3
  const small = config('inline', 'limits: { maxRecordBytes: 40 }');
  const strict = new RuleBook(small);
  const big = encodedOp([clientBatch('none', 3), clientBatch('none', 1, 100)]);
  await assert.rejects(
    new Inspect(inspector, () => strict, () => small.limits).handle(big, async () => ({})),
    (err: unknown) => err instanceof GatewayError && err.kind === 'too-large' && /^record 3 is 42 bytes/.test(err.message) && err.rule === 'limits.maxRecordBytes',
  );
  assert.deepEqual(big.encoded!.counts, [3, 1], 'the listener maps record 3 to partition 1, index 0');
});

test('fuzz: mutated batches with a valid CRC come back inspected or invalid, never as an exception', () => {
  // the CRC is recomputed after mutating, so the bytes reach the decompressors and the record parser
  fc.assert(
    fc.property(
      fc.constantFrom('none', 'gzip', 'snappy', 'lz4', 'zstd'),
      fc.integer({ min: 1, max: 12 }),
      fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 6 }),
      fc.boolean(),
      (codec, n, flips, tail) => {
        const batch = Buffer.from(clientBatch(codec as 'none', n));
        // past the CRC field (and, most of the time, past the header into the records)
        for (const [at, value] of flips) batch[21 + (at % (batch.length - 21))] = value;
        batch.writeUInt32BE(crc32c(batch.subarray(21)), 17);
        const blob = tail ? Buffer.concat([batch, batch.subarray(0, 30)]) : batch;
        const r = inspectEncoded(engine, { format: 'kafka', parts: [blob], ruleset });
        if ('invalid' in r) return;
        for (const p of ok(r).parts) if (p) decodeRecords(p); // what goes on decodes again
      },
    ),
    { numRuns: fuzzRuns(400) },
  );
});
