import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKeyring, readKeyring, retireKeyVersion, rotateKeyring } from '../src/protect/keyring-file.ts';
import { Keyring } from '../src/protect/keyring.ts';

// The keyring file (src/protect/keyring-file.ts): wrapped secrets, rotation, retirement, and the
// refusals that keep a wrong key-encryption key or an edited file from producing keys.

const KEK = 'unit-test-key-encryption-key-0123456789';

test('a keyring file rotates and retires; the secrets only unwrap with its key-encryption key and its own entries', () => {
  const file = join(mkdtempSync(join(tmpdir(), 'sg-ring-')), 'ring.json');
  createKeyring(file, KEK);
  assert.equal(rotateKeyring(file, KEK), 2);
  const ring = readKeyring(file, KEK);
  assert.equal(ring.active, 2);
  assert.deepEqual(ring.keys.map((k) => k.version), [1, 2]);
  assert.notEqual(ring.keys[0]!.secret, ring.keys[1]!.secret);
  assert.throws(() => readKeyring(file, 'another-key-encryption-key-0123456789'), /does not unwrap: wrong key-encryption key/);
  assert.throws(() => rotateKeyring(file, 'another-key-encryption-key-0123456789'), /does not unwrap/);
  assert.throws(() => readKeyring(file, 'short'), /at least 32 characters/);
  // an entry moved to another version does not unwrap (the version is bound to its secret)
  const data = JSON.parse(readFileSync(file, 'utf8'));
  const swapped = { ...data, keys: [{ ...data.keys[0], version: 2 }, { ...data.keys[1], version: 1 }] };
  const other = `${file}.swapped`;
  writeFileSync(other, JSON.stringify(swapped));
  assert.throws(() => readKeyring(other, KEK), /does not unwrap/);
  writeFileSync(other, '{"format":"something-else"}');
  assert.throws(() => readKeyring(other, KEK), /not a streamgate-keyring\/1 keyring/);
  assert.throws(() => retireKeyVersion(file, 2), /is active: rotate first/);
  retireKeyVersion(file, 1);
  assert.deepEqual(readKeyring(file, KEK).keys.map((k) => k.version), [2]);
  // the same secrets give the same keys (HKDF), so every instance and worker agrees
  const a = Keyring.fromSecrets(readKeyring(file, KEK).keys);
  const b = Keyring.fromTransfer(a.transfer);
  const tweak = Buffer.from('t');
  assert.equal(b.preserving(2)!.decrypt(a.preserving(2)!.encrypt('4111111111111111', tweak), tweak), '4111111111111111');
  assert.equal(a.preserving(1), undefined);
});
