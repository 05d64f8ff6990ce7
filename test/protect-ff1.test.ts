// FF1 (src/protect/ff1.ts) against NIST's published sample vectors (SP 800-38G examples,
// samples 1-9: AES-128/192/256, radix 10 and 36, with and without a tweak), and properties:
// decrypt inverts encrypt, lengths and alphabets are kept, the tweak matters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Ff1, Ff1Error, fromNumerals, toNumerals } from '../src/protect/ff1.ts';
import { luhnValid, PreservingCipher } from '../src/protect/preserve.ts';
import { fuzzRuns } from './helpers/fuzz.ts';

const DIGITS = '0123456789';
const BASE36 = '0123456789abcdefghijklmnopqrstuvwxyz';
const K128 = '2B7E151628AED2A6ABF7158809CF4F3C';
const K192 = `${K128}EF4359D8D580AA4F`;
const K256 = `${K192}7F036D6F04FC6A94`;
const TWEAK10 = '39383736353433323130';
const TWEAK36 = '3737373770717273373737';

const SAMPLES: Array<[number, string, string, string, string, string]> = [
  // sample, key, tweak, alphabet, plaintext, ciphertext
  [1, K128, '', DIGITS, '0123456789', '2433477484'],
  [2, K128, TWEAK10, DIGITS, '0123456789', '6124200773'],
  [3, K128, TWEAK36, BASE36, '0123456789abcdefghi', 'a9tv40mll9kdu509eum'],
  [4, K192, '', DIGITS, '0123456789', '2830668132'],
  [5, K192, TWEAK10, DIGITS, '0123456789', '2496655549'],
  [6, K192, TWEAK36, BASE36, '0123456789abcdefghi', 'xbj3kv35jrawxv32ysr'],
  [7, K256, '', DIGITS, '0123456789', '6657667009'],
  [8, K256, TWEAK10, DIGITS, '0123456789', '1001623463'],
  [9, K256, TWEAK36, BASE36, '0123456789abcdefghi', 'xs8a0azh2avyalyzuwd'],
];

for (const [n, key, tweak, alphabet, pt, ct] of SAMPLES) {
  test(`NIST FF1 sample ${n}: AES-${key.length * 4}, radix ${alphabet.length}${tweak ? ', with a tweak' : ''}`, () => {
    const ff1 = new Ff1(Buffer.from(key, 'hex'), alphabet.length);
    const t = Buffer.from(tweak, 'hex');
    assert.equal(fromNumerals(ff1.encrypt(toNumerals(pt, alphabet), t), alphabet), ct);
    assert.equal(fromNumerals(ff1.decrypt(toNumerals(ct, alphabet), t), alphabet), pt);
  });
}

test('property: decrypt inverts encrypt for every radix and length, the length and radix are kept, the tweak changes the result', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.constantFrom(2, 10, 26, 36, 62, 256, 1000),
      fc.nat({ max: 60 }),
      fc.uint8Array({ maxLength: 40 }),
      fc.integer({ min: 0 }),
      (key, radix, extra, tweak, seed) => {
        const ff1 = new Ff1(key, radix);
        const length = ff1.minLength + extra;
        let s = seed;
        const x = Array.from({ length }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % radix);
        const c = ff1.encrypt(x, tweak);
        assert.equal(c.length, length);
        assert.ok(c.every((d) => Number.isInteger(d) && d >= 0 && d < radix));
        assert.deepEqual(ff1.decrypt(c, tweak), x);
        const other = Uint8Array.from([...tweak, 1]);
        // (a collision is possible in a tiny domain; the domain here is at least 10^6)
        if (length >= 12) assert.notDeepEqual(ff1.encrypt(x, other), c);
      },
    ),
    { numRuns: fuzzRuns(200) },
  );
});

test('inputs outside the domain are refused: too short for the radix, numerals out of range, bad keys', () => {
  const ff1 = new Ff1(Buffer.alloc(16, 7), 10);
  assert.equal(ff1.minLength, 6);
  assert.throws(() => ff1.encrypt([1, 2, 3, 4, 5]), Ff1Error);
  assert.throws(() => ff1.encrypt([1, 2, 3, 4, 5, 10]), Ff1Error);
  assert.throws(() => new Ff1(Buffer.alloc(20), 10), Ff1Error);
  assert.throws(() => new Ff1(Buffer.alloc(16), 1), Ff1Error);
  assert.equal(new Ff1(Buffer.alloc(16), 26).minLength, 5);
  assert.equal(new Ff1(Buffer.alloc(16), 2).minLength, 20);
});

test('format-preserving text: classes and separators stay, keepLast stays in clear, a Luhn-valid card stays Luhn-valid, all reversible', () => {
  const cipher = new PreservingCipher(Buffer.alloc(32, 3));
  const tweak = Buffer.from('rule:pci|$.card');
  const card = '4111-1111-1111-1111';
  const enc = cipher.encrypt(card, tweak);
  assert.match(enc, /^\d{4}-\d{4}-\d{4}-\d{4}$/);
  assert.notEqual(enc, card);
  assert.equal(cipher.decrypt(enc, tweak), card);
  assert.equal(cipher.encrypt(card, tweak), enc, 'deterministic under one tweak: joins keep working');
  assert.notEqual(cipher.encrypt(card, Buffer.from('rule:pci|$.other')), enc, 'another field, another ciphertext');

  const kept = cipher.encrypt(card, tweak, { keepLast: 4 });
  assert.ok(kept.endsWith('-1111'));
  assert.equal(cipher.decrypt(kept, tweak, { keepLast: 4 }), card);

  const luhn = cipher.encrypt('4111 1111 1111 1111', tweak, { luhn: true });
  assert.ok(luhnValid(Array.from(luhn.replace(/\D/g, ''), Number)), luhn);
  assert.equal(cipher.decrypt(luhn, tweak, { luhn: true }), '4111 1111 1111 1111');
  assert.throws(() => cipher.encrypt('4111 1111 1111 1112', tweak, { luhn: true }), /would not be reversible/);

  const mixed = 'Abcdef-123456 xyzQRSTU é';
  const m = cipher.encrypt(mixed, tweak);
  assert.equal(m.length, mixed.length);
  for (let i = 0; i < mixed.length; i++) {
    const [a, b] = [mixed[i]!, m[i]!];
    const cls = (c: string) => (/\d/.test(c) ? 'd' : /[a-z]/.test(c) ? 'l' : /[A-Z]/.test(c) ? 'u' : c);
    assert.equal(cls(b), cls(a), `position ${i}`);
  }
  assert.equal(cipher.decrypt(m, tweak), mixed);
  assert.throws(() => cipher.encrypt('1234', tweak), /FF1 needs at least 6/);
});

test('property: format-preserving encryption round-trips any ASCII-and-more text whose classes are long enough', () => {
  const cipher = new PreservingCipher(Buffer.alloc(16, 9));
  fc.assert(
    fc.property(fc.stringMatching(/^[0-9]{6,20}[ -]?[a-z]{5,12}[A-Z]{5,9}[^0-9a-zA-Z]{0,4}$/), fc.uint8Array({ maxLength: 20 }), (text, tweak) => {
      const enc = cipher.encrypt(text, tweak);
      assert.equal(enc.length, text.length);
      assert.equal(cipher.decrypt(enc, tweak), text);
    }),
    { numRuns: fuzzRuns(200) },
  );
});
