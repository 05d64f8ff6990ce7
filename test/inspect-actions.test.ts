// Actions: redact, mask, hash, tokenize (token and format-preserving, key versions), drop, block.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { FLAG_BLOCKED } from '../src/inspect/engine.ts';
import { detectorRule, redact, setup } from './helpers/inspect.ts';

const key = (version: number, secret: string) => ({ version, secret: new TextEncoder().encode(secret) });
const K1 = 'first-key-0123456789';
const K2 = 'second-key-abcdefghij';
const tokenOf = (secret: string, version: number, value: string) =>
  `tok_v${version}_${createHmac('sha256', secret).update(value).digest().subarray(0, 16).toString('base64url')}`;

test('hash: lowercase hex SHA-256 of the value, optionally truncated', () => {
  const s = setup([detectorRule('email', { type: 'hash', length: 64 }), detectorRule('us-ssn', { type: 'hash', length: 12 })]);
  const sha = (v: string) => createHash('sha256').update(v).digest('hex');
  assert.equal(s.one('to ann@example.com, ssn 123-45-6789'), `to ${sha('ann@example.com')}, ssn ${sha('123-45-6789').slice(0, 12)}`);
});

test('tokenize: HMAC-SHA256 with the active key, equal values give equal tokens everywhere', () => {
  const rules = [detectorRule('email', { type: 'tokenize', format: 'token', keepLast: 0, prefix: 'tok_' })];
  const text = setup(rules, 'text', { keys: [key(1, K1)] });
  const json = setup(rules, 'json', { keys: [key(1, K1)] });
  const want = tokenOf(K1, 1, 'ann@example.com');
  assert.equal(text.one('mail ann@example.com and ann@example.com'), `mail ${want} and ${want}`);
  // the same value as a JSON string (escaped there) yields the same token: joins downstream still work
  assert.equal(json.one('{"to":"ann@example\\u002ecom"}'), `{"to":"${want}"}`);
  assert.notEqual(text.one('bob@example.com'), want);
});

test('tokenize: rotating the key changes new tokens and the token names its key version', () => {
  const rules = [detectorRule('email', { type: 'tokenize', format: 'token', keepLast: 0, prefix: 'tok_' })];
  const v1 = setup(rules, 'text', { keys: [key(1, K1), key(2, K2)], active: 1 });
  const v2 = setup(rules, 'text', { keys: [key(1, K1), key(2, K2)] }); // default: the highest version
  assert.equal(v1.one('ann@example.com'), tokenOf(K1, 1, 'ann@example.com'));
  assert.equal(v2.one('ann@example.com'), tokenOf(K2, 2, 'ann@example.com'));
  assert.ok(!v1.program.version.includes(K1) && !JSON.stringify(v1.program.stats).includes(K1));
  assert.equal(Buffer.from(v1.program.bytes).includes(Buffer.from(K1)), true, 'the key is in the program (workers need it), nowhere else');
});

test('tokenize preserve: digits stay digits, separators and the last digits stay, deterministic, version in the first digit', () => {
  const rules = [detectorRule('payment-card', { type: 'tokenize', format: 'preserve', keepLast: 4, prefix: '' })];
  const s = setup(rules, 'text', { keys: [key(7, K1)] });
  const a = s.one('4111 1111 1111 1111');
  assert.match(a, /^7\d{3} \d{4} \d{4} 1111$/);
  assert.notEqual(a, '4111 1111 1111 1111');
  assert.equal(s.one('4111 1111 1111 1111'), a, 'deterministic');
  assert.notEqual(s.one('5555 5555 5555 4444').slice(0, 14), a.slice(0, 14));
  const long = setup([{ id: 'digits', match: { pattern: '\\d{40,80}' }, fields: null, action: { type: 'tokenize', format: 'preserve', keepLast: 0, prefix: '' } }], 'text', { keys: [key(3, K1)] });
  const t = long.one('1'.repeat(80));
  assert.match(t, /^3\d{79}$/, 'more than one HMAC worth of digits');
  assert.ok(new Set(t).size > 5);
});

test('mask keeps the first/last characters asked for and all separators', () => {
  const s = setup([detectorRule('iban', { type: 'mask', keepLast: 4, keepFirst: 2, char: 'x' }), detectorRule('email', { type: 'mask', keepLast: 0, keepFirst: 1, char: '*' })]);
  assert.equal(s.one('DE89 3704 0044 0532 0130 00 / ann.lee@example.com'), 'DExx xxxx xxxx xxxx xx30 00 / a**.***@*******.***');
});

test('block refuses the record: no output, the rule named; other records of the batch are unaffected', () => {
  const s = setup([detectorRule('pem-private-key', { type: 'block', reason: 'no private keys' }), detectorRule('email', redact('[e]'))], 'auto');
  const pem = '-----BEGIN EC PRIVATE KEY-----\\nMHcCAQEE\\n-----END EC PRIVATE KEY-----';
  const { r, out } = s.run([`{"k":"${pem}"}`, 'ann@example.com', `text ${pem.replaceAll('\\n', '\n')} and ann@example.com`]);
  assert.ok(r.flags[0]! & FLAG_BLOCKED);
  assert.equal(r.stopRule[0], 0);
  assert.equal(out[1], '[e]');
  assert.ok(r.flags[2]! & FLAG_BLOCKED);
});
