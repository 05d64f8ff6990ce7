// FF1 format-preserving encryption (NIST SP 800-38G, Rev. 1; FF3-1 is not offered: the 2025
// draft revision withdraws it). A numeral string in radix 2..65536 encrypts to one of the same
// length and radix, under an AES key (128, 192 or 256 bits) and a tweak. Written from the
// standard's pseudocode; verified against NIST's published sample vectors
// (test/protect-ff1.test.ts). AES is node:crypto's (OpenSSL, AES-NI): one ECB context per key,
// its blocks chained by hand for the CBC-MAC the standard calls PRF.

import { createCipheriv, type Cipheriv } from 'node:crypto';

/** The standard's domain bound: radix^minlen >= 1,000,000 (Rev. 1). */
export const MIN_DOMAIN = 1_000_000n;
/** Long inputs are fine for FF1, but values are fields of records: bounded, so a hostile one costs little. */
export const MAX_LENGTH = 4096;
/** halves below this (radix^v) take the double-precision path: y mod radix^m folded a byte at a time stays below 2^53 */
const SMALL = 2 ** 45;

export class Ff1Error extends Error {
  override name = 'Ff1Error';
}

export class Ff1 {
  readonly #ecb: Cipheriv;
  readonly radix: number;
  readonly #bigRadix: bigint;
  /** the shortest string this radix may encrypt (radix^minLength >= 10^6) */
  readonly minLength: number;
  readonly #prefixes = new Map<string, Buffer>();

  constructor(key: Uint8Array, radix: number) {
    if (![16, 24, 32].includes(key.length)) throw new Ff1Error(`an FF1 key is 16, 24 or 32 bytes (AES-128/192/256), not ${key.length}`);
    if (!Number.isInteger(radix) || radix < 2 || radix > 65536) throw new Ff1Error(`the radix is 2..65536, not ${radix}`);
    this.#ecb = createCipheriv(`aes-${key.length * 8}-ecb`, key, null).setAutoPadding(false);
    this.radix = radix;
    this.#bigRadix = BigInt(radix);
    let min = 1;
    for (let d = this.#bigRadix; d < MIN_DOMAIN; d *= this.#bigRadix) min++;
    this.minLength = min;
  }

  /** Encrypts numerals (each 0..radix-1) under `tweak`. */
  encrypt(x: ArrayLike<number>, tweak: Uint8Array = EMPTY): number[] {
    return this.#one(x, tweak, true);
  }

  decrypt(x: ArrayLike<number>, tweak: Uint8Array = EMPTY): number[] {
    return this.#one(x, tweak, false);
  }

  #one(x: ArrayLike<number>, tweak: Uint8Array, encrypt: boolean): number[] {
    const [r] = this.cipherMany([{ x, tweak }], encrypt);
    if (r instanceof Ff1Error) throw r;
    return r!;
  }

  #cipher(x: ArrayLike<number>, tweak: Uint8Array, encrypt: boolean): number[] {
    this.#check(x);
    const n = x.length;
    const t = tweak.length;
    const u = Math.floor(n / 2);
    const v = n - u;
    // bytes that hold any v-numeral number, and bytes of PRF output used per round
    const byteLen = Math.ceil(Math.ceil(v * Math.log2(this.radix) - 1e-9) / 8);
    const d = 4 * Math.ceil(byteLen / 4) + 4;
    // Q = T || 0^((-t-b-1) mod 16) || [i] || [NUM(B)]^b
    const pad = (((-t - byteLen - 1) % 16) + 16) % 16;
    let a = Array.from(x).slice(0, u);
    let b = Array.from(x).slice(u);
    const p = this.#p(n, u, t);
    const q = Buffer.alloc(t + pad + 1 + byteLen);
    q.set(tweak, 0);
    const modU = this.#bigRadix ** BigInt(u);
    const modV = this.#bigRadix ** BigInt(v);
    for (let step = 0; step < 10; step++) {
      const i = encrypt ? step : 9 - step;
      q[t + pad] = i;
      writeBig(q, t + pad + 1, byteLen, this.#num(encrypt ? b : a));
      const y = this.#round(p, q, d);
      const m = i % 2 === 0 ? u : v;
      const mod = m === u ? modU : modV;
      if (encrypt) {
        const c = (this.#num(a) + y) % mod;
        a = b;
        b = this.#str(c, m);
      } else {
        const c = (((this.#num(b) - y) % mod) + mod) % mod;
        b = a;
        a = this.#str(c, m);
      }
    }
    return [...a, ...b];
  }

  /** P = [1]^1 || [2]^1 || [1]^1 || [radix]^3 || [10]^1 || [u mod 256]^1 || [n]^4 || [t]^4 */
  #p(n: number, u: number, t: number): Buffer {
    const p = Buffer.alloc(16);
    p.set([1, 2, 1, (this.radix >> 16) & 0xff, (this.radix >> 8) & 0xff, this.radix & 0xff, 10, u & 0xff]);
    p.writeUInt32BE(n, 8);
    p.writeUInt32BE(t, 12);
    return p;
  }

  /**
   * Encrypts (or decrypts) many numeral strings, each with its tweak, running their rounds in
   * lockstep: the values whose halves fit a double take one AES call per round for all of them
   * (a cipher call costs more than the block it encrypts). Each result is the numerals or why not.
   */
  cipherMany(jobs: ReadonlyArray<{ x: ArrayLike<number>; tweak: Uint8Array }>, encrypt: boolean): Array<number[] | Ff1Error> {
    const out = new Array<number[] | Ff1Error>(jobs.length);
    const lanes: Lane[] = [];
    const laneOf: number[] = [];
    jobs.forEach((job, j) => {
      try {
        const lane = this.#lane(job.x, job.tweak);
        if (lane) {
          lanes.push(lane);
          laneOf.push(j);
        } else out[j] = this.#cipher(job.x, job.tweak, encrypt);
      } catch (err) {
        if (!(err instanceof Ff1Error)) throw err;
        out[j] = err;
      }
    });
    if (lanes.length > 0) {
      this.#rounds(lanes, encrypt);
      lanes.forEach((l, k) => (out[laneOf[k]!] = this.#numerals(l)));
    }
    return out;
  }

  #check(x: ArrayLike<number>): void {
    const n = x.length;
    if (n < this.minLength || n > MAX_LENGTH) throw new Ff1Error(`FF1 in radix ${this.radix} needs ${this.minLength}..${MAX_LENGTH} numerals, not ${n}`);
    for (let i = 0; i < n; i++) {
      const d = x[i]!;
      if (!Number.isInteger(d) || d < 0 || d >= this.radix) throw new Ff1Error(`numeral ${i} is not in radix ${this.radix}`);
    }
  }

  /**
   * The state of a value whose halves fit a double exactly (radix^v < 2^45, one PRF block per
   * round): numbers instead of BigInts, and the CBC-MAC over P and the tweak's blocks of Q (the
   * same in every round) taken from the cache, so each round is one AES block. Null: too large.
   */
  #lane(x: ArrayLike<number>, tweak: Uint8Array): Lane | null {
    this.#check(x);
    const n = x.length;
    const u = Math.floor(n / 2);
    const v = n - u;
    const byteLen = Math.ceil(Math.ceil(v * Math.log2(this.radix) - 1e-9) / 8);
    const d = 4 * Math.ceil(byteLen / 4) + 4;
    if (d > 16 || this.radix ** v >= SMALL) return null;
    const pad = (((-tweak.length - byteLen - 1) % 16) + 16) % 16;
    const radix = this.radix;
    let a = 0;
    let b = 0;
    for (let i = 0; i < u; i++) a = a * radix + x[i]!;
    for (let i = u; i < n; i++) b = b * radix + x[i]!;
    return { u, v, byteLen, d, prefix: this.#prefix(tweak, n, u, pad), a, b, modU: radix ** u, modV: radix ** v };
  }

  #rounds(lanes: Lane[], encrypt: boolean): void {
    const blocks = Buffer.alloc(16 * lanes.length);
    for (let step = 0; step < 10; step++) {
      const i = encrypt ? step : 9 - step;
      blocks.fill(0);
      lanes.forEach((l, k) => {
        // the last block of Q: [i] and NUM(B) (NUM(A) decrypting) right-aligned, chained on the prefix
        const at = 16 * k;
        blocks[at + 15 - l.byteLen] = i;
        let num = encrypt ? l.b : l.a;
        for (let j = at + 15; j > at + 15 - l.byteLen; j--) {
          blocks[j] = num % 256;
          num = Math.floor(num / 256);
        }
        for (let j = 0; j < 16; j++) blocks[at + j]! ^= l.prefix[j]!;
      });
      const r = this.#block(blocks);
      lanes.forEach((l, k) => {
        const mod = i % 2 === 0 ? l.modU : l.modV;
        // y mod radix^m from the first d bytes of R, folded a byte at a time (stays below 2^53)
        let y = 0;
        for (let j = 16 * k; j < 16 * k + l.d; j++) y = (y * 256 + r[j]!) % mod;
        if (encrypt) {
          const c = (l.a + y) % mod;
          l.a = l.b;
          l.b = c;
        } else {
          const c = (l.b - y + mod) % mod;
          l.b = l.a;
          l.a = c;
        }
      });
    }
  }

  #numerals(l: Lane): number[] {
    const out = new Array<number>(l.u + l.v);
    let { a, b } = l;
    for (let i = l.u - 1; i >= 0; i--) {
      out[i] = a % this.radix;
      a = Math.floor(a / this.radix);
    }
    for (let i = l.u + l.v - 1; i >= l.u; i--) {
      out[i] = b % this.radix;
      b = Math.floor(b / this.radix);
    }
    return out;
  }

  /** CIPH chained over P and the round-independent blocks of Q (T and the padding), cached per tweak and length. */
  #prefix(tweak: Uint8Array, n: number, u: number, pad: number): Buffer {
    const key = `${n}:${Buffer.from(tweak).toString('latin1')}`;
    let r = this.#prefixes.get(key);
    if (r) return r;
    r = this.#block(this.#p(n, u, tweak.length));
    const head = Buffer.alloc(tweak.length + pad + 1);
    head.set(tweak, 0);
    // every block of Q before the last one (Q is head, then NUM's 16 - head.length % 16 bytes)
    const whole = head.length - (head.length % 16);
    const q = Buffer.alloc(whole);
    head.copy(q, 0, 0, Math.min(whole, head.length));
    for (let at = 0; at < whole; at += 16) {
      for (let k = 0; k < 16; k++) r[k]! ^= q[at + k]!;
      r = this.#block(r);
    }
    // the last block's leading bytes (tweak tail and padding) are part of it: fold them into the prefix
    const tail = Buffer.alloc(16);
    head.copy(tail, 0, whole, head.length - 1);
    for (let k = 0; k < 16; k++) r[k]! ^= tail[k]!;
    if (this.#prefixes.size >= 1024) this.#prefixes.clear();
    this.#prefixes.set(key, r);
    return r;
  }

  /** y = NUM(S): S the first d bytes of R || CIPH(R ^ [1]) || CIPH(R ^ [2]) ..., R = PRF(P || Q). */
  #round(p: Buffer, q: Buffer, d: number): bigint {
    let r = this.#block(p);
    for (let at = 0; at < q.length; at += 16) {
      for (let k = 0; k < 16; k++) r[k]! ^= q[at + k]!;
      r = this.#block(r);
    }
    const s = Buffer.alloc(Math.ceil(d / 16) * 16);
    r.copy(s, 0);
    for (let j = 1; j * 16 < d; j++) {
      const x = Buffer.from(r);
      x.writeUInt32BE((x.readUInt32BE(12) ^ j) >>> 0, 12);
      this.#block(x).copy(s, 16 * j);
    }
    return readBig(s, d);
  }

  #block(b: Buffer): Buffer {
    return this.#ecb.update(b);
  }

  #num(x: readonly number[]): bigint {
    let n = 0n;
    for (const d of x) n = n * this.#bigRadix + BigInt(d);
    return n;
  }

  #str(value: bigint, m: number): number[] {
    const out = new Array<number>(m);
    for (let i = m - 1; i >= 0; i--) {
      out[i] = Number(value % this.#bigRadix);
      value /= this.#bigRadix;
    }
    return out;
  }
}

const EMPTY = new Uint8Array(0);

/** One value's rounds on the double-precision path. */
interface Lane {
  u: number;
  v: number;
  byteLen: number;
  d: number;
  prefix: Buffer;
  a: number;
  b: number;
  modU: number;
  modV: number;
}

function writeBig(buf: Buffer, at: number, len: number, value: bigint): void {
  for (let i = at + len - 1; i >= at; i--) {
    buf[i] = Number(value & 0xffn);
    value >>= 8n;
  }
}

function readBig(buf: Buffer, len: number): bigint {
  let n = 0n;
  for (let i = 0; i < len; i++) n = (n << 8n) | BigInt(buf[i]!);
  return n;
}

/** Numerals of `text` over `alphabet` (its characters in radix order), and back. */
export function toNumerals(text: string, alphabet: string): number[] {
  return Array.from(text, (c) => {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Ff1Error('a character is not in the alphabet');
    return i;
  });
}

export function fromNumerals(numerals: readonly number[], alphabet: string): string {
  return numerals.map((d) => alphabet[d]!).join('');
}
