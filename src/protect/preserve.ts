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
  { id: 0, test: (c: number) => c >= 0x30 && c <= 0x39, base: 0x30, radix: 10 },
  { id: 1, test: (c: number) => c >= 0x61 && c <= 0x7a, base: 0x61, radix: 26 },
  { id: 2, test: (c: number) => c >= 0x41 && c <= 0x5a, base: 0x41, radix: 26 },
] as const;

/** FF1 instances of one key, by radix. */
export class PreservingCipher {
  readonly #byRadix: Map<number, Ff1>;

  constructor(key: Uint8Array) {
    this.#byRadix = new Map([10, 26].map((r) => [r, new Ff1(key, r)]));
  }

  encrypt(text: string, tweak: Uint8Array, options: PreserveOptions = {}): string {
    return this.#apply(text, tweak, options, true);
  }

  decrypt(text: string, tweak: Uint8Array, options: PreserveOptions = {}): string {
    return this.#apply(text, tweak, options, false);
  }

  #apply(text: string, tweak: Uint8Array, options: PreserveOptions, encrypt: boolean): string {
    const codes = Array.from(text, (c) => c.codePointAt(0)!);
    const classOf = codes.map((c) => CLASSES.findIndex((k) => k.test(c)));
    // positions that stay in clear: the last `keepLast` class characters, and the Luhn check digit
    const clear = new Set<number>();
    let keep = options.keepLast ?? 0;
    for (let i = codes.length - 1; i >= 0 && keep > 0; i--) {
      if (classOf[i]! >= 0) {
        clear.add(i);
        keep--;
      }
    }
    let first = options.keepFirst ?? 0;
    for (let i = 0; i < codes.length && first > 0; i++) {
      if (classOf[i]! >= 0) {
        clear.add(i);
        first--;
      }
    }
    let check = -1;
    if (options.luhn) {
      if ((options.keepLast ?? 0) > 0) throw new Ff1Error('a Luhn check digit is recomputed from the encrypted digits: it cannot be combined with keepLast');
      for (let i = codes.length - 1; i >= 0 && check < 0; i--) if (classOf[i] === 0) check = i;
      if (check < 0) throw new Ff1Error('the value has no digits for a Luhn check digit');
      // only a valid check digit is recomputed to itself on the way back
      if (encrypt && !luhnValid(codes.filter((_, i) => classOf[i] === 0).map((c) => c - 0x30))) throw new Ff1Error('the digits do not end with a valid Luhn check digit, so recomputing it would not be reversible');
      clear.add(check);
    }
    const out = codes.slice();
    for (const k of CLASSES) {
      const at: number[] = [];
      for (let i = 0; i < codes.length; i++) if (classOf[i] === k.id && !clear.has(i)) at.push(i);
      if (at.length === 0) continue;
      const ff1 = this.#byRadix.get(k.radix)!;
      if (at.length < ff1.minLength) {
        throw new Ff1Error(`${at.length} ${k.radix === 10 ? 'digits' : 'letters'} to encrypt: FF1 needs at least ${ff1.minLength} (a smaller domain is guessable)`);
      }
      const numerals = at.map((i) => codes[i]! - k.base);
      const t = new Uint8Array(tweak.length + 1);
      t.set(tweak);
      t[tweak.length] = k.id;
      const result = encrypt ? ff1.encrypt(numerals, t) : ff1.decrypt(numerals, t);
      at.forEach((i, j) => (out[i] = result[j]! + k.base));
    }
    if (check >= 0) out[check] = 0x30 + luhnCheckDigit(out.slice(0, check).filter((c, i) => classOf[i] === 0).map((c) => c - 0x30));
    return String.fromCodePoint(...out);
  }
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
