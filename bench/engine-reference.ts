// The inspection semantics written with V8 RegExp and plain JavaScript validators, for
// two uses: the reference the property tests compare the WASM engine with, and the V8
// baselines of bench/engine.ts. Payloads are handled as latin1 strings (one character
// per byte), so V8 positions are byte positions and patterns are byte patterns.
//
// Semantics (as in the engine): leftmost-longest. Scanning from the left, the first
// position where some pattern has a validated match starts the match; among the matches
// starting there the longest wins, then the lower pattern index. Scanning resumes at its
// end. Lookaround sees the bytes outside the match; ^ and $ are the text's ends.

export type Validate = (text: string) => boolean;

export function luhn(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) { d *= 2; if (d > 9) d -= 9; }
    sum += d;
  }
  return sum % 10 === 0;
}

function issuer(d: string): boolean {
  const n = d.length;
  const p = (k: number) => Number(d.slice(0, k));
  if (d[0] === '4') return n === 13 || n === 16 || n === 19;
  if (p(2) >= 51 && p(2) <= 55) return n === 16;
  if (p(4) >= 2221 && p(4) <= 2720) return n === 16;
  if (p(2) === 34 || p(2) === 37) return n === 15;
  if (p(4) === 6011 || (p(3) >= 644 && p(3) <= 649) || p(2) === 65) return n >= 16 && n <= 19;
  if ((p(3) >= 300 && p(3) <= 305) || [36, 38, 39].includes(p(2))) return n >= 14 && n <= 19;
  if (p(4) >= 3528 && p(4) <= 3589) return n >= 16 && n <= 19;
  if (p(2) === 62) return n >= 16 && n <= 19;
  if ([5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763].includes(p(4))) return n >= 12 && n <= 19;
  if (p(4) >= 2200 && p(4) <= 2204) return n >= 16 && n <= 19;
  return false;
}

const IBAN_LENGTHS: Record<string, number> = Object.fromEntries(
  'AD24AE23AL28AT20AZ28BA20BE16BG22BH22BR29BY28CH21CR22CY28CZ24DE22DK18DO28EE20EG29ES24FI18FO18FR27GB22GE22GI23GL18GR27GT28HR21HU28IE22IL23IQ23IS26IT27JO30KW30KZ20LB28LC32LI21LT20LU20LV21MC27MD24ME22MK19MR27MT31MU30NL18NO15PK24PL28PS29PT25QA29RO24RS22SA24SC31SE24SI19SK24SM27ST25SV28TL23TN24TR26UA29VA22VG24XK20'
    .match(/.{4}/g)!.map((x) => [x.slice(0, 2), Number(x.slice(2))]),
);

/** Validators by the ids of src/inspect/detectors.ts. */
export const VALIDATORS: Record<number, Validate> = {
  0: () => true,
  1: (t) => { const d = t.replace(/\D/g, ''); return luhn(d) && issuer(d); },
  2: (t) => {
    const d = t.replace(/\D/g, '');
    const area = Number(d.slice(0, 3));
    return d.length === 9 && area !== 0 && area !== 666 && area < 900 && d.slice(3, 5) !== '00' && d.slice(5) !== '0000';
  },
  3: (t) => {
    const s = t.replace(/ /g, '');
    if (s.length < 15 || s.length > 34 || IBAN_LENGTHS[s.slice(0, 2)] !== s.length) return false;
    const r = s.slice(4) + s.slice(0, 4);
    let rem = 0;
    for (const ch of r) {
      const v = ch >= 'A' && ch <= 'Z' ? String(ch.charCodeAt(0) - 55) : ch;
      for (const x of v) rem = (rem * 10 + Number(x)) % 97;
    }
    return rem === 1;
  },
  4: (t) => t.split('.').every((o) => Number(o) <= 255),
  5: (t) => {
    if ((t.match(/::/g) ?? []).length > 1 || t.includes(':::') || !/[0-9a-fA-F]/.test(t)) return false;
    if (t.includes('::')) {
      const [a, b] = t.split('::') as [string, string];
      const groups = [...(a ? a.split(':') : []), ...(b ? b.split(':') : [])];
      return groups.length <= 7 && groups.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g));
    }
    const groups = t.split(':');
    return groups.length === 8 && groups.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g));
  },
  6: (t) => /[A-Z]/.test(t) && /[a-z]/.test(t) && /\d/.test(t),
};

export interface RefPattern {
  /** V8 source with latin1 byte semantics (see toJsSource in src/inspect/compile/regex.ts) */
  source: string;
  validator: number;
  /** longest possible match (Infinity when unbounded), to bound the exact search */
  maxLength?: number;
}

export interface RefMatch {
  p: number;
  s: number;
  e: number;
}

interface Compiled {
  any: RegExp; // sticky: some match starts here
  endBefore: RegExp; // sticky, the match ends right before the last character
  endAtEnd: RegExp; // sticky, the match ends at the end
  global: RegExp;
  validate: Validate;
  maxLength: number;
}

export class Reference {
  readonly patterns: Compiled[];
  readonly combined: RegExp;

  constructor(patterns: readonly RefPattern[]) {
    this.patterns = patterns.map((p) => ({
      any: new RegExp(`(?:${p.source})`, 'y'),
      endBefore: new RegExp(`(?:${p.source})(?=[\\s\\S]$)`, 'y'),
      endAtEnd: new RegExp(`(?:${p.source})$`, 'y'),
      global: new RegExp(p.source, 'g'),
      validate: VALIDATORS[p.validator]!,
      maxLength: p.maxLength ?? Infinity,
    }));
    this.combined = new RegExp(patterns.map((p) => `(?:${p.source})`).join('|'), 'g');
  }

  /** Does pattern p match exactly text[s, e) (with the real context around it)? */
  exact(p: number, text: string, s: number, e: number): boolean {
    const c = this.patterns[p]!;
    // one character of context on each side, as the assertions see it
    const from = s > 0 ? s - 1 : 0;
    const t = text.slice(from, e < text.length ? e + 1 : e);
    const re = e < text.length ? c.endBefore : c.endAtEnd;
    re.lastIndex = s - from;
    return re.test(t) && re.lastIndex === e - from;
  }

  /**
   * Exact semantics, for tests: every end of every pattern is considered (slow: meant for
   * short texts). `active` limits the patterns.
   */
  exactMatches(text: string, active?: ReadonlySet<number>): RefMatch[] {
    const out: RefMatch[] = [];
    let s = 0;
    while (s < text.length) {
      let best: RefMatch | null = null;
      for (let p = 0; p < this.patterns.length; p++) {
        if (active && !active.has(p)) continue;
        const c = this.patterns[p]!;
        c.any.lastIndex = s;
        if (!c.any.test(text)) continue;
        for (let e = Math.min(text.length, s + c.maxLength); e > s && (!best || e > best.e); e--) {
          if (this.exact(p, text, s, e) && c.validate(text.slice(s, e))) { best = { p, s, e }; break; }
        }
      }
      if (best) { out.push(best); s = best.e; } else s++;
    }
    return out;
  }

  /**
   * Baseline semantics, for the benchmark: the combined regex finds the next position
   * where some pattern matches; there each pattern's greedy match is validated (shorter
   * ends are tried only when validation fails) and the longest valid one wins.
   */
  combinedMatches(text: string): RefMatch[] {
    const out: RefMatch[] = [];
    const re = this.combined;
    re.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null) {
      const s = m.index;
      const best = this.#bestAt(text, s);
      if (best) { out.push(best); re.lastIndex = best.e; } else re.lastIndex = s + 1;
    }
    return out;
  }

  /** Baseline semantics with one global regex per pattern, then overlaps resolved. */
  perPatternMatches(text: string): RefMatch[] {
    const found: RefMatch[] = [];
    for (let p = 0; p < this.patterns.length; p++) {
      const re = this.patterns[p]!.global;
      re.lastIndex = 0;
      let m: RegExpExecArray | null;
      while ((m = re.exec(text)) !== null) {
        const e = this.#validEnd(p, text, m.index, m.index + m[0].length);
        if (e > 0) { found.push({ p, s: m.index, e }); re.lastIndex = e; } else re.lastIndex = m.index + 1;
      }
    }
    if (found.length < 2) return found;
    found.sort((a, b) => a.s - b.s || b.e - a.e || a.p - b.p);
    const out: RefMatch[] = [];
    let end = 0;
    for (const f of found) if (f.s >= end) { out.push(f); end = f.e; }
    return out;
  }

  #bestAt(text: string, s: number): RefMatch | null {
    let best: RefMatch | null = null;
    for (let p = 0; p < this.patterns.length; p++) {
      const c = this.patterns[p]!;
      c.any.lastIndex = s;
      const m = c.any.exec(text);
      if (!m) continue;
      const e = this.#validEnd(p, text, s, s + m[0].length);
      if (e > 0 && (!best || e > best.e)) best = { p, s, e };
    }
    return best;
  }

  /** The greedy end when it validates, else the longest shorter valid end, else 0. */
  #validEnd(p: number, text: string, s: number, greedy: number): number {
    const c = this.patterns[p]!;
    if (c.validate(text.slice(s, greedy))) return greedy;
    for (let e = greedy - 1; e > s; e--) if (this.exact(p, text, s, e) && c.validate(text.slice(s, e))) return e;
    return 0;
  }
}

/** Applies masks the way the engine's actions do, for the bench and tests (mask / redact only). */
export function applyMatches(text: string, matches: readonly RefMatch[], replace: (p: number, match: string) => string): string {
  if (matches.length === 0) return text;
  let out = '';
  let at = 0;
  for (const m of matches) {
    out += text.slice(at, m.s) + replace(m.p, text.slice(m.s, m.e));
    at = m.e;
  }
  return out + text.slice(at);
}

/** The engine's mask action: letters and digits become `ch` except the first/last few. */
export function maskText(t: string, keepLast: number, keepFirst = 0, ch = '*'): string {
  const total = (t.match(/[A-Za-z0-9]/g) ?? []).length;
  let k = 0;
  let out = '';
  for (const c of t) {
    if (/[A-Za-z0-9]/.test(c)) {
      k++;
      if (k > keepFirst && k + keepLast <= total) { out += ch; continue; }
    }
    out += c;
  }
  return out;
}
