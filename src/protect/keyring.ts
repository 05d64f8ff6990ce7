// The protection keyring (issue 22): numbered key versions, one of them active. Each version is
// a secret from the config (an environment variable or a file, like the tokenization keys), from
// which HKDF-SHA256 derives one AES-256 key per use, so the FF1 and the envelope keys of a
// version are unrelated. A version left out of the keyring is retired: what it encrypted can no
// longer be read.

import { hkdfSync } from 'node:crypto';
import { EnvelopeCipher, type InvocationBudget } from './envelope.ts';
import { PreservingCipher } from './preserve.ts';

export interface KeyringSecret {
  version: number;
  secret: string;
}

/** What a pool worker needs to build the same keyring: the derived keys, not the secrets. */
export interface KeyringTransfer {
  active: number;
  keys: Array<{ version: number; ff1: Uint8Array; envelope: Uint8Array }>;
}

const SALT = 'streamgate/protect/v1';

function derive(secret: string, use: 'ff1' | 'envelope'): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', secret, SALT, use, 32));
}

export class Keyring {
  readonly active: number;
  readonly #keys: KeyringTransfer['keys'];
  readonly #preserving = new Map<number, PreservingCipher>();
  readonly #envelope: EnvelopeCipher;

  private constructor(transfer: KeyringTransfer, budget: InvocationBudget | null) {
    this.active = transfer.active;
    this.#keys = transfer.keys;
    this.#envelope = new EnvelopeCipher(transfer.keys.map((k) => ({ version: k.version, key: k.envelope })), transfer.active, budget);
  }

  /** `active` defaults to the highest version. */
  static fromSecrets(secrets: readonly KeyringSecret[], active?: number, budget: InvocationBudget | null = null): Keyring {
    const chosen = active ?? Math.max(...secrets.map((s) => s.version));
    return new Keyring({ active: chosen, keys: secrets.map((s) => ({ version: s.version, ff1: derive(s.secret, 'ff1'), envelope: derive(s.secret, 'envelope') })) }, budget);
  }

  static fromTransfer(transfer: KeyringTransfer): Keyring {
    return new Keyring(transfer, null);
  }

  get transfer(): KeyringTransfer {
    return { active: this.active, keys: this.#keys };
  }

  get versions(): number[] {
    return this.#keys.map((k) => k.version);
  }

  has(version: number): boolean {
    return this.#keys.some((k) => k.version === version);
  }

  get envelope(): EnvelopeCipher {
    return this.#envelope;
  }

  /** The FF1 cipher of `version`, or undefined when that version is not (or no longer) in the keyring. */
  preserving(version: number): PreservingCipher | undefined {
    let c = this.#preserving.get(version);
    if (!c) {
      const k = this.#keys.find((x) => x.version === version);
      if (!k) return undefined;
      c = new PreservingCipher(k.ff1);
      this.#preserving.set(version, c);
    }
    return c;
  }
}
