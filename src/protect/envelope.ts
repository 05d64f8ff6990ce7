// Field encryption that need not keep the value's shape (issue 22, `encrypt {format: envelope}`):
// AES-256-GCM with a random 96-bit nonce, the rule and field as associated data, written as a
// self-describing string `sge1.<key version>.<base64url(nonce | ciphertext | tag)>`.
//
// With random nonces, NIST SP 800-38D allows at most 2^32 encryptions under one key (past that a
// nonce repeats with non-negligible probability, and a repeat reveals the key stream and the
// authentication key). Every encryption takes one invocation from the key version's budget:
// a counter shared by every gateway instance (the state store), reserved in blocks so the data
// path rarely waits on it. An exhausted key refuses to encrypt: a clear error, never a weak
// ciphertext. The budget says when to rotate (`rotateAt` of the limit used).

import { createCipheriv, createDecipheriv, createSecretKey, randomFillSync, type KeyObject } from 'node:crypto';
import type { StateStore } from '../state/store.ts';

export const ENVELOPE_PREFIX = 'sge1.';
/** SP 800-38D, 8.3: random 96-bit IVs, at most 2^32 invocations of the authenticated encryption per key */
export const GCM_RANDOM_NONCE_LIMIT = 2 ** 32;
const NONCE = 12;
const TAG = 16;

export type EnvelopeErrorCode =
  /** not an envelope string (prefix, key version or base64url body) */
  | 'MALFORMED'
  /** the key version is not in the keyring (retired, or never there) */
  | 'UNKNOWN_KEY'
  /** the tag does not verify: tampered, another field's ciphertext, or another key with the same version */
  | 'AUTHENTICATION_FAILED'
  /** the active key reached its invocation limit: rotate */
  | 'KEY_EXHAUSTED';

export class EnvelopeError extends Error {
  override name = 'EnvelopeError';
  readonly code: EnvelopeErrorCode;
  readonly keyVersion: number | undefined;
  constructor(code: EnvelopeErrorCode, message: string, keyVersion?: number) {
    super(message);
    this.code = code;
    this.keyVersion = keyVersion;
  }
}

export interface EnvelopeKey {
  version: number;
  /** 32 bytes (AES-256) */
  key: Uint8Array;
}

/**
 * How many encryptions each key version may still do, shared by every instance: blocks of
 * `block` invocations are reserved from a counter in the state store (`keyuse:<version>`).
 */
export class InvocationBudget {
  readonly #store: Pick<StateStore, 'incrementBy'>;
  readonly #limit: number;
  readonly #block: number;
  readonly #rotateAt: number;
  /** per version: what this instance may still use of its reserved blocks, and the counter's value at the last reservation */
  readonly #local = new Map<number, { left: number; reservedUpTo: number }>();
  readonly #pending = new Map<number, Promise<void>>();

  constructor(store: Pick<StateStore, 'incrementBy'>, options: { limit?: number; block?: number; rotateAt?: number } = {}) {
    this.#store = store;
    this.#limit = options.limit ?? GCM_RANDOM_NONCE_LIMIT;
    this.#block = options.block ?? 65_536;
    this.#rotateAt = options.rotateAt ?? 0.5;
  }

  /** Takes one invocation of `version`'s budget; rejects with KEY_EXHAUSTED past the limit. */
  async take(version: number): Promise<void> {
    for (;;) {
      const local = this.#local.get(version);
      if (local && local.left > 0) {
        local.left--;
        return;
      }
      await this.#reserve(version);
    }
  }

  /** Whether the key has used enough of its budget that it should be rotated (from this instance's view). */
  shouldRotate(version: number): boolean {
    return (this.#local.get(version)?.reservedUpTo ?? 0) >= this.#limit * this.#rotateAt;
  }

  /**
   * Reserves one block of `version`'s invocations for a caller that counts them itself (the
   * inspection threads' SharedAllowance): resolves to how many it may use; KEY_EXHAUSTED past the limit.
   */
  async grant(version: number): Promise<number> {
    const upTo = await this.#store.incrementBy(`keyuse:${version}`, this.#block);
    const usable = this.#usable(version, upTo);
    this.#local.set(version, { left: this.#local.get(version)?.left ?? 0, reservedUpTo: upTo });
    return usable;
  }

  /** How many invocations `version` has used (reserved) so far, shared by every instance. */
  async used(version: number): Promise<number> {
    return Math.min(this.#limit, await this.#store.incrementBy(`keyuse:${version}`, 0));
  }

  get limit(): number {
    return this.#limit;
  }

  // a reservation past the limit is kept only up to it: the rest was never safe to use
  #usable(version: number, upTo: number): number {
    const usable = Math.max(0, Math.min(this.#block, this.#limit - (upTo - this.#block)));
    if (usable === 0) throw new EnvelopeError('KEY_EXHAUSTED', `key version ${version} has done the ${this.#limit} encryptions AES-GCM with random nonces allows; make a new key version active`, version);
    return usable;
  }

  #reserve(version: number): Promise<void> {
    let pending = this.#pending.get(version);
    if (!pending) {
      pending = this.#store
        .incrementBy(`keyuse:${version}`, this.#block)
        .then((upTo) => {
          this.#local.set(version, { left: this.#usable(version, upTo), reservedUpTo: upTo });
        })
        .finally(() => this.#pending.delete(version));
      this.#pending.set(version, pending);
    }
    return pending;
  }
}

const LEFT = 0;
const EXHAUSTED = 1;

/**
 * The active key version's invocations granted to one gateway instance, shared by its
 * inspection threads: a SharedArrayBuffer counter that the accept thread and every pool worker
 * take from synchronously (encryption happens inside the synchronous engine call), and that the
 * accept thread tops up from the InvocationBudget before it runs out. Taking never waits: an
 * empty allowance refuses, so no encryption happens without a reserved invocation.
 */
export class SharedAllowance {
  readonly buffer: SharedArrayBuffer;
  readonly #cells: Int32Array;
  #refill: Promise<void> | null = null;

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(8)) {
    this.buffer = buffer;
    this.#cells = new Int32Array(buffer);
  }

  /** Takes one invocation: 'ok', 'empty' (not topped up yet) or 'exhausted' (the key reached its limit). */
  take(): 'ok' | 'empty' | 'exhausted' {
    if (Atomics.sub(this.#cells, LEFT, 1) > 0) return 'ok';
    Atomics.add(this.#cells, LEFT, 1);
    return Atomics.load(this.#cells, EXHAUSTED) === 1 ? 'exhausted' : 'empty';
  }

  get left(): number {
    return Math.max(0, Atomics.load(this.#cells, LEFT));
  }

  get exhausted(): boolean {
    return Atomics.load(this.#cells, EXHAUSTED) === 1;
  }

  /**
   * Keeps at least `lowWater` invocations granted (accept thread only): returns at once while
   * there are `needed` left (a refill runs in the background), else waits for the refill.
   */
  ensure(budget: InvocationBudget, version: number, lowWater: number, needed: number): Promise<void> | undefined {
    const left = this.left;
    if (left >= lowWater || this.exhausted) return undefined;
    this.#refill ??= budget
      .grant(version)
      .then(
        (granted) => void Atomics.add(this.#cells, LEFT, granted),
        (err: unknown) => {
          if (err instanceof EnvelopeError && err.code === 'KEY_EXHAUSTED') Atomics.store(this.#cells, EXHAUSTED, 1);
          else throw err;
        },
      )
      .finally(() => (this.#refill = null));
    if (left >= needed) {
      // a failed background refill is retried by the next call
      this.#refill.catch(() => {});
      return undefined;
    }
    return this.#refill;
  }
}

/**
 * Random nonces drawn from a pool the CSPRNG refills 4 KiB at a time: one randomBytes call per
 * value costs more than the encryption of a short field.
 */
const noncePool = Buffer.alloc(4096);
let noncesAt = noncePool.length;
function nonce(): Buffer {
  if (noncesAt + NONCE > noncePool.length) {
    randomFillSync(noncePool);
    noncesAt = 0;
  }
  // a copy: the pool is overwritten on the next refill
  const n = Buffer.from(noncePool.subarray(noncesAt, noncesAt + NONCE));
  noncesAt += NONCE;
  return n;
}

export class EnvelopeCipher {
  // KeyObjects: a cipher made from one skips the key import a raw key costs on every call (~8x)
  readonly #keys: Map<number, KeyObject>;
  readonly #active: number;
  readonly #budget: InvocationBudget | null;

  /** `budget`: for encrypt(); null where the caller takes invocations itself and uses seal() */
  constructor(keys: readonly EnvelopeKey[], active: number, budget: InvocationBudget | null) {
    for (const k of keys) {
      if (k.key.length !== 32) throw new EnvelopeError('MALFORMED', `key version ${k.version} is ${k.key.length} bytes; AES-256 keys are 32`);
      if (!Number.isInteger(k.version) || k.version < 1) throw new EnvelopeError('MALFORMED', `key versions are positive integers, not ${k.version}`);
    }
    this.#keys = new Map(keys.map((k) => [k.version, createSecretKey(k.key)]));
    if (!this.#keys.has(active)) throw new EnvelopeError('UNKNOWN_KEY', `the active key version ${active} is not in the keyring`, active);
    this.#active = active;
    this.#budget = budget;
  }

  /** `aad`: what the ciphertext is bound to (the rule and the field): it decrypts only with the same */
  async encrypt(plaintext: Uint8Array, aad: Uint8Array): Promise<string> {
    await this.#budget!.take(this.#active);
    return this.seal(plaintext, aad);
  }

  /** Encrypts with the active version; the caller has taken the invocation (SharedAllowance). */
  seal(plaintext: Uint8Array, aad: Uint8Array): string {
    const iv = nonce();
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.#active)!, iv);
    cipher.setAAD(aad);
    const body = Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return `${ENVELOPE_PREFIX}${this.#active}.${body.toString('base64url')}`;
  }

  decrypt(envelope: string, aad: Uint8Array): Buffer {
    const m = /^sge1\.([1-9]\d{0,8})\.([A-Za-z0-9_-]+)$/.exec(envelope);
    if (!m) throw new EnvelopeError('MALFORMED', 'not an envelope (sge1.<version>.<base64url>)');
    const version = Number(m[1]);
    const key = this.#keys.get(version);
    if (!key) throw new EnvelopeError('UNKNOWN_KEY', `key version ${version} is not in the keyring (retired?)`, version);
    const body = Buffer.from(m[2]!, 'base64url');
    if (body.length < NONCE + TAG) throw new EnvelopeError('MALFORMED', 'the envelope is too short', version);
    const decipher = createDecipheriv('aes-256-gcm', key, body.subarray(0, NONCE));
    decipher.setAAD(aad);
    decipher.setAuthTag(body.subarray(body.length - TAG));
    try {
      return Buffer.concat([decipher.update(body.subarray(NONCE, body.length - TAG)), decipher.final()]);
    } catch {
      throw new EnvelopeError('AUTHENTICATION_FAILED', `the envelope does not verify under key version ${version} (tampered, or written for another field)`, version);
    }
  }

  get activeVersion(): number {
    return this.#active;
  }

  shouldRotate(): boolean {
    return this.#budget?.shouldRotate(this.#active) ?? false;
  }
}
