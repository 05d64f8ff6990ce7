// Rules -> one binary "program" for the WASM engine (layout: wasm/assembly/program.ts).
// Built once at config load; the main thread and every pool worker load the same bytes.
import { createHash } from 'node:crypto';
import { ByteSet, WORD } from './byteset.ts';
import { AutomatonError, buildDfa, Nfa, Partition, type Dfa } from './automaton.ts';
import { parseJsonPath, type Step } from './jsonpath.ts';
import { buildPrefilter, patternFacts, type Prefilter } from './prefilter.ts';
import { nullable, parseFlags, parsePattern, PatternError, type Node } from './regex.ts';
import { detector } from '../detectors.ts';

export const PROGRAM_MAGIC = 0x31504753; // "SGP1"
export const MAX_PATTERNS = 64;
const HEADER_WORDS = 32;

export const ActionCode = { redact: 0, mask: 1, hash: 2, tokenize: 3, drop: 4, block: 5, protect: 6 } as const;
export const FormatCode = { auto: 0, json: 1, text: 2 } as const;

export type ActionSpec =
  | { type: 'redact'; replacement: string }
  | { type: 'mask'; keepLast: number; keepFirst: number; char: string }
  | { type: 'hash'; length: number }
  | { type: 'tokenize'; format: 'token' | 'preserve'; keepLast: number; prefix: string }
  | { type: 'drop' }
  | { type: 'block'; reason: string }
  /** encrypt / decrypt: the engine marks the value, the host replaces it (src/protect/protector.ts) */
  | { type: 'protect' };

export interface RuleSpec {
  id: string;
  /** a built-in detector id, a pattern in the rule subset, or nothing (field rules act on the whole value) */
  match: { detector: string } | { pattern: string; flags?: string } | null;
  fields: string[] | null;
  action: ActionSpec;
}

export interface RulesetSpec {
  /** indices into the rules */
  rules: number[];
  format: 'auto' | 'json' | 'text';
  /** a value that should be JSON and does not parse: scanned as bytes (default) or refused */
  malformedJson?: 'scan' | 'block';
}

/** ruleset flag bits (wasm/assembly/program.ts RSF_*) */
const RSF_BLOCK_MALFORMED = 1;
const RSF_WHOLE_VALUE_RULES = 2;

export interface KeySpec {
  version: number;
  secret: Uint8Array;
}

export interface ProgramSpec {
  rules: RuleSpec[];
  rulesets: RulesetSpec[];
  keys: KeySpec[];
  activeKey: number | null;
}

export interface PatternInfo {
  rule: number;
  source: string;
  ast: Node;
  validator: number;
  /** see Detector.interiorAnchor */
  interiorAnchor: boolean;
}

export interface CompiledProgram {
  bytes: Uint8Array;
  /** identifies the rules (not the key material): workers check it against each task */
  version: string;
  patterns: PatternInfo[];
  stats: { patterns: number; classes: number; forwardStates: number; reverseStates: number[]; planes: number; triggers: number; compileMs: number };
  prefilter: Prefilter;
  forward: Dfa;
}

export class RuleCompileError extends Error {
  readonly rule: string;
  constructor(rule: string, message: string) {
    super(message);
    this.name = 'RuleCompileError';
    this.rule = rule;
  }
}

/** Mirrors wasm/assembly validators: which detector validator a pattern uses. */
function patternOf(rule: RuleSpec): { source: string; ast: Node; validator: number; interiorAnchor: boolean } | null {
  if (!rule.match) return null;
  if ('detector' in rule.match) {
    const d = detector(rule.match.detector);
    if (!d) throw new RuleCompileError(rule.id, `unknown detector "${rule.match.detector}"`);
    return { source: d.pattern, ast: parsePattern(d.pattern), validator: d.validator, interiorAnchor: d.interiorAnchor === true };
  }
  try {
    const ast = parsePattern(rule.match.pattern, parseFlags(rule.match.flags ?? ''));
    if (nullable(ast)) throw new PatternError('the pattern can match the empty string', 0);
    return { source: rule.match.pattern, ast, validator: 0, interiorAnchor: false };
  } catch (err) {
    if (err instanceof PatternError) throw new RuleCompileError(rule.id, `pattern /${rule.match.pattern}/: ${err.message}`);
    throw err;
  }
}

export function compileProgram(spec: ProgramSpec): CompiledProgram {
  const t0 = performance.now();
  const patterns: PatternInfo[] = [];
  const patternOfRule: number[] = [];
  spec.rules.forEach((r, i) => {
    const p = patternOf(r);
    if (p) {
      if (patterns.length >= MAX_PATTERNS) throw new RuleCompileError(r.id, `at most ${MAX_PATTERNS} pattern/detector rules are supported`);
      patternOfRule.push(patterns.length);
      patterns.push({ rule: i, ...p });
    } else patternOfRule.push(-1);
  });

  const nfa = new Nfa();
  for (const p of patterns) nfa.addPattern(p.ast);
  const sets: ByteSet[] = [];
  for (const es of nfa.edges) for (const e of es) sets.push(e.set);
  for (const pr of nfa.allPreds()) {
    if (pr.k === 'behind' || pr.k === 'ahead') sets.push(pr.set);
    // a class's representative stands for every byte in it, also as the context of \b
    if (pr.k === 'word' || pr.k === 'nonword') sets.push(WORD);
  }
  const classes = new Partition(sets);
  let forward: Dfa;
  const reverse: Dfa[] = [];
  try {
    forward = buildDfa(nfa, classes, false);
    for (const p of patterns) {
      const one = new Nfa();
      one.addPattern(p.ast);
      reverse.push(buildDfa(one.reversed(), classes, true));
    }
  } catch (err) {
    if (err instanceof AutomatonError) throw new RuleCompileError(spec.rules.map((r) => r.id).join(', '), err.message);
    throw err;
  }
  const prefilter = buildPrefilter(patterns.map((p) => patternFacts(p.ast, p.interiorAnchor)));
  if (prefilter.triggers.length > 32) throw new RuleCompileError('*', 'too many distinct prefilter triggers (max 32)');

  const w = new Writer();
  w.u32s(new Array(HEADER_WORDS).fill(0)); // header, filled at the end
  const header: number[] = new Array(HEADER_WORDS).fill(0);
  header[0] = PROGRAM_MAGIC;
  header[2] = patterns.length;
  const C = classes.count;
  header[3] = C;

  w.align(16);
  header[4] = w.offset;
  for (let b = 0; b < 256; b++) w.u16(classes.of[b]! * 4);

  // rows: next-row byte offsets per class (padded to an even count so the masks are 8-aligned), accept, eoi accept
  const cols = C + (C & 1);
  const stride = (cols + 4) * 4;
  header[5] = stride;
  const writeDfa = (d: Dfa): { table: number; start: number } => {
    w.align(16);
    const table = w.offset;
    for (let s = 0; s < d.states; s++) {
      for (let c = 0; c < C; c++) w.u32((d.trans[s * C + c]! / C) * stride);
      if (cols > C) w.u32(0);
      w.u64(d.accept[s]!);
      w.u64(d.eoiAccept[s]!);
    }
    const start = w.offset;
    for (let v = 0; v <= 256; v++) w.u32((d.start[v]! / C) * stride);
    return { table, start };
  };
  const fwd = writeDfa(forward);
  header[6] = fwd.table;
  header[7] = fwd.start;
  const revOffsets = reverse.map(writeDfa);

  w.align(16);
  header[8] = w.offset;
  patterns.forEach((p, i) => { w.u32(p.validator); w.u32(p.rule); w.u32(revOffsets[i]!.table); w.u32(revOffsets[i]!.start); });

  // per byte: which triggers' alphabets / anchor sets contain it
  w.align(16);
  header[9] = w.offset;
  for (let b = 0; b < 256; b++) {
    let m = 0;
    prefilter.triggers.forEach((t, k) => { if (t.alphabet.has(b)) m |= 1 << k; });
    w.u32(m >>> 0);
  }
  header[10] = w.offset;
  for (let b = 0; b < 256; b++) {
    let m = 0;
    prefilter.triggers.forEach((t, k) => { if (t.kind === 'anchor' && t.anchorSet.has(b)) m |= 1 << k; });
    w.u32(m >>> 0);
  }
  w.align(16);
  header[11] = w.offset;
  w.bytes(prefilter.tables);
  header[12] = prefilter.planes.length | (prefilter.tables.subarray(32).some((b) => b !== 0) ? 0x100 : 0);
  header[13] = w.offset;
  for (const [m1, m2] of prefilter.planeBits) { w.bytes(new Uint8Array(16).fill(m1)); w.bytes(new Uint8Array(16).fill(m2)); }
  // anchor-count sets live in a per-byte table too (bit k = byte in trigger k's anchorSet, any kind)
  header[25] = w.offset;
  for (let b = 0; b < 256; b++) {
    let m = 0;
    prefilter.triggers.forEach((t, k) => { if (t.anchorSet.has(b)) m |= 1 << k; });
    w.u32(m >>> 0);
  }

  header[14] = prefilter.triggers.length;
  const literalAt: number[] = [];
  header[15] = w.offset;
  for (const t of prefilter.triggers) {
    w.u32(t.kind === 'anchor' ? 0 : t.kind === 'run' ? 1 : 2);
    w.u32(t.plane);
    w.u32(t.kind === 'neighbor' ? t.plane2 | (t.interior ? 0x100 : 0) : t.detectLength);
    w.u32(t.minLength);
    w.u32(t.minAnchors);
    literalAt.push(w.offset);
    w.u32(0); // literal offset, patched below
    w.u32(t.literal?.bytes.length ?? 0);
    w.u32(t.literal?.at ?? 0);
    w.u64(t.patterns);
    w.u32(0); w.u32(0);
  }
  prefilter.triggers.forEach((t, k) => {
    if (!t.literal) return;
    const off = w.offset;
    w.bytes(Uint8Array.from(t.literal.bytes));
    w.patchU32(literalAt[k]!, off);
  });

  // rules
  const strings: Array<{ at: number; bytes: Uint8Array }> = [];
  const activeKey = spec.keys.find((k) => k.version === spec.activeKey) ?? spec.keys.reduce<KeySpec | undefined>((a, k) => (!a || k.version > a.version ? k : a), undefined);
  w.align(16);
  header[16] = spec.rules.length;
  header[17] = w.offset;
  spec.rules.forEach((r, i) => {
    const a = r.action;
    const row = new Array<number>(16).fill(0);
    row[0] = ActionCode[a.type];
    row[1] = patternOfRule[i]! >= 0 ? patternOfRule[i]! : 0xffffffff;
    let str: Uint8Array | null = null;
    if (a.type === 'redact') str = utf8(a.replacement);
    if (a.type === 'mask') { row[4] = a.keepLast; row[5] = a.keepFirst; row[6] = a.char.charCodeAt(0); }
    if (a.type === 'hash') row[7] = a.length;
    if (a.type === 'tokenize') {
      if (!activeKey) throw new RuleCompileError(r.id, 'tokenize needs a key: set inspection.tokenization.keys');
      row[8] = a.format === 'preserve' ? 1 : 0;
      row[4] = a.keepLast;
      row[9] = spec.keys.indexOf(activeKey);
      row[10] = activeKey.version;
      str = utf8(a.prefix);
    }
    row[11] = r.fields ? 1 : 0;
    const at = w.offset;
    w.u32s(row);
    if (str) strings.push({ at: at + 8, bytes: str });
  });

  // JSON paths: one state per (path, steps matched so far)
  interface PathState { step: Step | null; rule: number }
  const pathStates: PathState[] = [];
  const pathBase = new Map<string, number>(); // `${rule}:${fieldIndex}` -> first state
  spec.rules.forEach((r, ri) => {
    (r.fields ?? []).forEach((f, fi) => {
      let steps: Step[];
      try { steps = parseJsonPath(f); } catch (err) { throw new RuleCompileError(r.id, (err as Error).message); }
      pathBase.set(`${ri}:${fi}`, pathStates.length);
      for (const s of steps) pathStates.push({ step: s, rule: ri });
      pathStates.push({ step: null, rule: ri });
    });
  });
  const W = Math.max(1, Math.ceil(pathStates.length / 64));
  if (W > 8) throw new RuleCompileError('*', 'too many JSON path steps across rules (max 512)');

  // rulesets
  w.align(16);
  header[18] = spec.rulesets.length;
  header[19] = w.offset;
  const pathInitAt: number[] = [];
  for (const rs of spec.rulesets) {
    let global = 0n;
    let all = 0n;
    let hasFields = 0;
    let flags = rs.malformedJson === 'block' ? RSF_BLOCK_MALFORMED : 0;
    for (const ri of rs.rules) {
      const p = patternOfRule[ri]!;
      const r = spec.rules[ri]!;
      if (r.fields) hasFields = 1;
      if (p >= 0) {
        all |= 1n << BigInt(p);
        if (!r.fields) global |= 1n << BigInt(p);
      } else if (r.fields) flags |= RSF_WHOLE_VALUE_RULES;
    }
    let triggers = 0;
    prefilter.triggers.forEach((t, k) => { if ((t.patterns & all) !== 0n) triggers |= 1 << k; });
    w.u32(FormatCode[rs.format]);
    w.u32(hasFields);
    w.u64(global);
    w.u64(all);
    w.u32(triggers >>> 0);
    pathInitAt.push(w.offset);
    w.u32(0);
    w.u32(flags);
    w.u32(0); w.u32(0); w.u32(0);
  }
  spec.rulesets.forEach((rs, k) => {
    w.align(8);
    const at = w.offset;
    const words = new BigUint64Array(W);
    for (const ri of rs.rules) {
      (spec.rules[ri]!.fields ?? []).forEach((_, fi) => {
        const s = pathBase.get(`${ri}:${fi}`)!;
        words[s >> 6]! |= 1n << BigInt(s & 63);
      });
    }
    for (const x of words) w.u64(x);
    w.patchU32(pathInitAt[k]!, at);
  });

  header[20] = pathStates.length;
  header[21] = W;
  w.align(16);
  header[22] = w.offset;
  const nameAt: Array<{ at: number; name: Uint8Array }> = [];
  for (const ps of pathStates) {
    const s = ps.step;
    w.u32(s === null ? 0 : s.kind === 'name' ? 0 : s.kind === 'any' ? 1 : 2);
    w.u32(s?.desc ? 1 : 0);
    if (s?.kind === 'name') nameAt.push({ at: w.offset, name: utf8(s.name) });
    w.u32(0); w.u32(0);
    w.u32(s?.kind === 'index' ? s.index : 0);
    w.u32(s === null ? 1 : 0);
    w.u32(ps.rule);
    w.u32(0);
  }
  for (const n of nameAt) strings.push({ at: n.at, bytes: n.name });

  // keys: the 64-byte HMAC key block; the engine derives the inner/outer states at load
  w.align(16);
  header[23] = spec.keys.length;
  header[24] = w.offset;
  const keyAt: number[] = [];
  for (const k of spec.keys) {
    w.u32(k.version);
    keyAt.push(w.offset);
    w.u32(0); w.u32(0); w.u32(0);
  }
  spec.keys.forEach((k, i) => {
    w.align(16);
    const block = new Uint8Array(64);
    block.set(k.secret.length > 64 ? createHash('sha256').update(k.secret).digest() : k.secret);
    const at = w.offset;
    w.bytes(block);
    w.bytes(new Uint8Array(64)); // inner + outer state, filled by the engine
    w.patchU32(keyAt[i]!, at);
    w.patchU32(keyAt[i]! + 4, at + 64);
    w.patchU32(keyAt[i]! + 8, at + 96);
  });

  for (const s of strings) {
    const off = w.offset;
    w.bytes(s.bytes);
    w.patchU32(s.at, off);
    w.patchU32(s.at + 4, s.bytes.length);
  }
  w.align(16);
  header[1] = w.offset;
  const bytes = w.finish();
  new DataView(bytes.buffer).setUint32(0, 0);
  for (let i = 0; i < HEADER_WORDS; i++) new DataView(bytes.buffer).setUint32(i * 4, header[i]! >>> 0, true);

  const version = createHash('sha256')
    .update(JSON.stringify({ rules: spec.rules, rulesets: spec.rulesets, keys: spec.keys.map((k) => k.version), active: activeKey?.version }))
    .digest('hex')
    .slice(0, 16);
  return {
    bytes,
    version,
    patterns,
    prefilter,
    forward,
    stats: {
      patterns: patterns.length,
      classes: C,
      forwardStates: forward.states,
      reverseStates: reverse.map((d) => d.states),
      planes: prefilter.planes.length,
      triggers: prefilter.triggers.length,
      compileMs: Math.round(performance.now() - t0),
    },
  };
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

class Writer {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  offset = 0;

  #room(n: number): void {
    if (this.offset + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.offset + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf);
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  align(a: number): void {
    const pad = (a - (this.offset % a)) % a;
    this.#room(pad);
    this.offset += pad;
  }

  u16(v: number): void { this.#room(2); this.#view.setUint16(this.offset, v, true); this.offset += 2; }
  u32(v: number): void { this.#room(4); this.#view.setUint32(this.offset, v >>> 0, true); this.offset += 4; }
  u64(v: bigint): void { this.#room(8); this.#view.setBigUint64(this.offset, v, true); this.offset += 8; }
  u32s(vs: number[]): void { for (const v of vs) this.u32(v); }
  bytes(b: Uint8Array): void { this.#room(b.length); this.#buf.set(b, this.offset); this.offset += b.length; }
  patchU32(at: number, v: number): void { this.#view.setUint32(at, v >>> 0, true); }
  finish(): Uint8Array { return this.#buf.slice(0, this.offset); }
}
