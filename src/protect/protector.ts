// The reversible actions (issue 22) as the inspection engine applies them: the WASM engine
// finds what a rule selects and marks it (action code A_PROTECT, no AES in WASM), and the host
// side of the same engine call replaces each marked value by what apply() returns. Every
// replacement leaves a "fact" in place of the rule's hit: which rule, which key version, and
// whether it worked, so the audit row says what was encrypted or revealed and why not.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { EnvelopeError, type SharedAllowance } from './envelope.ts';
import { NeedSubjectKeys, SUBJECT_PREFIX, type SubjectIds, type SubjectKeyCache, type SubjectKeyNeed } from './subjects.ts';
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
  /** envelope: the record's field naming its data subject (`$.customer_id`): the value is encrypted under that subject's key (crypto-shredding) */
  subject: string | null;
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
  /** the data subject's key was erased (or never made): the value is gone for good */
  SHREDDED: 7,
  /** the record has no data subject where the rule looks for one: a subject rule cannot encrypt without it */
  NO_SUBJECT: 8,
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
  if (f.outcome !== 'ok') return `${ruleId}!${f.outcome}`;
  // key version 0: a data subject's key (crypto-shredding)
  return f.version === 0 ? `${ruleId}@subject` : `${ruleId}@v${f.version}`;
}

const WHY: Record<OutcomeName, string> = {
  ok: '',
  MALFORMED: 'the value is not a ciphertext of this rule',
  UNKNOWN_KEY: 'its key version is not in the keyring (retired)',
  AUTHENTICATION_FAILED: 'it does not verify (tampered, or written for another field or key)',
  KEY_EXHAUSTED: 'the active key version has done all the encryptions AES-GCM with random nonces allows; make a new key version active (streamgate keys rotate)',
  UNFIT: 'the value does not fit format-preserving encryption (FF1 needs at least 6 digits or 5 letters of a class to encrypt, and a Luhn rule a valid check digit)',
  NOT_RESERVED: 'no encryption of the active key was reserved yet; retry',
  SHREDDED: 'the data subject\'s key was erased',
  NO_SUBJECT: 'the record has no data subject in the field the rule names (a string or number)',
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

  readonly #subjects: { ids: SubjectIds; cache: SubjectKeyCache } | null;
  readonly #subjectPaths: Array<string[] | null>;

  /**
   * `allowance`: the active key's reserved invocations (needed when a rule encrypts as envelope);
   * `subjects`: the data subjects' ids and this thread's keys (needed when a rule names a subject)
   */
  constructor(rules: ReadonlyArray<ProtectRule | null>, keyring: Keyring, allowance: SharedAllowance | null, subjects: { ids: SubjectIds; cache: SubjectKeyCache } | null = null) {
    this.#rules = rules;
    this.#keyring = keyring;
    this.#allowance = allowance;
    this.#subjects = subjects;
    this.#subjectPaths = rules.map((r) => (r?.subject ? r.subject.slice(2).split('.') : null));
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
  applyMany(items: ReadonlyArray<{ index: number; value: Uint8Array; record?: Uint8Array | null }>): Applied[] {
    const out = new Array<Applied>(items.length);
    const groups = new Map<number, number[]>();
    const sids = this.#subjectIds(items);
    items.forEach((item, k) => {
      if (this.#subjectPaths[item.index]) out[k] = this.#applySubject(item.index, item.value, sids[k]!);
      else if (this.#rules[item.index]?.format !== 'preserve') out[k] = this.apply(item.index, item.value);
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

  /**
   * The subject id of each item of a subject rule (encrypt: from its record's field; decrypt:
   * from the envelope), or null where there is none. Throws NeedSubjectKeys when this thread
   * lacks some of their keys: the accept thread gets them and the engine call runs again.
   */
  #subjectIds(items: ReadonlyArray<{ index: number; value: Uint8Array; record?: Uint8Array | null }>): Array<string | null> {
    const sids = new Array<string | null>(items.length).fill(null);
    if (!this.#subjectPaths.some((p) => p !== null)) return sids;
    const subjects = this.#subjects;
    if (!subjects) throw new Error('a rule names a data subject but the engine has no subject keys');
    const parsed = new Map<Uint8Array, unknown>();
    const needs = new Map<string, SubjectKeyNeed>();
    items.forEach((item, k) => {
      const path = this.#subjectPaths[item.index];
      if (!path) return;
      const rule = this.#rules[item.index]!;
      let sid: string | null = null;
      if (rule.mode === 'encrypt') {
        const subject = item.record ? subjectOf(item.record, path, parsed) : null;
        sid = subject === null ? null : subjects.ids.of(subject);
      } else {
        sid = /^sgs1\.([A-Za-z0-9_-]{22})\./.exec(decoder.decode(item.value.subarray(0, 28)))?.[1] ?? null;
      }
      sids[k] = sid;
      if (sid === null) return;
      const cached = subjects.cache.get(sid);
      // encrypting needs a key (a subject without one gets one); revealing asks only what it does not know
      if (cached === undefined || (cached === null && rule.mode === 'encrypt')) needs.set(sid, { sid, create: rule.mode === 'encrypt' || (needs.get(sid)?.create ?? false) });
    });
    if (needs.size > 0) throw new NeedSubjectKeys([...needs.values()]);
    return sids;
  }

  #applySubject(index: number, value: Uint8Array, sid: string | null): Applied {
    const rule = this.#rules[index]!;
    const aad = Buffer.concat([this.#tweaks[index]!, Buffer.from(`|${sid ?? ''}`)]);
    if (sid === null) return this.#fail(index, rule, rule.mode === 'encrypt' ? 'NO_SUBJECT' : 'MALFORMED', 0);
    const key = this.#subjects!.cache.get(sid);
    if (!key) return this.#fail(index, rule, 'SHREDDED', 0);
    if (rule.mode === 'encrypt') {
      const nonce = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', key.key, nonce).setAAD(aad);
      const body = Buffer.concat([nonce, c.update(value), c.final(), c.getAuthTag()]);
      return { text: encoder.encode(`${SUBJECT_PREFIX}${sid}.${key.kid}.${body.toString('base64url')}`), fact: factOf(index, Outcome.ok, 0), refuse: false };
    }
    const m = /^sgs1\.[A-Za-z0-9_-]{22}\.([A-Za-z0-9_-]{8})\.([A-Za-z0-9_-]+)$/.exec(decoder.decode(value));
    const body = m ? Buffer.from(m[2]!, 'base64url') : null;
    if (!m || !body || body.length < 28) return this.#fail(index, rule, 'MALFORMED', 0);
    // written under a key of this subject that was erased (the subject was written again since)
    if (m[1] !== key.kid) return this.#fail(index, rule, 'SHREDDED', 0);
    const d = createDecipheriv('aes-256-gcm', key.key, body.subarray(0, 12)).setAAD(aad);
    d.setAuthTag(body.subarray(body.length - 16));
    try {
      return { text: Buffer.concat([d.update(body.subarray(12, body.length - 16)), d.final()]), fact: factOf(index, Outcome.ok, 0), refuse: false };
    } catch {
      return this.#fail(index, rule, 'AUTHENTICATION_FAILED', 0);
    }
  }

  #fail(index: number, rule: ProtectRule, outcome: Exclude<OutcomeName, 'ok'>, version: number): Applied {
    const fact = factOf(index, Outcome[outcome], version & 0xffff);
    // a value that cannot be encrypted is never forwarded in clear; one that cannot be revealed reads as the replacement
    if (rule.mode === 'encrypt') return { text: new Uint8Array(0), fact, refuse: true };
    return { text: this.#failure[index]!, fact, refuse: false };
  }
}

/** The data subject of a JSON record: the string or number at `path` (member names), or null. */
function subjectOf(record: Uint8Array, path: readonly string[], parsed: Map<Uint8Array, unknown>): string | null {
  let doc = parsed.get(record);
  if (doc === undefined) {
    try {
      doc = JSON.parse(decoder.decode(record)) as unknown;
    } catch {
      doc = null;
    }
    parsed.set(record, doc);
  }
  let at: unknown = doc;
  for (const name of path) {
    if (at === null || typeof at !== 'object' || Array.isArray(at) || !Object.hasOwn(at, name)) return null;
    at = (at as Record<string, unknown>)[name];
  }
  if (typeof at === 'number' && Number.isFinite(at)) return String(at);
  return typeof at === 'string' && at.length > 0 ? at : null;
}
