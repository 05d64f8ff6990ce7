import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, type JWK, type CryptoKey } from 'jose';
import type { StateStore } from '../state/store.ts';

/**
 * The gateway's credential signing keys, shared by every instance through the state store.
 * Time is cut into rotation periods; the key of period N lives at `jit:signing-key:N` and is
 * made by whichever instance needs it first (setIfAbsent: concurrent instances agree on one).
 * The newest key signs; a key stays in the store, and so keeps verifying, for one more
 * period plus the longest credential lifetime, i.e. until everything it signed has expired.
 */
const KEY_PREFIX = 'jit:signing-key:';

interface StoredKey {
  kid: string;
  alg: 'EdDSA' | 'ES256';
  period: number;
  createdAt: number;
  privateJwk: JWK;
  publicJwk: JWK;
}

interface LoadedKey {
  stored: StoredKey;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

export interface SigningKeysOptions {
  store: StateStore;
  alg: 'EdDSA' | 'ES256';
  rotationMs: number;
  /** longest credential lifetime: how long a retired key must keep verifying */
  maxLifetimeMs: number;
  clock?: () => number;
}

/** How often an unknown kid may trigger a reload from the store (a flood of forged kids must not become a flood of store reads). */
const RELOAD_INTERVAL_MS = 1000;

export class SigningKeys {
  readonly #o: SigningKeysOptions;
  readonly #clock: () => number;
  readonly #keys = new Map<string, LoadedKey>();
  #current: LoadedKey | undefined;
  #lastReload = 0;
  #reloading: Promise<void> | undefined;

  constructor(options: SigningKeysOptions) {
    this.#o = options;
    this.#clock = options.clock ?? Date.now;
  }

  #period(): number {
    return Math.floor(this.#clock() / this.#o.rotationMs);
  }

  /** The key that signs now: this period's, made if no instance made it yet. */
  async current(): Promise<{ kid: string; alg: string; privateKey: CryptoKey }> {
    const period = this.#period();
    if (this.#current?.stored.period !== period) {
      const key = KEY_PREFIX + period;
      // kept for this period, the next one (it verifies what it signed late in its period) and the longest lifetime
      const ttl = 2 * this.#o.rotationMs + this.#o.maxLifetimeMs;
      if (!(await this.#o.store.get(key))) await this.#o.store.setIfAbsent(key, JSON.stringify(await this.#generate(period)), ttl);
      const text = await this.#o.store.get(key);
      if (!text) throw new Error(`the state store lost signing key ${key} just written`);
      const loaded = await this.#load(JSON.parse(text) as StoredKey);
      this.#current = loaded;
    }
    const { stored, privateKey } = this.#current;
    return { kid: stored.kid, alg: stored.alg, privateKey };
  }

  /** The verification key for `kid`, reloading from the store when the kid is new here (rotation on another instance). */
  async verificationKey(kid: string): Promise<{ key: CryptoKey; alg: string } | undefined> {
    let loaded = this.#keys.get(kid);
    if (!loaded && this.#clock() - this.#lastReload >= RELOAD_INTERVAL_MS) {
      await this.reload();
      loaded = this.#keys.get(kid);
    }
    return loaded ? { key: loaded.publicKey, alg: loaded.stored.alg } : undefined;
  }

  /** Reads every live key from the store; keys the store no longer has stop verifying. */
  reload(): Promise<void> {
    this.#reloading ??= (async () => {
      try {
        this.#lastReload = this.#clock();
        const live = new Set<string>();
        for (const [, text] of await this.#o.store.list(KEY_PREFIX)) {
          const stored = JSON.parse(text) as StoredKey;
          live.add(stored.kid);
          if (!this.#keys.has(stored.kid)) await this.#load(stored);
        }
        for (const kid of this.#keys.keys()) {
          if (live.has(kid)) continue;
          this.#keys.delete(kid);
          if (this.#current?.stored.kid === kid) this.#current = undefined;
        }
      } finally {
        this.#reloading = undefined;
      }
    })();
    return this.#reloading;
  }

  /** The public keys (JWKS) of every key that still verifies, newest first. */
  async jwks(): Promise<{ keys: JWK[] }> {
    await this.reload();
    const keys = [...this.#keys.values()].sort((a, b) => b.stored.period - a.stored.period).map((k) => ({ ...k.stored.publicJwk, kid: k.stored.kid, alg: k.stored.alg, use: 'sig' }));
    return { keys };
  }

  async #generate(period: number): Promise<StoredKey> {
    const { privateKey, publicKey } = await generateKeyPair(this.#o.alg, { extractable: true, ...(this.#o.alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
    return {
      kid: `${period}-${randomUUID().slice(0, 8)}`,
      alg: this.#o.alg,
      period,
      createdAt: this.#clock(),
      privateJwk: await exportJWK(privateKey),
      publicJwk: await exportJWK(publicKey),
    };
  }

  async #load(stored: StoredKey): Promise<LoadedKey> {
    const existing = this.#keys.get(stored.kid);
    if (existing) return existing;
    const loaded = {
      stored,
      privateKey: (await importJWK(stored.privateJwk, stored.alg)) as CryptoKey,
      publicKey: (await importJWK(stored.publicJwk, stored.alg)) as CryptoKey,
    };
    this.#keys.set(stored.kid, loaded);
    return loaded;
  }
}
