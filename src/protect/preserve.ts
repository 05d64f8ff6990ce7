// Format-preserving encryption of a text field with FF1 (ff1.ts): digits stay digits, lowercase
// letters lowercase, uppercase letters uppercase, and every other character (separators, spaces,
// non-ASCII) stays where it was. Each class is encrypted as its own numeral string (radix 10 or
// 26) under the caller's tweak plus the class, so "4111-1111-1111-1111" keeps its dashes and a
// ZIP code stays five digits. `keepLast` characters of the classes stay in clear at the end
// (the last four of a card), `keepFirst` at the start (its issuer prefix). `luhn`: the last digit is not encrypted but recomputed as the Luhn
// check digit of the encrypted digits, so a card number encrypts to a Luhn-valid number (and
// decrypts to the original, whose check digit is recomputed the same way).

import { Ff1, Ff1Error } from './ff1.ts';

export interface PreserveOptions {
  /** characters of the encrypted classes left in clear at the start (a card's issuer prefix, so card detectors still see a card) */
  keepFirst?: number;
  /** characters of the encrypted classes left in clear at the end */
  keepLast?: number;
  /** the digits end with a Luhn check digit: recompute it instead of encrypting it */
  luhn?: boolean;
}

const CLASSES = [
  { id: 0, base: 0x30, radix: 10 },
  { id: 1, base: 0x61, radix: 26 },
  { id: 2, base: 0x41, radix: 26 },
] as const;

/** FF1 instances of one key, by radix. */
export class PreservingCipher {
  readonly #byRadix: Map<number, Ff1>;

  constructor(key: Uint8Array) {
    this.#byRadix = new Map([10, 26].map((r) => [r, new Ff1(key, r)]));
  }

  encrypt(text: string, tweak: Uint8Array, options: PreserveOptions = {}): string {
    return one(this.applyMany([text], tweak, options, true)[0]!);
  }

  decrypt(text: string, tweak: Uint8Array, options: PreserveOptions = {}): string {
    return one(this.applyMany([text], tweak, options, false)[0]!);
  }

  /** Many values under one tweak and options: their FF1 rounds run together (Ff1.cipherMany). Each result is the text or why not. */
  applyMany(texts: readonly string[], tweak: Uint8Array, options: PreserveOptions, encrypt: boolean): Array<string | Ff1Error> {
    const plans = texts.map((t) => plan(t, options, encrypt));
    const results: Array<string | Ff1Error> = plans.map((p) => (p instanceof Ff1Error ? p : ''));
    for (const k of CLASSES) {
      const ff1 = this.#byRadix.get(k.radix)!;
      const t = new Uint8Array(tweak.length + 1);
      t.set(tweak);
      t[tweak.length] = k.id;
      const jobs: Array<{ x: number[]; tweak: Uint8Array }> = [];
      const owners: number[] = [];
      plans.forEach((p, j) => {
        if (p instanceof Ff1Error || p.at[k.id]!.length === 0) return;
        const at = p.at[k.id]!;
        if (at.length < ff1.minLength) {
          results[j] = new Ff1Error(`${at.length} ${k.radix === 10 ? 'digits' : 'letters'} to encrypt: FF1 needs at least ${ff1.minLength} (a smaller domain is guessable)`);
          return;
        }
        jobs.push({ x: at.map((i) => p.codes[i]! - k.base), tweak: t });
        owners.push(j);
      });
      const out = ff1.cipherMany(jobs, encrypt);
      out.forEach((r, m) => {
        const j = owners[m]!;
        const p = plans[j] as Plan;
        if (r instanceof Ff1Error) results[j] = r;
        else p.at[k.id]!.forEach((i, n) => (p.out[i] = r[n]! + k.base));
      });
    }
    return results.map((r, j) => {
      if (r instanceof Ff1Error) return r;
      const p = plans[j] as Plan;
      if (p.check >= 0) p.out[p.check] = 0x30 + luhnCheckDigit(p.out.slice(0, p.check).filter((_, i) => p.classOf[i] === 0).map((c) => c - 0x30));
      return String.fromCodePoint(...p.out);
    });
  }
}

function one(r: string | Ff1Error): string {
  if (r instanceof Ff1Error) throw r;
  return r;
}

/** Where a value's characters go: per class, the positions FF1 encrypts; the rest stays. */
interface Plan {
  codes: number[];
  classOf: number[];
  /** positions to encrypt, by class id */
  at: number[][];
  out: number[];
  /** the Luhn check digit's position, or -1 */
  check: number;
}

function classOf(c: number): number {
  if (c >= 0x30 && c <= 0x39) return 0;
  if (c >= 0x61 && c <= 0x7a) return 1;
  if (c >= 0x41 && c <= 0x5a) return 2;
  return -1;
}

function plan(text: string, options: PreserveOptions, encrypt: boolean): Plan | Ff1Error {
  const codes = Array.from(text, (c) => c.codePointAt(0)!);
  const classes = codes.map(classOf);
  // positions that stay in clear: the first `keepFirst` and last `keepLast` class characters, and the Luhn check digit
  const clear = new Uint8Array(codes.length);
  let keep = options.keepLast ?? 0;
  for (let i = codes.length - 1; i >= 0 && keep > 0; i--) {
    if (classes[i]! >= 0) {
      clear[i] = 1;
      keep--;
    }
  }
  let first = options.keepFirst ?? 0;
  for (let i = 0; i < codes.length && first > 0; i++) {
    if (classes[i]! >= 0) {
      clear[i] = 1;
      first--;
    }
  }
  let check = -1;
  if (options.luhn) {
    if ((options.keepLast ?? 0) > 0) return new Ff1Error('a Luhn check digit is recomputed from the encrypted digits: it cannot be combined with keepLast');
    for (let i = codes.length - 1; i >= 0 && check < 0; i--) if (classes[i] === 0) check = i;
    if (check < 0) return new Ff1Error('the value has no digits for a Luhn check digit');
    // only a valid check digit is recomputed to itself on the way back
    if (encrypt && !luhnValid(codes.filter((_, i) => classes[i] === 0).map((c) => c - 0x30))) return new Ff1Error('the digits do not end with a valid Luhn check digit, so recomputing it would not be reversible');
    clear[check] = 1;
  }
  const at: number[][] = [[], [], []];
  for (let i = 0; i < codes.length; i++) if (classes[i]! >= 0 && clear[i] === 0) at[classes[i]!]!.push(i);
  return { codes, classOf: classes, at, out: codes.slice(), check };
}

/** The Luhn check digit for `digits` (the digit to append). */
export function luhnCheckDigit(digits: readonly number[]): number {
  let sum = 0;
  for (let i = digits.length - 1, double = true; i >= 0; i--, double = !double) {
    let d = digits[i]!;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10;
}

/** Whether `digits` end with a valid Luhn check digit. */
export function luhnValid(digits: readonly number[]): boolean {
  return digits.length > 1 && luhnCheckDigit(digits.slice(0, -1)) === digits.at(-1);
}
