/** A set of byte values 0..255, the alphabet of the inspection automata. */
export class ByteSet {
  readonly words: Uint32Array;

  constructor(words?: Uint32Array) {
    this.words = words ?? new Uint32Array(8);
  }

  static of(...bytes: number[]): ByteSet {
    const s = new ByteSet();
    for (const b of bytes) s.add(b);
    return s;
  }

  static range(lo: number, hi: number): ByteSet {
    return new ByteSet().addRange(lo, hi);
  }

  static all(): ByteSet {
    return new ByteSet(new Uint32Array(8).fill(0xffffffff));
  }

  static fromString(chars: string): ByteSet {
    const s = new ByteSet();
    for (let i = 0; i < chars.length; i++) s.add(chars.charCodeAt(i));
    return s;
  }

  has(b: number): boolean {
    return (this.words[b >>> 5]! & (1 << (b & 31))) !== 0;
  }

  add(b: number): this {
    this.words[b >>> 5]! |= 1 << (b & 31);
    return this;
  }

  addRange(lo: number, hi: number): this {
    for (let b = lo; b <= hi; b++) this.add(b);
    return this;
  }

  addSet(other: ByteSet): this {
    for (let i = 0; i < 8; i++) this.words[i]! |= other.words[i]!;
    return this;
  }

  union(other: ByteSet): ByteSet {
    return this.clone().addSet(other);
  }

  intersect(other: ByteSet): ByteSet {
    const w = new Uint32Array(8);
    for (let i = 0; i < 8; i++) w[i] = this.words[i]! & other.words[i]!;
    return new ByteSet(w);
  }

  complement(): ByteSet {
    const w = new Uint32Array(8);
    for (let i = 0; i < 8; i++) w[i] = ~this.words[i]!;
    return new ByteSet(w);
  }

  clone(): ByteSet {
    return new ByteSet(this.words.slice());
  }

  isEmpty(): boolean {
    return this.words.every((w) => w === 0);
  }

  equals(other: ByteSet): boolean {
    for (let i = 0; i < 8; i++) if (this.words[i] !== other.words[i]) return false;
    return true;
  }

  subsetOf(other: ByteSet): boolean {
    for (let i = 0; i < 8; i++) if ((this.words[i]! & ~other.words[i]!) !== 0) return false;
    return true;
  }

  size(): number {
    let n = 0;
    for (let b = 0; b < 256; b++) if (this.has(b)) n++;
    return n;
  }

  bytes(): number[] {
    const out: number[] = [];
    for (let b = 0; b < 256; b++) if (this.has(b)) out.push(b);
    return out;
  }

  key(): string {
    return Array.from(this.words, (w) => (w >>> 0).toString(16)).join(',');
  }
}

export const DIGIT = ByteSet.range(0x30, 0x39);
export const WORD = ByteSet.range(0x30, 0x39).addRange(0x41, 0x5a).addRange(0x61, 0x7a).add(0x5f);
/** JavaScript's \s restricted to single bytes that are not UTF-8 continuation bytes */
export const SPACE = ByteSet.of(0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20);
