// Patterns -> one byte-level NFA -> two DFAs over byte classes:
//
//  * forward, anchored: run from a candidate start, reports every end of every pattern
//    (so validators can pick the longest valid one);
//  * reverse, unanchored: run right to left over a region, reports at each position the
//    patterns that have a match starting there.
//
// Assertions (^ $ \b \B and one-byte lookaround) depend on the bytes left and right of a
// position. A DFA state remembers the class of the last byte it consumed (the "context"),
// and a match end is only known once the next byte is seen: a state's accept mask means
// "a match ended just before the byte that led here" (as in Rust's regex-automata), and
// a separate end-of-input mask covers matches that end at the end of the text.
import { ByteSet, WORD } from './byteset.ts';
import type { Node } from './regex.ts';

export type Pred =
  | { k: 'start' }
  | { k: 'end' }
  | { k: 'word' }
  | { k: 'nonword' }
  | { k: 'behind'; set: ByteSet; negate: boolean }
  | { k: 'ahead'; set: ByteSet; negate: boolean };

/** Context sentinels: no byte to the left (start of text) / to the right (end of text). */
export const START = 256;
export const END = 257;

export function evalPred(p: Pred, left: number, right: number): boolean {
  switch (p.k) {
    case 'start': return left === START;
    case 'end': return right === END;
    case 'word': return isWord(left) !== isWord(right);
    case 'nonword': return isWord(left) === isWord(right);
    case 'behind': return (left !== START && p.set.has(left)) !== p.negate;
    case 'ahead': return (right !== END && p.set.has(right)) !== p.negate;
  }
}

const isWord = (b: number): boolean => b < 256 && WORD.has(b);

export class AutomatonError extends Error {
  override name = 'AutomatonError';
}

export interface Limits {
  nfaStates: number;
  dfaStates: number;
}

export const DEFAULT_LIMITS: Limits = { nfaStates: 200_000, dfaStates: 60_000 };

// ---- NFA ----

export class Nfa {
  readonly edges: Array<Array<{ set: ByteSet; to: number }>> = [];
  readonly eps: number[][] = [];
  readonly looks: Array<Array<{ pred: Pred; to: number }>> = [];
  readonly starts: number[] = [];
  readonly accepts: number[] = [];
  readonly #limit: number;

  constructor(limit = DEFAULT_LIMITS.nfaStates) {
    this.#limit = limit;
  }

  get size(): number {
    return this.edges.length;
  }

  state(): number {
    if (this.edges.length >= this.#limit) throw new AutomatonError(`the patterns need more than ${this.#limit} NFA states; reduce bounded repetitions ({m,n})`);
    this.edges.push([]);
    this.eps.push([]);
    this.looks.push([]);
    return this.edges.length - 1;
  }

  addPattern(node: Node): number {
    const { start, end } = this.fragment(node);
    this.starts.push(start);
    this.accepts.push(end);
    return this.starts.length - 1;
  }

  fragment(n: Node): { start: number; end: number } {
    switch (n.t) {
      case 'set': {
        const s = this.state();
        const e = this.state();
        this.edges[s]!.push({ set: n.set, to: e });
        return { start: s, end: e };
      }
      case 'seq': {
        const s = this.state();
        let cur = s;
        for (const item of n.items) {
          const f = this.fragment(item);
          this.eps[cur]!.push(f.start);
          cur = f.end;
        }
        return { start: s, end: cur };
      }
      case 'alt': {
        const s = this.state();
        const e = this.state();
        for (const item of n.items) {
          const f = this.fragment(item);
          this.eps[s]!.push(f.start);
          this.eps[f.end]!.push(e);
        }
        return { start: s, end: e };
      }
      case 'rep': {
        const s = this.state();
        let cur = s;
        for (let i = 0; i < n.min; i++) {
          const f = this.fragment(n.item);
          this.eps[cur]!.push(f.start);
          cur = f.end;
        }
        if (n.max === Infinity) {
          const loop = this.state();
          this.eps[cur]!.push(loop);
          const f = this.fragment(n.item);
          this.eps[loop]!.push(f.start);
          this.eps[f.end]!.push(loop);
          return { start: s, end: loop };
        }
        const e = this.state();
        for (let i = n.min; i < n.max; i++) {
          this.eps[cur]!.push(e);
          const f = this.fragment(n.item);
          this.eps[cur]!.push(f.start);
          cur = f.end;
        }
        this.eps[cur]!.push(e);
        return { start: s, end: e };
      }
      case 'assert':
      case 'look': {
        const s = this.state();
        const e = this.state();
        const pred: Pred = n.t === 'assert' ? { k: n.kind } : { k: n.ahead ? 'ahead' : 'behind', set: n.set, negate: n.negate };
        this.looks[s]!.push({ pred, to: e });
        return { start: s, end: e };
      }
    }
  }

  /** Every edge turned around; starts and accepts swap. Predicates keep their meaning. */
  reversed(): Nfa {
    const r = new Nfa(Infinity);
    for (let i = 0; i < this.size; i++) r.state();
    for (let s = 0; s < this.size; s++) {
      for (const e of this.edges[s]!) r.edges[e.to]!.push({ set: e.set, to: s });
      for (const t of this.eps[s]!) r.eps[t]!.push(s);
      for (const l of this.looks[s]!) r.looks[l.to]!.push({ pred: l.pred, to: s });
    }
    r.starts.push(...this.accepts);
    r.accepts.push(...this.starts);
    return r;
  }

  allPreds(): Pred[] {
    return this.looks.flatMap((ls) => ls.map((l) => l.pred));
  }
}

// ---- byte classes ----

/** Partition of 0..255 into classes that every relevant byte set is a union of. */
export class Partition {
  /** byte -> class id */
  readonly of: Uint16Array;
  /** class id -> representative byte */
  readonly reps: number[];

  constructor(sets: ByteSet[]) {
    const sig = new Map<string, number>();
    this.of = new Uint16Array(256);
    this.reps = [];
    for (let b = 0; b < 256; b++) {
      let key = '';
      for (const s of sets) key += s.has(b) ? '1' : '0';
      let id = sig.get(key);
      if (id === undefined) {
        id = this.reps.length;
        sig.set(key, id);
        this.reps.push(b);
      }
      this.of[b] = id;
    }
  }

  get count(): number {
    return this.reps.length;
  }
}

// ---- DFA ----

export interface Dfa {
  /** number of states; state 0 is dead in the forward DFA (never reached in the reverse one) */
  states: number;
  classes: number;
  /** [state * classes + class] -> next state * classes (row offset) */
  trans: Uint32Array;
  /** per state: patterns whose match ended before the byte that led here */
  accept: BigUint64Array;
  /** per state: patterns whose match ends at the end of the text */
  eoiAccept: BigUint64Array;
  /** per context byte (256 = no byte: start of text forward, end of text reverse): initial row offset */
  start: Uint32Array;
}

interface Raw {
  trans: number[][];
  accept: bigint[];
  eoi: bigint[];
  start: number[];
}

/**
 * Subset construction. `reverse` reads right to left with the NFA reversed (context =
 * the byte to the right, transition byte = the byte to the left) and re-injects the start
 * set at every position (unanchored).
 */
export function buildDfa(nfa: Nfa, classes: Partition, reverse: boolean, limit = DEFAULT_LIMITS.dfaStates): Dfa {
  const preds = nfa.allPreds();
  const usesWord = preds.some((p) => p.k === 'word' || p.k === 'nonword');
  const behindSets = preds.flatMap((p) => (p.k === 'behind' ? [p.set] : []));
  const aheadSets = preds.flatMap((p) => (p.k === 'ahead' ? [p.set] : []));
  const leftPart = new Partition(usesWord ? [WORD, ...behindSets] : behindSets);
  const rightPart = new Partition(usesWord ? [WORD, ...aheadSets] : aheadSets);
  // the state's context is on the side already read; the transition byte on the other
  const ctxPart = reverse ? rightPart : leftPart;
  const stepPart = reverse ? leftPart : rightPart;
  const sentinel = reverse ? END : START;
  const ctxCount = ctxPart.count + 1; // + sentinel
  const ctxRep = (ctx: number) => (ctx === ctxPart.count ? sentinel : ctxPart.reps[ctx]!);

  const C = classes.count;
  // per class: its context class (as the state's new context) and its step-side class
  const classCtx = classes.reps.map((r) => ctxPart.of[r]!);
  const classStep = classes.reps.map((r) => stepPart.of[r]!);
  const stepGroups: number[][] = Array.from({ length: stepPart.count }, () => []);
  for (let c = 0; c < C; c++) stepGroups[classStep[c]!]!.push(c);
  // per NFA edge: the classes it consumes
  const edgeClasses = nfa.edges.map((es) => es.map((e) => {
    const cs: number[] = [];
    for (let c = 0; c < C; c++) if (e.set.has(classes.reps[c]!)) cs.push(c);
    return cs;
  }));
  const acceptBit = new Map<number, bigint>();
  nfa.accepts.forEach((s, p) => acceptBit.set(s, (acceptBit.get(s) ?? 0n) | (1n << BigInt(p))));
  const startSet = [...new Set(nfa.starts)].sort((a, b) => a - b);

  const closure = (seed: readonly number[], left: number, right: number): number[] => {
    const seen = new Set<number>(seed);
    const stack = [...seed];
    while (stack.length > 0) {
      const s = stack.pop()!;
      for (const t of nfa.eps[s]!) if (!seen.has(t)) { seen.add(t); stack.push(t); }
      for (const l of nfa.looks[s]!) if (!seen.has(l.to) && evalPred(l.pred, left, right)) { seen.add(l.to); stack.push(l.to); }
    }
    return [...seen];
  };
  const acceptOf = (set: readonly number[]): bigint => {
    let m = 0n;
    for (const s of set) { const b = acceptBit.get(s); if (b !== undefined) m |= b; }
    return m;
  };

  const ids = new Map<string, number>();
  const kOf: number[][] = [];
  const ctxOf: number[] = [];
  const raw: Raw = { trans: [], accept: [], eoi: [], start: [] };
  const intern = (k: number[], ctx: number, acc: bigint): number => {
    const key = k.length === 0 && acc === 0n && !reverse ? 'dead' : `${k.join(',')}|${ctx}|${acc}`;
    let id = ids.get(key);
    if (id === undefined) {
      id = kOf.length;
      if (id >= limit) throw new AutomatonError(`the patterns need more than ${limit} DFA states (${reverse ? 'reverse' : 'forward'} automaton); simplify bounded repetitions or split the rule`);
      ids.set(key, id);
      kOf.push(k);
      ctxOf.push(ctx);
      raw.accept.push(acc);
    }
    return id;
  };
  if (!reverse) intern([], 0, 0n); // dead = 0
  for (let v = 0; v <= 256; v++) {
    const ctx = v === 256 ? ctxPart.count : ctxPart.of[v]!;
    raw.start.push(intern(reverse ? [] : startSet, ctx, 0n));
  }
  for (let d = 0; d < kOf.length; d++) {
    const k = kOf[d]!;
    const ctx = ctxOf[d]!;
    const seed = reverse ? mergeSorted(k, startSet) : k;
    const row = new Array<number>(C);
    for (let g = 0; g < stepGroups.length; g++) {
      const group = stepGroups[g]!;
      if (group.length === 0) continue;
      const byte = stepPart.reps[g]!;
      const cl = seed.length === 0 ? [] : reverse ? closure(seed, byte, ctxRep(ctx)) : closure(seed, ctxRep(ctx), byte);
      const acc = acceptOf(cl);
      const targets = new Map<number, number[]>();
      for (const c of group) targets.set(c, []);
      for (const s of cl) {
        const es = nfa.edges[s]!;
        for (let i = 0; i < es.length; i++) {
          for (const c of edgeClasses[s]![i]!) targets.get(c)?.push(es[i]!.to);
        }
      }
      for (const c of group) {
        const next = [...new Set(targets.get(c)!)].sort((a, b) => a - b);
        row[c] = intern(next, classCtx[c]!, acc);
      }
    }
    raw.trans.push(row);
    const seedEoi = seed;
    const eoiCl = seedEoi.length === 0 ? [] : reverse ? closure(seedEoi, START, ctxRep(ctx)) : closure(seedEoi, ctxRep(ctx), END);
    raw.eoi.push(acceptOf(eoiCl));
  }
  void ctxCount;
  return minimize(raw, C, reverse);
}

function mergeSorted(a: readonly number[], b: readonly number[]): number[] {
  if (a.length === 0) return b as number[];
  return [...new Set([...a, ...b])].sort((x, y) => x - y);
}

/** Moore's partition refinement; the forward DFA's dead state becomes state 0. */
function minimize(raw: Raw, C: number, reverse: boolean): Dfa {
  const n = raw.trans.length;
  let block = new Int32Array(n);
  {
    const init = new Map<string, number>();
    for (let s = 0; s < n; s++) {
      const key = `${raw.accept[s]}|${raw.eoi[s]}`;
      let b = init.get(key);
      if (b === undefined) { b = init.size; init.set(key, b); }
      block[s] = b;
    }
  }
  let count = new Set(block).size;
  for (;;) {
    const sig = new Map<string, number>();
    const next = new Int32Array(n);
    for (let s = 0; s < n; s++) {
      const row = raw.trans[s]!;
      let key = String(block[s]);
      for (let c = 0; c < C; c++) key += ',' + block[row[c]!];
      let b = sig.get(key);
      if (b === undefined) { b = sig.size; sig.set(key, b); }
      next[s] = b;
    }
    block = next;
    if (sig.size === count) break;
    count = sig.size;
  }
  // renumber: forward dead block first, then in order of first appearance
  const order = new Map<number, number>();
  if (!reverse) order.set(block[0]!, 0);
  for (let s = 0; s < n; s++) if (!order.has(block[s]!)) order.set(block[s]!, order.size);
  const states = order.size;
  const trans = new Uint32Array(states * C);
  const accept = new BigUint64Array(states);
  const eoiAccept = new BigUint64Array(states);
  const done = new Uint8Array(states);
  for (let s = 0; s < n; s++) {
    const id = order.get(block[s]!)!;
    if (done[id]) continue;
    done[id] = 1;
    const row = raw.trans[s]!;
    for (let c = 0; c < C; c++) trans[id * C + c] = order.get(block[row[c]!]!)! * C;
    accept[id] = raw.accept[s]!;
    eoiAccept[id] = raw.eoi[s]!;
  }
  const start = Uint32Array.from(raw.start, (s) => order.get(block[s]!)! * C);
  return { states, classes: C, trans, accept, eoiAccept, start };
}

// ---- static facts per pattern (for the prefilter and validators) ----

export function minLength(n: Node): number {
  switch (n.t) {
    case 'set': return 1;
    case 'seq': return n.items.reduce((a, i) => a + minLength(i), 0);
    case 'alt': return Math.min(...n.items.map(minLength));
    case 'rep': return n.min * minLength(n.item);
    case 'assert': case 'look': return 0;
  }
}

export function maxLength(n: Node): number {
  switch (n.t) {
    case 'set': return 1;
    case 'seq': return n.items.reduce((a, i) => a + maxLength(i), 0);
    case 'alt': return Math.max(...n.items.map(maxLength));
    case 'rep': {
      const m = maxLength(n.item);
      return m === 0 ? 0 : n.max === Infinity ? Infinity : n.max * m;
    }
    case 'assert': case 'look': return 0;
  }
}

/** Every byte any match can contain. */
export function alphabet(n: Node, into = new ByteSet()): ByteSet {
  switch (n.t) {
    case 'set': into.addSet(n.set); break;
    case 'seq': case 'alt': for (const i of n.items) alphabet(i, into); break;
    case 'rep': if (n.max > 0) alphabet(n.item, into); break;
    case 'assert': case 'look': break;
  }
  return into;
}

/**
 * Byte sets of which every match contains at least one byte ("cuts"). The prefilter
 * picks the rarest (lowest `weight`) as the pattern's anchor.
 */
export function cuts(n: Node, weight: (s: ByteSet) => number): ByteSet[] {
  switch (n.t) {
    case 'set': return [n.set];
    case 'seq': return n.items.flatMap((i) => cuts(i, weight));
    case 'alt': {
      const per = n.items.map((i) => cuts(i, weight));
      if (per.some((c) => c.length === 0)) return [];
      // the best cut of each alternative, united
      const u = new ByteSet();
      for (const cs of per) u.addSet(cs.reduce((a, b) => (weight(b) < weight(a) ? b : a)));
      return [u];
    }
    case 'rep': return n.min > 0 ? cuts(n.item, weight) : [];
    case 'assert': case 'look': return [];
  }
}
