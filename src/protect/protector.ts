// The reversible actions (issue 22) as the inspection engine applies them: the WASM engine
// finds what a rule selects and marks it (action code A_PROTECT, no AES in WASM), and the host
// side of the same engine call replaces each marked value by what apply() returns. Every
// replacement leaves a "fact" in place of the rule's hit: which rule, which key version, and
// whether it worked, so the audit row says what was encrypted or revealed and why not.

import { EnvelopeError, type SharedAllowance } from './envelope.ts';
import { Ff1Error } from './ff1.ts';
import type { Keyring } from './keyring.ts';

export interface ProtectRule {
  /** the rule's id */
  id: string;
  mode: 'encrypt' | 'decrypt';
  format: 'envelope' | 'preserve';
  /** the encrypt rule whose ciphertexts these are: its id is the FF1 tweak and the envelope's associated data */
  binding: string;
  /** preserve: class characters left in clear at the start and at the end */
  keepFirst: number;
  keepLast: number;
  /** preserve: the digits end with a Luhn check digit, recomputed over the encrypted digits */
  luhn: boolean;
  /** preserve: the key version (FF1 ciphertexts have no room to name one) */
  keyVersion: number | null;
  /** decrypt: what a value that cannot be decrypted becomes */
  onFailure: string;
}

/** Outcomes of one value, as recorded in its fact. */
export const Outcome = {
  ok: 0,
  MALFORMED: 1,
  UNKNOWN_KEY: 2,
  AUTHENTICATION_FAILED: 3,
  KEY_EXHAUSTED: 4,
  /** the value does not fit the format: too few characters of a class for FF1, a Luhn digit that is not one */
  UNFIT: 5,
  /** no invocation of the active key was reserved yet (a burst larger than the reserve): retry */
  NOT_RESERVED: 6,
} as const;
type OutcomeName = keyof typeof Outcome;
const OUTCOME_NAMES = Object.keys(Outcome) as OutcomeName[];

// A fact is a hit word the engine never writes itself: bit 31 set, the outcome in bits 27-30,
// the program rule index in bits 16-26 and the key version in bits 0-15.
const FACT = 0x80000000;
export const MAX_PROTECT_RULE_INDEX = 0x7ff;
export const MAX_PROTECT_KEY_VERSION = 0xffff;

export function isFact(word: number): boolean {
  return word >= FACT && word !== 0xffffffff;
}

export function factOf(rule: number, outcome: number, version: number): number {
  return (FACT | (outcome << 27) | (rule << 16) | version) >>> 0;
}

export function readFact(word: number): { rule: number; outcome: OutcomeName; version: number } {
  return { rule: (word >>> 16) & MAX_PROTECT_RULE_INDEX, outcome: OUTCOME_NAMES[(word >>> 27) & 0xf] ?? 'MALFORMED', version: word & 0xffff };
}

/** How a fact reads in the audit row's summary: `card.encrypt@v2` (done with key version 2), `card.reveal!AUTHENTICATION_FAILED`. */
export function factName(ruleId: string, word: number): string {
  const f = readFact(word);
  return f.outcome === 'ok' ? `${ruleId}@v${f.version}` : `${ruleId}!${f.outcome}`;
}

const WHY: Record<OutcomeName, string> = {
  ok: '',
  MALFORMED: 'the value is not a ciphertext of this rule',
  UNKNOWN_KEY: 'its key version is not in the keyring (retired)',
  AUTHENTICATION_FAILED: 'it does not verify (tampered, or written for another field or key)',
  KEY_EXHAUSTED: 'the active key version has done all the encryptions AES-GCM with random nonces allows; make a new key version active (streamgate keys rotate)',
  UNFIT: 'the value does not fit format-preserving encryption (FF1 needs at least 6 digits or 5 letters of a class to encrypt, and a Luhn rule a valid check digit)',
  NOT_RESERVED: 'no encryption of the active key was reserved yet; retry',
};

export function factReason(word: number): string {
  const f = readFact(word);
  return `could not encrypt: ${WHY[f.outcome]}`;
}

export interface Applied {
  text: Uint8Array;
  fact: number;
  /** an encryption that failed: the record must not be forwarded */
  refuse: boolean;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

/** Applies the protect rules of one compiled program (indexed like the program's rules). */
export class Protector {
  readonly #rules: ReadonlyArray<ProtectRule | null>;
  readonly #keyring: Keyring;
  readonly #allowance: SharedAllowance | null;
  readonly #tweaks: Array<Uint8Array | null>;
  readonly #failure: Array<Uint8Array | null>;

  /** `allowance`: the active key's reserved invocations (needed when a rule encrypts as envelope) */
  constructor(rules: ReadonlyArray<ProtectRule | null>, keyring: Keyring, allowance: SharedAllowance | null) {
    this.#rules = rules;
    this.#keyring = keyring;
    this.#allowance = allowance;
    this.#tweaks = rules.map((r) => (r ? encoder.encode(`streamgate:${r.binding}`) : null));
    this.#failure = rules.map((r) => (r ? encoder.encode(r.onFailure) : null));
  }

  /** Whether program rule `index` is a protect rule (its hits come with a mark). */
  covers(index: number): boolean {
    return this.#rules[index] != null;
  }

  /**
   * What each marked value becomes, in order. Format-preserving values of one rule are
   * encrypted (or decrypted) together: their FF1 rounds share the AES calls.
   */
  applyMany(items: ReadonlyArray<{ index: number; value: Uint8Array }>): Applied[] {
    const out = new Array<Applied>(items.length);
    const groups = new Map<number, number[]>();
    items.forEach((item, k) => {
      if (this.#rules[item.index]?.format !== 'preserve') out[k] = this.apply(item.index, item.value);
      else {
        let g = groups.get(item.index);
        if (!g) groups.set(item.index, (g = []));
        g.push(k);
      }
    });
    for (const [index, ks] of groups) {
      const rule = this.#rules[index]!;
      const version = rule.keyVersion ?? this.#keyring.active;
      const cipher = this.#keyring.preserving(version);
      if (!cipher) {
        for (const k of ks) out[k] = this.#fail(index, rule, 'UNKNOWN_KEY', version);
        continue;
      }
      const options = { keepFirst: rule.keepFirst, keepLast: rule.keepLast, luhn: rule.luhn };
      const texts = ks.map((k) => decoder.decode(items[k]!.value));
      cipher.applyMany(texts, this.#tweaks[index]!, options, rule.mode === 'encrypt').forEach((r, m) => {
        out[ks[m]!] = r instanceof Ff1Error ? this.#fail(index, rule, 'UNFIT', version) : { text: encoder.encode(r), fact: factOf(index, Outcome.ok, version), refuse: false };
      });
    }
    return out;
  }

  /** What the marked value `value` of program rule `index` becomes. */
  apply(index: number, value: Uint8Array): Applied {
    const rule = this.#rules[index];
    if (!rule) throw new Error(`program rule ${index} is not a protect rule`);
    const tweak = this.#tweaks[index]!;
    let version = rule.keyVersion ?? this.#keyring.active;
    try {
      if (rule.format === 'envelope') {
        if (rule.mode === 'encrypt') {
          const taken = this.#allowance ? this.#allowance.take() : 'empty';
          if (taken !== 'ok') return this.#fail(index, rule, taken === 'exhausted' ? 'KEY_EXHAUSTED' : 'NOT_RESERVED', version);
          return { text: encoder.encode(this.#keyring.envelope.seal(value, tweak)), fact: factOf(index, Outcome.ok, version), refuse: false };
        }
        const text = decoder.decode(value);
        version = Number(/^sge1\.(\d{1,5})\./.exec(text)?.[1] ?? 0);
        return { text: this.#keyring.envelope.decrypt(text, tweak), fact: factOf(index, Outcome.ok, version & 0xffff), refuse: false };
      }
      const cipher = this.#keyring.preserving(version);
      if (!cipher) return this.#fail(index, rule, 'UNKNOWN_KEY', version);
      const text = decoder.decode(value);
      const options = { keepFirst: rule.keepFirst, keepLast: rule.keepLast, luhn: rule.luhn };
      const out = rule.mode === 'encrypt' ? cipher.encrypt(text, tweak, options) : cipher.decrypt(text, tweak, options);
      return { text: encoder.encode(out), fact: factOf(index, Outcome.ok, version), refuse: false };
    } catch (err) {
      if (err instanceof EnvelopeError) return this.#fail(index, rule, err.code, err.keyVersion ?? version);
      if (err instanceof Ff1Error) return this.#fail(index, rule, 'UNFIT', version);
      throw err;
    }
  }

  #fail(index: number, rule: ProtectRule, outcome: Exclude<OutcomeName, 'ok'>, version: number): Applied {
    const fact = factOf(index, Outcome[outcome], version & 0xffff);
    // a value that cannot be encrypted is never forwarded in clear; one that cannot be revealed reads as the replacement
    if (rule.mode === 'encrypt') return { text: new Uint8Array(0), fact, refuse: true };
    return { text: this.#failure[index]!, fact, refuse: false };
  }
}
