// A keyring kept in a file (`inspection.protection.keyring`), managed by `streamgate keys`:
// each version's secret is wrapped (AES-256-GCM) by a key-encryption key that lives elsewhere
// (the environment or another file), so the file alone, a backup or a copy of it, reveals
// nothing. Rotating adds a version and makes it active; retiring removes one, which makes what
// it encrypted unreadable for good. Writes are atomic (a temporary file renamed over the old
// one), so a gateway watching the file never reads half of it.

import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { KeyringSecret } from './keyring.ts';

export const KEYRING_FORMAT = 'streamgate-keyring/1';

export interface KeyringFileEntry {
  version: number;
  created: string;
  /** base64url(nonce | AES-256-GCM(kek, secret) | tag), bound to the version */
  wrapped: string;
}

export interface KeyringFile {
  format: typeof KEYRING_FORMAT;
  active: number;
  keys: KeyringFileEntry[];
}

export class KeyringFileError extends Error {
  override name = 'KeyringFileError';
}

/** The AES key that wraps the secrets, from the configured key-encryption secret (at least 32 characters). */
function kekKey(kek: string): Buffer {
  if (kek.length < 32) throw new KeyringFileError('the key-encryption key needs at least 32 characters (openssl rand -base64 32)');
  return Buffer.from(hkdfSync('sha256', kek, 'streamgate/keyring/v1', 'kek', 32));
}

const aad = (version: number) => Buffer.from(`${KEYRING_FORMAT}|v${version}`);

function wrap(kek: Buffer, version: number, secret: string): string {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', kek, nonce).setAAD(aad(version));
  return Buffer.concat([nonce, c.update(secret, 'utf8'), c.final(), c.getAuthTag()]).toString('base64url');
}

function unwrap(kek: Buffer, entry: KeyringFileEntry): string {
  const body = Buffer.from(entry.wrapped, 'base64url');
  const d = createDecipheriv('aes-256-gcm', kek, body.subarray(0, 12)).setAAD(aad(entry.version));
  d.setAuthTag(body.subarray(body.length - 16));
  try {
    return Buffer.concat([d.update(body.subarray(12, body.length - 16)), d.final()]).toString('utf8');
  } catch {
    throw new KeyringFileError(`key version ${entry.version} does not unwrap: wrong key-encryption key, or the file was changed`);
  }
}

function parse(file: string): KeyringFile {
  let data: KeyringFile;
  try {
    data = JSON.parse(readFileSync(file, 'utf8')) as KeyringFile;
  } catch (err) {
    throw new KeyringFileError(`${file}: cannot read the keyring: ${(err as Error).message}`);
  }
  const valid = data?.format === KEYRING_FORMAT && Number.isInteger(data.active) && Array.isArray(data.keys)
    && data.keys.every((k) => Number.isInteger(k?.version) && k.version >= 1 && k.version <= 65535 && typeof k.wrapped === 'string');
  if (!valid) throw new KeyringFileError(`${file}: not a ${KEYRING_FORMAT} keyring`);
  return data;
}

function write(file: string, data: KeyringFile): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

/** The versions and secrets of a keyring file, unwrapped with `kek`. */
export function readKeyring(file: string, kek: string): { active: number; keys: KeyringSecret[] } {
  const data = parse(file);
  const key = kekKey(kek);
  return { active: data.active, keys: data.keys.map((k) => ({ version: k.version, secret: unwrap(key, k) })) };
}

/** What a keyring file holds without unwrapping anything (for `keys status`). */
export function describeKeyring(file: string): { active: number; keys: Array<{ version: number; created: string }> } {
  const data = parse(file);
  return { active: data.active, keys: data.keys.map(({ version, created }) => ({ version, created })) };
}

/** A new keyring file with version 1 active; refuses to overwrite one. */
export function createKeyring(file: string, kek: string): number {
  const key = kekKey(kek);
  const data: KeyringFile = { format: KEYRING_FORMAT, active: 1, keys: [{ version: 1, created: new Date().toISOString(), wrapped: wrap(key, 1, randomBytes(32).toString('base64url')) }] };
  try {
    writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    throw new KeyringFileError(`${file}: ${(err as NodeJS.ErrnoException).code === 'EEXIST' ? 'a keyring is already there' : (err as Error).message}`);
  }
  return 1;
}

/** Adds a version with a fresh random secret and makes it active; returns it. */
export function rotateKeyring(file: string, kek: string): number {
  const data = parse(file);
  const key = kekKey(kek);
  // the existing versions must unwrap with this key-encryption key, or the file would mix keys
  for (const k of data.keys) unwrap(key, k);
  const version = Math.max(0, ...data.keys.map((k) => k.version)) + 1;
  if (version > 65535) throw new KeyringFileError('key versions end at 65535');
  data.keys.push({ version, created: new Date().toISOString(), wrapped: wrap(key, version, randomBytes(32).toString('base64url')) });
  data.active = version;
  write(file, data);
  return version;
}

/** Removes `version` for good (what it encrypted becomes unreadable); the active version cannot be retired. */
export function retireKeyVersion(file: string, version: number): void {
  const data = parse(file);
  if (version === data.active) throw new KeyringFileError(`version ${version} is active: rotate first`);
  if (!data.keys.some((k) => k.version === version)) throw new KeyringFileError(`version ${version} is not in the keyring`);
  data.keys = data.keys.filter((k) => k.version !== version);
  write(file, data);
}
