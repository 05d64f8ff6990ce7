import { existsSync, readFileSync } from 'node:fs';
import { CompactEncrypt, compactDecrypt, decodeProtectedHeader, importPKCS8, importSPKI, base64url } from 'jose';
import type { RawRecordingConfig } from './schema.ts';

/**
 * Raw (pre-masking) payloads are JWE compact strings: `dir` + A256GCM with a shared 256-bit
 * key, or ECDH-ES + A256GCM to a public key (the gateway can then write but never read them).
 * Each JWE header carries the key id, so a reader knows which key a payload needs.
 */
export const RAW_ENC = 'A256GCM';

type Key = Awaited<ReturnType<typeof importSPKI>> | Uint8Array;

function pemText(value: string): string {
  // a PEM given inline (e.g. from ${RECORDING_PUBLIC_KEY}) or a file path
  if (value.includes('-----BEGIN')) return value;
  if (existsSync(value)) return readFileSync(value, 'utf8');
  throw new Error(`recording key: "${value.slice(0, 40)}" is neither a PEM key nor a readable file`);
}

function secretKey(value: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = base64url.decode(value.trim());
  } catch {
    bytes = new Uint8Array(0);
  }
  if (bytes.byteLength !== 32) throw new Error(`recording key: a dir/A256GCM key is 32 bytes of base64url (got ${bytes.byteLength} bytes)`);
  return bytes;
}

function aesKey(bytes: Uint8Array): Promise<Key> {
  return crypto.subtle.importKey('raw', bytes, 'AES-GCM', false, ['encrypt', 'decrypt']);
}

export class RawSealer {
  readonly kid: string;
  readonly alg: 'dir' | 'ECDH-ES';
  readonly #key: Promise<Key>;

  constructor(config: RawRecordingConfig) {
    this.kid = config.kid;
    this.alg = config.alg;
    // errors surface at start (warmUp), not at the first record; the AES key is imported once
    // (jose would import raw bytes again for every payload: ~30% of the cost of a seal)
    this.#key = config.alg === 'dir' ? aesKey(secretKey(config.key)) : importSPKI(pemText(config.key), 'ECDH-ES');
  }

  async warmUp(): Promise<void> {
    await this.#key;
  }

  async seal(plaintext: Uint8Array): Promise<string> {
    return new CompactEncrypt(plaintext).setProtectedHeader({ alg: this.alg, enc: RAW_ENC, kid: this.kid }).encrypt(await this.#key);
  }
}

/** Opens raw payloads with the key a reader holds: a base64url secret (dir) or a PKCS#8 private key (ECDH-ES), inline or as a file. */
export class RawOpener {
  readonly #value: string;
  #secret: Uint8Array | undefined;
  #private: Key | undefined;

  constructor(key: string) {
    this.#value = key;
  }

  async open(jwe: string): Promise<Uint8Array> {
    const { alg } = decodeProtectedHeader(jwe);
    let key: Key;
    if (alg === 'dir') key = this.#secret ??= secretKey(this.#value);
    else if (alg === 'ECDH-ES') key = this.#private ??= await importPKCS8(pemText(this.#value), 'ECDH-ES');
    else throw new Error(`unsupported raw payload algorithm ${String(alg)}`);
    try {
      return (await compactDecrypt(jwe, key)).plaintext;
    } catch (err) {
      throw new Error(`the raw payload does not decrypt with this key (key id ${String(decodeProtectedHeader(jwe).kid)}): ${(err as Error).message}`);
    }
  }
}
