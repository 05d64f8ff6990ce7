// WASM inspection engine v0: card masking + SHA-256 (run `npm run build:wasm` first).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { WasmEngine } from '../src/inspect/engine.ts';

const te = new TextEncoder();
const td = new TextDecoder();
const enc = (s: string): Uint8Array => te.encode(s);

const engine = WasmEngine.load();

function maskOne(s: string): { out: string; hits: number } {
  const r = engine.inspect([enc(s)]);
  return { out: td.decode(r.payloads[0]!), hits: r.hits[0]! };
}

// ---- reference implementation (plain TS, written for clarity, not speed) ----

const isDigit = (c: number | undefined): boolean => c !== undefined && c >= 0x30 && c <= 0x39;
const isWord = (c: number | undefined): boolean =>
  c !== undefined && (isDigit(c) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a));

function luhn(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 1) { d *= 2; if (d > 9) d -= 9; }
    sum += d;
  }
  return sum % 10 === 0;
}

function refMask(input: Uint8Array): { out: Uint8Array; hits: number } {
  const out = Uint8Array.from(input);
  const len = input.length;
  let hits = 0;
  let s = 0;
  while (s < len) {
    if (!isDigit(input[s]) || (s > 0 && isWord(input[s - 1]))) { s++; continue; }
    // Positions of the digits reachable from s (single ' '/'-' between digits), max 19.
    const pos = [s];
    let i = s + 1;
    while (pos.length < 19) {
      if (isDigit(input[i])) { pos.push(i); i++; }
      else if ((input[i] === 0x20 || input[i] === 0x2d) && isDigit(input[i + 1])) { pos.push(i + 1); i += 2; }
      else break;
    }
    let best = 0;
    for (let k = 13; k <= pos.length; k++) {
      const end = pos[k - 1]! + 1;
      if (isWord(input[end])) continue;
      const digits = pos.slice(0, k).map((q) => String.fromCharCode(input[q]!)).join('');
      if (luhn(digits)) best = k;
    }
    if (best === 0) { s++; continue; }
    for (let k = 0; k < best - 4; k++) out[pos[k]!] = 0x2a;
    hits++;
    s = pos[best - 1]! + 1;
  }
  return { out, hits };
}

/** Appends the Luhn check digit to a digit string. */
function withCheck(prefix: string): string {
  for (let c = 0; c < 10; c++) if (luhn(prefix + c)) return prefix + c;
  throw new Error('unreachable');
}

// ---- known cards ----

test('known card numbers are masked, keeping the last 4 digits and separators', () => {
  const cases: Array<[string, string]> = [
    ['4111111111111111', '************1111'], // Visa
    ['4012888888881881', '************1881'],
    ['4222222222222', '*********2222'], // 13-digit Visa
    ['5555555555554444', '************4444'], // Mastercard
    ['5105105105105100', '************5100'],
    ['2223003122003222', '************3222'], // Mastercard 2-series
    ['378282246310005', '***********0005'], // Amex
    ['3782 822463 10005', '**** ****** *0005'],
    ['6011111111111117', '************1117'], // Discover
    ['30569309025904', '**********5904'], // Diners, 14 digits
    ['4111 1111 1111 1111', '**** **** **** 1111'],
    ['4111-1111-1111-1111', '****-****-****-1111'],
    ['4111 1111-1111 1111', '**** ****-**** 1111'], // mixed separators allowed
  ];
  for (const [input, want] of cases) {
    assert.deepEqual(maskOne(input), { out: want, hits: 1 }, input);
  }
  const nineteen = withCheck('622126000000000001'.slice(0, 18));
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
  // Adjacent cards joined by one separator: the first candidate takes 16 digits, the second starts after '-'.
  assert.deepEqual(maskOne('4111111111111111-5555555555554444'), { out: '************1111-************4444', hits: 2 });
});

test('Luhn-invalid numbers are untouched', () => {
  for (const s of ['4111111111111112', '4111 1111 1111 1112', '5555-5555-5555-4445', '378282246310006', '1234567890123456']) {
    assert.deepEqual(maskOne(s), { out: s, hits: 0 }, s);
  }
});

test('digits inside longer runs or alphanumerics are untouched', () => {
  const untouched = [
    '41111111111111110', // 17 digits, not Luhn-valid as a whole, no boundary inside
    '94111111111111111', // valid card preceded by a digit (the 17-digit run fails Luhn)
    '111111114111111111111111', // 24 digits
    '9994111111111111111999',
    'x4111111111111111',
    '4111111111111111x',
    'A4111111111111111Z',
    '4111111111111111111111', // 22 digits
    '4111  1111 1111 1111', // double space breaks the group: 12 digits remain
    '4111--1111-1111-1111',
    '411111111111', // 12 digits: too short
  ];
  for (const s of untouched) assert.deepEqual(maskOne(s), { out: s, hits: 0 }, s);
  // Only ASCII letters/digits are word characters: '_' and punctuation are boundaries.
  assert.deepEqual(maskOne('id_4111111111111111'), { out: 'id_************1111', hits: 1 });
});

test('multi-byte UTF-8 around matches is preserved byte-exactly', () => {
  const cases: Array<[string, string]> = [
    ['€4111111111111111日本', '€************1111日本'],
    ['😀 4111-1111-1111-1111 😀', '😀 ****-****-****-1111 😀'],
    ['ñ378282246310005ñ', 'ñ***********0005ñ'],
    ['«4111 1111 1111 1111»', '«**** **** **** 1111»'],
  ];
  for (const [input, want] of cases) {
    const r = engine.inspect([enc(input)]);
    assert.equal(Buffer.compare(Buffer.from(r.payloads[0]!), Buffer.from(enc(want))), 0, input);
    assert.equal(r.payloads[0]!.length, enc(input).length);
  }
  // Invalid UTF-8 / arbitrary bytes pass through unchanged around a match.
  const raw = new Uint8Array([0xff, 0xc3, ...enc('4111111111111111'), 0x80, 0xfe]);
  const r = engine.inspect([raw]);
  assert.deepEqual([...r.payloads[0]!], [0xff, 0xc3, ...enc('************1111'), 0x80, 0xfe]);
});

test('batch of many records with mixed hits; unchanged records are the original objects', () => {
  const inputs: Uint8Array[] = [];
  for (let k = 0; k < 5000; k++) {
    const card = k % 3 === 0 ? ` card ${k % 2 ? '4111 1111 1111 1111' : '5555555555554444'}` : '';
    const twice = k % 15 === 0 ? ' and 378282246310005' : '';
    inputs.push(enc(`{"seq":${k},"note":"record ${k}${card}${twice}","pad":"${'z'.repeat(k % 50)}"}`));
  }
  const r = engine.inspect(inputs);
  assert.equal(r.payloads.length, inputs.length);
  for (let k = 0; k < inputs.length; k++) {
    const want = refMask(inputs[k]!);
    const expectHits = (k % 3 === 0 ? 1 : 0) + (k % 15 === 0 ? 1 : 0);
    assert.equal(r.hits[k], expectHits, `record ${k}`);
    assert.equal(want.hits, expectHits);
    assert.equal(r.changed[k], expectHits > 0);
    assert.deepEqual(r.payloads[k], want.out);
    if (expectHits === 0) assert.equal(r.payloads[k], inputs[k], 'unchanged record must not be copied');
  }
});

test('empty batch, empty and null records', () => {
  assert.deepEqual(engine.inspect([]), { payloads: [], hits: [], changed: [] });
  const card = enc('4111111111111111');
  const r = engine.inspect([new Uint8Array(0), null, card, null]);
  assert.deepEqual(r.hits, [0, 0, 1, 0]);
  assert.deepEqual(r.changed, [false, false, true, false]);
  assert.equal(r.payloads[1]!.length, 0);
  assert.equal(td.decode(r.payloads[2]!), '************1111');
  const h = engine.sha256([null, new Uint8Array(0)]);
  const empty = createHash('sha256').digest();
  assert.deepEqual(Buffer.from(h[0]!), empty);
  assert.deepEqual(Buffer.from(h[1]!), empty);
});

test('a 2 MiB record (and shrinking back to small batches afterwards)', () => {
  const size = 2 * 1024 * 1024;
  const buf = Buffer.alloc(size, 'lorem ipsum 12 34 dolor ');
  const cards = ['4111 1111 1111 1111', '378282246310005', '5555-5555-5555-4444'];
  const at: number[] = [];
  for (let i = 0; i < 200; i++) {
    const pos = Math.floor((i * (size - 64)) / 200) + (i % 17);
    const card = cards[i % 3]!;
    buf.write(` ${card} `, pos);
    at.push(pos);
  }
  buf.write(' 4111111111111111', size - 17); // a match ending exactly at the record end
  const r = engine.inspect([buf]);
  const want = refMask(buf);
  assert.ok(want.hits >= 200);
  assert.equal(r.hits[0], want.hits);
  assert.ok(Buffer.from(r.payloads[0]!).equals(Buffer.from(want.out)));
  assert.equal(td.decode(r.payloads[0]!.subarray(size - 17)), ' ************1111');
  // Regions stay big, and small batches still work after the re-layout.
  assert.deepEqual(maskOne('x 4111111111111111 y'), { out: 'x ************1111 y', hits: 1 });
});

test('separate engine instances do not share memory', () => {
  const a = WasmEngine.load();
  const b = WasmEngine.load();
  const ra = a.inspect([enc('4111111111111111')]);
  b.inspect([enc('5555555555554444'), enc(' '.repeat(200_000))]);
  assert.equal(td.decode(ra.payloads[0]!), '************1111');
  assert.equal(td.decode(a.inspect([enc('a 4111111111111111')]).payloads[0]!), 'a ************1111');
});

test('works inside a worker thread', async () => {
  const engineUrl = new URL('../src/inspect/engine.ts', import.meta.url).href;
  const code = `
    const { parentPort } = require('node:worker_threads');
    import(${JSON.stringify(engineUrl)}).then(({ WasmEngine }) => {
      const e = WasmEngine.load();
      const r = e.inspect([new TextEncoder().encode('pay 4111-1111-1111-1111')]);
      parentPort.postMessage(new TextDecoder().decode(r.payloads[0]));
    });`;
  const w = new Worker(code, { eval: true });
  const msg = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  await w.terminate();
  assert.equal(msg, 'pay ****-****-****-1111');
});

test('missing wasm file gives a clear error', () => {
  assert.throws(() => WasmEngine.load('/nonexistent/engine.wasm'), /npm run build:wasm/);
});

// ---- properties ----

const cardToken = fc
  .tuple(
    fc.integer({ min: 12, max: 18 }),
    fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 18, maxLength: 18 }),
    fc.constantFrom('', ' ', '-'),
    fc.integer({ min: 3, max: 6 }),
  )
  .map(([n, ds, sep, group]) => {
    const digits = withCheck(ds.slice(0, n).join(''));
    let s = '';
    for (let i = 0; i < digits.length; i++) s += (i > 0 && i % group === 0 ? sep : '') + digits[i];
    return s;
  });

const charToken = fc.constantFrom(
  '0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
  ' ', '-', 'a', 'Z', 'é', '€', '😀', '"', ':', '_', '\n',
);

const textArb = fc
  .array(fc.oneof({ arbitrary: charToken, weight: 20 }, { arbitrary: cardToken, weight: 1 }), { maxLength: 200, size: 'large' })
  .map((parts) => enc(parts.join('')));

test('property: masking equals the reference implementation', () => {
  fc.assert(
    fc.property(fc.array(textArb, { minLength: 1, maxLength: 8 }), (records) => {
      const r = engine.inspect(records);
      for (let k = 0; k < records.length; k++) {
        const want = refMask(records[k]!);
        assert.equal(r.hits[k], want.hits);
        assert.equal(r.changed[k], want.hits > 0);
        assert.deepEqual(r.payloads[k], want.out);
      }
    }),
    { numRuns: 3000 },
  );
});

test('property: digit-heavy strings equal the reference (dense candidates)', () => {
  const dense = fc
    .array(fc.constantFrom('1', '4', '7', '0', ' ', '-', 'x', 'é'), { maxLength: 120, size: 'large' })
    .map((cs) => enc(cs.join('')));
  fc.assert(
    fc.property(dense, (rec) => {
      const r = engine.inspect([rec]);
      const want = refMask(rec);
      assert.equal(r.hits[0], want.hits);
      assert.deepEqual(r.payloads[0], want.out);
    }),
    { numRuns: 5000 },
  );
});

const sha = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

test('SHA-256 equals node:crypto at block-boundary sizes', () => {
  const sizes = [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 1024, 4096, 65_537, 1 << 20];
  const inputs = sizes.map((n) => randomBytes(n));
  const got = engine.sha256(inputs);
  for (let k = 0; k < sizes.length; k++) assert.deepEqual(Buffer.from(got[k]!), sha(inputs[k]!), `size ${sizes[k]}`);
});

test('property: SHA-256 equals node:crypto for random batches', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 3000, size: 'max' }), { maxLength: 10 }), (records) => {
      const got = engine.sha256(records);
      assert.equal(got.length, records.length);
      for (let k = 0; k < records.length; k++) assert.deepEqual(Buffer.from(got[k]!), sha(records[k]!));
    }),
    { numRuns: 500 },
  );
});
