// The pattern language of inspection rules: a documented subset of JavaScript regular
// expressions, compiled to byte-level automata (see ARCHITECTURE.md, "Inspection engine").
//
// Semantics differ from V8 where a DFA has to: matching is over UTF-8 bytes and
// leftmost-longest (the longest match at the leftmost start wins; alternation order does
// not matter), so lazy quantifiers have no meaning and are rejected. Everything a DFA
// cannot express (backreferences, multi-character lookaround) is rejected with the
// position and a reason; nothing is silently approximated.
import { ByteSet, DIGIT, SPACE, WORD } from './byteset.ts';

export type Node =
  | { t: 'set'; set: ByteSet }
  | { t: 'seq'; items: Node[] }
  | { t: 'alt'; items: Node[] }
  | { t: 'rep'; item: Node; min: number; max: number }
  | { t: 'assert'; kind: AssertKind }
  | { t: 'look'; ahead: boolean; negate: boolean; set: ByteSet };

/** start/end: of the scanned text (a JSON string value, or the whole record) */
export type AssertKind = 'start' | 'end' | 'word' | 'nonword';

export interface PatternFlags {
  /** ASCII case-insensitive */
  ignoreCase?: boolean;
  /** `.` also matches \n and \r */
  dotAll?: boolean;
}

export class PatternError extends Error {
  readonly position: number;
  constructor(message: string, position: number) {
    super(message);
    this.name = 'PatternError';
    this.position = position;
  }
}

/** Largest count allowed in {m,n}: larger bounds blow up the automaton for little gain. */
export const MAX_REPEAT = 1000;

const SYNTAX = new Set('^$\\.*+?()[]{}|/-'.split(''));
/** `.` without the s flag: any byte but \n and \r, as V8 applies it to a latin1 string */
const DOT = ByteSet.of(0x0a, 0x0d).complement();

export function parsePattern(source: string, flags: PatternFlags = {}): Node {
  return new Parser(source, flags).parse();
}

/** Parses a flags string as written in the config (`i`, `s`). */
export function parseFlags(flags: string): PatternFlags {
  const out: PatternFlags = {};
  for (const f of flags) {
    if (f === 'i') out.ignoreCase = true;
    else if (f === 's') out.dotAll = true;
    else throw new PatternError(`unsupported flag "${f}" (supported: i = ASCII case-insensitive, s = "." matches newlines)`, 0);
  }
  return out;
}

class Parser {
  readonly src: string;
  readonly flags: PatternFlags;
  pos = 0;

  constructor(src: string, flags: PatternFlags) {
    this.src = src;
    this.flags = flags;
  }

  fail(message: string, at = this.pos): never {
    throw new PatternError(`${message} at position ${at}`, at);
  }

  parse(): Node {
    if (this.src.length === 0) this.fail('empty pattern');
    const node = this.alternation();
    if (this.pos < this.src.length) this.fail(this.src[this.pos] === ')' ? 'unmatched ")"' : `unexpected "${this.src[this.pos]}"`);
    return node;
  }

  peek(): string | undefined {
    return this.src[this.pos];
  }

  alternation(): Node {
    const items = [this.sequence()];
    while (this.peek() === '|') {
      this.pos++;
      items.push(this.sequence());
    }
    return items.length === 1 ? items[0]! : { t: 'alt', items };
  }

  sequence(): Node {
    const items: Node[] = [];
    while (this.pos < this.src.length && this.peek() !== '|' && this.peek() !== ')') {
      items.push(this.quantified(this.atom()));
    }
    return items.length === 1 ? items[0]! : { t: 'seq', items };
  }

  quantified(atom: Node): Node {
    const c = this.peek();
    let min: number;
    let max: number;
    const at = this.pos;
    if (c === '*') { min = 0; max = Infinity; this.pos++; }
    else if (c === '+') { min = 1; max = Infinity; this.pos++; }
    else if (c === '?') { min = 0; max = 1; this.pos++; }
    else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.pos));
      if (!m) this.fail('"{" must start a quantifier {n}, {n,} or {n,m}; write \\{ for a literal brace');
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
      if (min > MAX_REPEAT || (max !== Infinity && max > MAX_REPEAT)) this.fail(`repetition counts are limited to ${MAX_REPEAT}`);
      if (max < min) this.fail(`quantifier {${min},${max}} has max < min`);
      this.pos += m[0].length;
    } else return atom;
    if (atom.t === 'assert' || atom.t === 'look') this.fail('a quantifier cannot follow an assertion', at);
    if (this.peek() === '?') this.fail('lazy quantifiers are not supported: matches are leftmost-longest');
    if (this.peek() === '+') this.fail('possessive quantifiers are not supported');
    const next = this.peek();
    if (next === '*' || next === '{') this.fail('nothing to repeat');
    return { t: 'rep', item: atom, min, max };
  }

  atom(): Node {
    const c = this.src[this.pos]!;
    switch (c) {
      case '(':
        return this.group();
      case '[':
        return this.classAtom();
      case '.':
        this.pos++;
        return { t: 'set', set: this.flags.dotAll ? ByteSet.all() : DOT.clone() };
      case '^':
        this.pos++;
        return { t: 'assert', kind: 'start' };
      case '$':
        this.pos++;
        return { t: 'assert', kind: 'end' };
      case '\\':
        return this.escapeAtom();
      case '*': case '+': case '?':
        return this.fail('nothing to repeat');
      case '{':
        return this.fail('"{" must follow something to repeat; write \\{ for a literal brace');
      case ']': case '}':
        return this.fail(`unescaped "${c}"; write \\${c}`);
      default:
        return this.literal(this.codePoint());
    }
  }

  codePoint(): number {
    const cp = this.src.codePointAt(this.pos)!;
    this.pos += cp > 0xffff ? 2 : 1;
    return cp;
  }

  literal(cp: number): Node {
    if (cp < 0x80) return { t: 'set', set: this.fold(ByteSet.of(cp)) };
    const bytes = utf8(cp);
    return { t: 'seq', items: bytes.map((b) => ({ t: 'set', set: ByteSet.of(b) }) as Node) };
  }

  fold(set: ByteSet): ByteSet {
    if (!this.flags.ignoreCase) return set;
    const out = set.clone();
    for (let b = 0x41; b <= 0x5a; b++) {
      if (set.has(b)) out.add(b + 0x20);
      if (set.has(b + 0x20)) out.add(b);
    }
    return out;
  }

  group(): Node {
    const open = this.pos;
    this.pos++;
    let look: { ahead: boolean; negate: boolean } | null = null;
    if (this.src.startsWith('?:', this.pos)) this.pos += 2;
    else if (this.src.startsWith('?=', this.pos)) { look = { ahead: true, negate: false }; this.pos += 2; }
    else if (this.src.startsWith('?!', this.pos)) { look = { ahead: true, negate: true }; this.pos += 2; }
    else if (this.src.startsWith('?<=', this.pos)) { look = { ahead: false, negate: false }; this.pos += 3; }
    else if (this.src.startsWith('?<!', this.pos)) { look = { ahead: false, negate: true }; this.pos += 3; }
    else if (this.src.startsWith('?<', this.pos)) {
      const m = /^\?<([A-Za-z_$][\w$]*)>/.exec(this.src.slice(this.pos));
      if (!m) this.fail('malformed named group');
      this.pos += m[0].length; // names are accepted for readability; captures are not used
    } else if (this.peek() === '?') this.fail('unsupported group syntax (supported: (...), (?:...), (?<name>...), one-character lookaround)');
    const inner = this.alternation();
    if (this.peek() !== ')') this.fail('unterminated group', open);
    this.pos++;
    if (!look) return inner;
    if (inner.t !== 'set') {
      this.fail('lookaround is limited to one character or class, e.g. (?<![A-Za-z0-9]) or (?!\\d)', open);
    }
    return { t: 'look', ahead: look.ahead, negate: look.negate, set: inner.set };
  }

  escapeAtom(): Node {
    const at = this.pos;
    const e = this.src[this.pos + 1];
    if (e === undefined) this.fail('pattern ends with "\\"');
    if (e === 'b') { this.pos += 2; return { t: 'assert', kind: 'word' }; }
    if (e === 'B') { this.pos += 2; return { t: 'assert', kind: 'nonword' }; }
    const cls = this.classEscape();
    if (cls) return { t: 'set', set: cls };
    const cp = this.charEscape(false);
    if (cp === null) this.fail(`unsupported escape "\\${e}"`, at);
    return this.literal(cp);
  }

  /** \d \w \s and their negations; null when the escape is something else */
  classEscape(): ByteSet | null {
    const e = this.src[this.pos + 1];
    let set: ByteSet | null = null;
    if (e === 'd') set = DIGIT.clone();
    else if (e === 'D') set = DIGIT.complement();
    else if (e === 'w') set = WORD.clone();
    else if (e === 'W') set = WORD.complement();
    else if (e === 's') set = SPACE.clone();
    else if (e === 'S') set = SPACE.complement();
    if (set) this.pos += 2;
    return set;
  }

  /** One escaped character (code point), or null when unsupported. */
  charEscape(inClass: boolean): number | null {
    const at = this.pos;
    const e = this.src[this.pos + 1]!;
    this.pos += 2;
    switch (e) {
      case 't': return 0x09;
      case 'n': return 0x0a;
      case 'r': return 0x0d;
      case 'f': return 0x0c;
      case 'v': return 0x0b;
      case '0':
        if (/[0-9]/.test(this.src[this.pos] ?? '')) this.fail('octal escapes are not supported', at);
        return 0;
      case 'x': {
        const m = /^[0-9A-Fa-f]{2}/.exec(this.src.slice(this.pos));
        if (!m) this.fail('\\x needs two hex digits', at);
        this.pos += 2;
        return parseInt(m[0], 16);
      }
      case 'u': {
        const m = /^[0-9A-Fa-f]{4}/.exec(this.src.slice(this.pos));
        if (!m) this.fail('\\u needs four hex digits', at);
        this.pos += 4;
        let cp = parseInt(m[0], 16);
        const low = /^\\u(d[c-f][0-9a-f]{2})/i.exec(this.src.slice(this.pos));
        if (cp >= 0xd800 && cp <= 0xdbff && low) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (parseInt(low[1]!, 16) - 0xdc00);
          this.pos += 6;
        }
        return cp;
      }
      case 'b':
        return inClass ? 0x08 : null;
      default:
        if (/[1-9]/.test(e)) this.fail('backreferences are not supported by a DFA', at);
        if (e === 'k') this.fail('named backreferences are not supported by a DFA', at);
        if (e === 'p' || e === 'P') this.fail('Unicode property escapes are not supported', at);
        if (e === 'c') this.fail('control escapes \\cX are not supported; use \\xHH', at);
        if (SYNTAX.has(e) || e === ',' || e === '"' || e === "'" || e === '#' || e === ' ' || e === '=' || e === '!' || e === ':' || e === '<' || e === '>' || e === '@' || e === '%' || e === '&' || e === '~' || e === '`' || e === ';' || e === '_') {
          return e.charCodeAt(0);
        }
        return null;
    }
  }

  classAtom(): Node {
    const open = this.pos;
    this.pos++;
    let negate = false;
    if (this.peek() === '^') { negate = true; this.pos++; }
    const set = new ByteSet();
    const multi: number[] = []; // non-ASCII code points: UTF-8 sequences, alternatives of the class
    while (this.peek() !== ']') {
      if (this.pos >= this.src.length) this.fail('unterminated character class', open);
      const itemAt = this.pos;
      const lo = this.classItem();
      if (lo instanceof ByteSet) { set.addSet(lo); continue; }
      if (this.peek() === '-' && this.src[this.pos + 1] !== ']' && this.pos + 1 < this.src.length) {
        this.pos++;
        const hiAt = this.pos;
        const hi = this.classItem();
        if (hi instanceof ByteSet) this.fail('a range cannot end with a class escape', hiAt);
        if (hi < lo) this.fail('range out of order in character class', itemAt);
        if (hi >= 0x80) this.fail('ranges must stay within ASCII (bytes are matched, not code points); list non-ASCII characters one by one', itemAt);
        set.addRange(lo, hi);
      } else if (lo >= 0x80) {
        multi.push(lo);
      } else {
        set.add(lo);
      }
    }
    this.pos++;
    const folded = this.fold(set);
    if (negate) {
      if (multi.length > 0) this.fail('non-ASCII characters in a negated class are not supported (classes match single bytes)', open);
      return { t: 'set', set: folded.complement() };
    }
    if (multi.length === 0) {
      if (folded.isEmpty()) this.fail('empty character class matches nothing', open);
      return { t: 'set', set: folded };
    }
    const items: Node[] = multi.map((cp) => this.literal(cp));
    if (!folded.isEmpty()) items.unshift({ t: 'set', set: folded });
    return items.length === 1 ? items[0]! : { t: 'alt', items };
  }

  classItem(): ByteSet | number {
    if (this.peek() === '\\') {
      const cls = this.classEscape();
      if (cls) return cls;
      const e = this.src[this.pos + 1];
      const cp = this.charEscape(true);
      if (cp === null) this.fail(`unsupported escape "\\${e}" in character class`);
      return cp;
    }
    return this.codePoint();
  }
}

export function utf8(cp: number): number[] {
  if (cp < 0x80) return [cp];
  if (cp < 0x800) return [0xc0 | (cp >> 6), 0x80 | (cp & 63)];
  if (cp < 0x10000) return [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)];
  return [0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)];
}

/** True when the node can match without consuming a byte. */
export function nullable(n: Node): boolean {
  switch (n.t) {
    case 'set': return false;
    case 'seq': return n.items.every(nullable);
    case 'alt': return n.items.some(nullable);
    case 'rep': return n.min === 0 || nullable(n.item);
    case 'assert': case 'look': return true;
  }
}

/**
 * The node as a V8 RegExp source with the same semantics when applied to the payload
 * decoded as latin1 (one character per byte), no flags: explicit byte classes, no \s,
 * no `i`. Used by the tests' reference matcher and the V8 benchmark baseline.
 */
export function toJsSource(n: Node): string {
  switch (n.t) {
    case 'set': return setSource(n.set);
    case 'seq': return n.items.map((i) => (i.t === 'alt' ? `(?:${toJsSource(i)})` : toJsSource(i))).join('');
    case 'alt': return n.items.map(toJsSource).join('|');
    case 'rep': {
      const inner = n.item.t === 'set' ? toJsSource(n.item) : `(?:${toJsSource(n.item)})`;
      const q = n.min === 0 && n.max === Infinity ? '*' : n.min === 1 && n.max === Infinity ? '+' : n.min === 0 && n.max === 1 ? '?'
        : n.max === Infinity ? `{${n.min},}` : n.min === n.max ? `{${n.min}}` : `{${n.min},${n.max}}`;
      return inner + q;
    }
    case 'assert': return n.kind === 'start' ? '^' : n.kind === 'end' ? '$' : n.kind === 'word' ? '\\b' : '\\B';
    case 'look': return `(?${n.ahead ? '' : '<'}${n.negate ? '!' : '='}${setSource(n.set)})`;
  }
}

function setSource(set: ByteSet): string {
  const bytes = set.bytes();
  if (bytes.length === 256) return '[\\s\\S]';
  const hex = (b: number) => `\\x${b.toString(16).padStart(2, '0')}`;
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    let j = i;
    while (j + 1 < bytes.length && bytes[j + 1] === bytes[j]! + 1) j++;
    out += j > i ? `${hex(bytes[i]!)}-${hex(bytes[j]!)}` : hex(bytes[i]!);
    i = j + 1;
  }
  return `[${out}]`;
}
