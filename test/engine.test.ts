// The WASM engine as a component: batch ABI, memory growth, instances, workers, SHA-256,
// and the payment-card detector's known cases (run `npm run build:wasm` first).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { WasmEngine } from '../src/inspect/engine.ts';
import { applyMatches, maskText } from '../bench/engine-reference.ts';
import { withLuhn } from '../bench/engine-corpus.ts';
import { changed, detectorRule, enc, mask4, setup, td } from './helpers/inspect.ts';

const cards = setup([detectorRule('payment-card', mask4)]);

function maskOne(s: string): { out: string; hits: number } {
  const { out, hits } = cards.run([s]);
  return { out: out[0]!, hits: hits[0]!.length };
}

/** The expected output per the V8 reference (bytes as latin1). */
function expected(input: Uint8Array): { out: Buffer; hits: number } {
  const text = Buffer.from(input).toString('latin1');
  const m = cards.reference.exactMatches(text);
  return { out: Buffer.from(applyMatches(text, m, (_, t) => maskText(t, 4)), 'latin1'), hits: m.length };
}

test('known card numbers are masked, keeping the last 4 digits and separators', () => {
  const cases: Array<[string, string]> = [
    ['4111111111111111', '************1111'], // Visa
    ['4012888888881881', '************1881'],
    ['4222222222222', '*********2222'], // 13-digit Visa
    ['5555555555554444', '************4444'], // Mastercard
    ['5105105105105100', '************5100'],
    ['2223003122003222', '************3222'], // Mastercard 2-series
    ['378282246310005', '***********0005'], // Amex
    ['3782 822463 10005', '**** ****** *0005'], // Amex 4-6-5
    ['6011111111111117', '************1117'], // Discover
    ['30569309025904', '**********5904'], // Diners, 14 digits
    ['3530111333300000', '************0000'], // JCB
    ['4111 1111 1111 1111', '**** **** **** 1111'],
    ['4111-1111-1111-1111', '****-****-****-1111'],
    ['4111 1111-1111 1111', '**** ****-**** 1111'], // mixed separators allowed
  ];
  for (const [input, want] of cases) assert.deepEqual(maskOne(input), { out: want, hits: 1 }, input);
  const nineteen = withLuhn('62212600000000000'.padEnd(18, '0'));
  assert.equal(nineteen.length, 19);
  assert.deepEqual(maskOne(`n=${nineteen};`), { out: `n=${'*'.repeat(15)}${nineteen.slice(15)};`, hits: 1 });
});

test('cards inside JSON strings and plain text', () => {
  assert.deepEqual(
    maskOne('{"user":"ann","card":"4111 1111 1111 1111","amex":"378282246310005","n":3}'),
    { out: '{"user":"ann","card":"**** **** **** 1111","amex":"***********0005","n":3}', hits: 2 },
  );
  assert.deepEqual(
    maskOne('Paid with 5555-5555-5555-4444, refunded to 4111111111111111.'),
    { out: 'Paid with ****-****-****-4444, refunded to ************1111.', hits: 2 },
  );
  assert.deepEqual(maskOne('4111111111111111\n4111111111111111'), { out: '************1111\n************1111', hits: 2 });
  assert.deepEqual(maskOne('4111111111111111-5555555555554444'), { out: '************1111-************4444', hits: 2 });
});

test('Luhn-invalid numbers, unknown issuers and look-alikes are untouched', () => {
  const untouched = [
    '4111111111111112', '4111 1111 1111 1112', '5555-5555-5555-4445', '378282246310006', '1234567890123456',
    '1700000000000', // epoch milliseconds: no issuer starts with 1
    '9111111111111117', // Luhn-valid, no issuer
    '41111111111111110', // 17 digits: Visa has 13, 16 or 19
    '94111111111111111', // valid card preceded by a digit
    '111111114111111111111111', // 24 digits
    'x4111111111111111', '4111111111111111x', 'A4111111111111111Z',
    '4111  1111 1111 1111', // double space breaks the grouping
    '4111--1111-1111-1111',
    '411111111111', // 12 digits
    '+4111111111111111', // after "+": a phone number
    '3.4111111111111111', // a decimal fraction
    '41111111-1111-1111-8abc-123456789012', // UUID with a Luhn-valid digit prefix
  ];
  for (const s of untouched) assert.deepEqual(maskOne(s), { out: s, hits: 0 }, s);
  // "_" is a boundary for the card detector (id_4111... is masked)
  assert.deepEqual(maskOne('id_4111111111111111'), { out: 'id_************1111', hits: 1 });
});

test('multi-byte UTF-8 around matches is preserved byte-exactly', () => {
  const cases: Array<[string, string]> = [
    ['€4111111111111111日本', '€************1111日本'],
    ['😀 4111-1111-1111-1111 😀', '😀 ****-****-****-1111 😀'],
    ['ñ378282246310005ñ', 'ñ***********0005ñ'],
    ['«4111 1111 1111 1111»', '«**** **** **** 1111»'],
  ];
  for (const [input, want] of cases) assert.equal(maskOne(input).out, want, input);
  // invalid UTF-8 / arbitrary bytes pass through unchanged around a match
  const raw = new Uint8Array([0xff, 0xc3, ...enc('4111111111111111'), 0x80, 0xfe]);
  const r = cards.engine.inspect([raw], 0);
  assert.deepEqual([...r.out.subarray(0, r.outIndex[1])], [0xff, 0xc3, ...enc('************1111'), 0x80, 0xfe]);
});

test('batch of many records with mixed hits; unchanged records are the original objects', () => {
  const inputs: Uint8Array[] = [];
  for (let k = 0; k < 5000; k++) {
    const card = k % 3 === 0 ? ` card ${k % 2 ? '4111 1111 1111 1111' : '5555555555554444'}` : '';
    const twice = k % 15 === 0 ? ' and 378282246310005' : '';
    inputs.push(enc(`{"seq":${k},"note":"record ${k}${card}${twice}","pad":"${'z'.repeat(k % 50)}"}`));
  }
  const r = cards.engine.inspect(inputs, 0);
  assert.equal(r.n, inputs.length);
  for (let k = 0; k < inputs.length; k++) {
    const want = expected(inputs[k]!);
    const expectHits = (k % 3 === 0 ? 1 : 0) + (k % 15 === 0 ? 1 : 0);
    assert.equal(r.hitCount[k], expectHits, `record ${k}`);
    assert.equal(want.hits, expectHits);
    assert.equal(changed(r, k), expectHits > 0);
    if (expectHits > 0) assert.deepEqual(Buffer.from(r.out.subarray(r.outIndex[2 * k]!, r.outIndex[2 * k]! + r.outIndex[2 * k + 1]!)), want.out);
  }
});

test('empty batch, empty and null records', () => {
  const r0 = cards.engine.inspect([], 0);
  assert.equal(r0.n, 0);
  const r = cards.engine.inspect([new Uint8Array(0), null, enc('4111111111111111'), null], 0);
  assert.deepEqual(Array.from(r.hitCount), [0, 0, 1, 0]);
  assert.deepEqual([0, 1, 2, 3].map((i) => changed(r, i)), [false, false, true, false]);
  assert.equal(td.decode(r.out.subarray(r.outIndex[4], r.outIndex[4]! + r.outIndex[5]!)), '************1111');
  const h = cards.engine.sha256([null, new Uint8Array(0)]);
  const empty = createHash('sha256').digest();
  assert.deepEqual(Buffer.from(h[0]!), empty);
  assert.deepEqual(Buffer.from(h[1]!), empty);
});

test('a 2 MiB record (and shrinking back to small batches afterwards)', () => {
  const size = 2 * 1024 * 1024;
  const buf = Buffer.alloc(size, 'lorem ipsum 12 34 dolor ');
  const list = ['4111 1111 1111 1111', '378282246310005', '5555-5555-5555-4444'];
  for (let i = 0; i < 200; i++) buf.write(` ${list[i % 3]!} `, Math.floor((i * (size - 64)) / 200) + (i % 17));
  buf.write(' 4111111111111111', size - 17); // a match ending exactly at the record end
  const r = cards.engine.inspect([buf], 0);
  const want = expected(buf);
  assert.ok(want.hits >= 200);
  assert.equal(r.hitCount[0], want.hits);
  assert.ok(Buffer.from(r.out.subarray(0, r.outIndex[1])).equals(want.out));
  assert.deepEqual(maskOne('x 4111111111111111 y'), { out: 'x ************1111 y', hits: 1 });
});

test('replacements longer than the input grow the output region and retry', () => {
  const long = setup([detectorRule('payment-card', { type: 'redact', replacement: `[card removed: ${'x'.repeat(200)}]` })]);
  const inputs = Array.from({ length: 300 }, (_, i) => `${i} 4111111111111111 5555555555554444 4111-1111-1111-1111`);
  const { out } = long.run(inputs);
  for (let i = 0; i < inputs.length; i++) assert.equal(out[i], `${i} ${Array(3).fill(`[card removed: ${'x'.repeat(200)}]`).join(' ')}`);
});

test('each record names its own ruleset', () => {
  const s = setup([detectorRule('payment-card', mask4), detectorRule('email')], 'text', { rulesets: [{ rules: [1], format: 'text' }, { rules: [], format: 'text' }] });
  const input = enc('4111111111111111 a@example.com');
  const r = s.engine.inspect([input, input, input], [0, 1, 2]);
  const outs = [0, 1, 2].map((i) => (changed(r, i) ? td.decode(r.out.subarray(r.outIndex[2 * i], r.outIndex[2 * i]! + r.outIndex[2 * i + 1]!)) : td.decode(input)));
  assert.deepEqual(outs, ['************1111 [email]', '4111111111111111 [email]', '4111111111111111 a@example.com']);
  assert.throws(() => s.engine.inspect([input], 9), /unknown ruleset/);
});

test('separate engine instances do not share memory', () => {
  const a = WasmEngine.load(cards.program.bytes);
  const b = WasmEngine.load(cards.program.bytes);
  const ra = a.inspect([enc('4111111111111111')], 0);
  b.inspect([enc('5555555555554444'), enc(' '.repeat(200_000))], 0);
  assert.equal(td.decode(ra.out.subarray(0, ra.outIndex[1])), '************1111');
  const again = a.inspect([enc('a 4111111111111111')], 0);
  assert.equal(td.decode(again.out.subarray(0, again.outIndex[1])), 'a ************1111');
});

test('works inside a worker thread', async () => {
  const engineUrl = new URL('../src/inspect/engine.ts', import.meta.url).href;
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(${JSON.stringify(engineUrl)}).then(({ WasmEngine }) => {
      const e = WasmEngine.load(new Uint8Array(workerData));
      const r = e.inspect([new TextEncoder().encode('pay 4111-1111-1111-1111')], 0);
      parentPort.postMessage(new TextDecoder().decode(r.out.subarray(0, r.outIndex[1])));
    });`;
  const w = new Worker(code, { eval: true, workerData: cards.program.bytes });
  const msg = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  await w.terminate();
  assert.equal(msg, 'pay ****-****-****-1111');
});

test('missing wasm file or a foreign program give clear errors', () => {
  assert.throws(() => WasmEngine.load(cards.program.bytes, '/nonexistent/engine.wasm'), /npm run build:wasm/);
  assert.throws(() => WasmEngine.load(new Uint8Array(256)), /rejected the rules program/);
});

// ---- properties ----

const cardToken = fc
  .tuple(fc.constantFrom('4', '51', '37', '6011', '36', '62', '1', '9'), fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 18, maxLength: 18 }), fc.integer({ min: 12, max: 18 }), fc.constantFrom('', ' ', '-'))
  .map(([prefix, ds, n, sep]) => {
    const digits = withLuhn((prefix + ds.join('')).slice(0, n));
    return sep ? digits.replace(/(\d{4})(?=\d)/g, `$1${sep}`) : digits;
  });
const charToken = fc.constantFrom('0', '1', '2', '4', '5', '9', ' ', '-', '.', '+', 'a', 'Z', '_', 'é', '€', '😀', '"', ':', '\n');

test('property: card masking equals the V8 reference (random text with planted cards)', () => {
  const textArb = fc
    .array(fc.oneof({ arbitrary: charToken, weight: 12 }, { arbitrary: cardToken, weight: 1 }), { maxLength: 120 })
    .map((parts) => enc(parts.join('')));
  fc.assert(
    fc.property(fc.array(textArb, { minLength: 1, maxLength: 6 }), (records) => {
      const r = cards.engine.inspect(records, 0);
      for (let k = 0; k < records.length; k++) {
        const want = expected(records[k]!);
        assert.equal(r.hitCount[k], want.hits);
        const got = changed(r, k) ? Buffer.from(r.out.subarray(r.outIndex[2 * k]!, r.outIndex[2 * k]! + r.outIndex[2 * k + 1]!)) : Buffer.from(records[k]!);
        assert.deepEqual(got, want.out);
      }
    }),
    { numRuns: 400 },
  );
});

const sha = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

test('SHA-256 equals node:crypto at block-boundary sizes', () => {
  const sizes = [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 1024, 4096, 65_537, 1 << 20];
  const inputs = sizes.map((n) => randomBytes(n));
  const got = cards.engine.sha256(inputs);
  for (let k = 0; k < sizes.length; k++) assert.deepEqual(Buffer.from(got[k]!), sha(inputs[k]!), `size ${sizes[k]}`);
});

test('property: SHA-256 equals node:crypto for random batches', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 3000, size: 'max' }), { maxLength: 10 }), (records) => {
      const got = cards.engine.sha256(records);
      assert.equal(got.length, records.length);
      for (let k = 0; k < records.length; k++) assert.deepEqual(Buffer.from(got[k]!), sha(records[k]!));
    }),
    { numRuns: 200 },
  );
});
