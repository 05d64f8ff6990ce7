// The SIMD prefilter: what must be true of the bytes around any match, cheap enough to
// test 64 bytes at a time, so the automata run only on the few regions that pass.
//
// For each pattern the compiler derives
//   * its alphabet (every byte a match can contain) and minimum length, and
//   * its rarest mandatory byte set ("anchor"), optionally inside a mandatory literal.
// Then it picks one trigger per pattern:
//   * anchor trigger: any anchor byte (and the literal around it), for patterns with a
//     rare mandatory byte (email's "@", PEM's "PRIVATE KEY");
//   * run trigger: a run of at least minLength alphabet bytes (card numbers: 13 bytes of
//     [0-9 -]), for patterns made of common bytes.
// In WASM, "planes" (byte sets) are classified 16 bytes at a time with nibble lookup
// tables (the "shufti" technique: two i8x16.swizzle per table pair give each byte up to
// 8 class bits, each a lo-nibble-set x hi-nibble-set rectangle); runs are found in 64-bit
// plane masks with shift-and doubling. A trigger then becomes a region: the maximal run
// of the pattern's alphabet around it, where the automata run.
import { ByteSet } from './byteset.ts';
import { alphabet, cuts, minLength } from './automaton.ts';
import type { Node } from './regex.ts';

/** Rough byte frequencies of JSON events and log text, for picking anchors and planes. */
export const FREQ: Float64Array = (() => {
  const f = new Float64Array(256).fill(0.0002);
  const english = 'etaoinshrdlcumwfgypbvkjxqz';
  for (let i = 0; i < 26; i++) f[0x61 + english.charCodeAt(i) - 0x61] = 0.06 * Math.pow(0.88, i);
  for (let i = 0; i < 26; i++) f[0x41 + i] = 0.0015;
  for (const c of 'JQXZ') f[c.charCodeAt(0)] = 0.0004;
  for (let d = 0; d < 10; d++) f[0x30 + d] = 0.013;
  const set = (chars: string, v: number) => { for (const c of chars) f[c.charCodeAt(0)] = v; };
  set(' ', 0.08);
  set('"', 0.06);
  set(':,', 0.025);
  set('.-_', 0.008);
  set('{}[]', 0.004);
  set('/', 0.003);
  set('\n', 0.002);
  set('@+=()%&;!?\'*#$<>|\\~^`', 0.0005);
  for (let b = 0x80; b < 0x100; b++) f[b] = 0.0003;
  return f;
})();

export const weight = (s: ByteSet): number => {
  let w = 0;
  for (let b = 0; b < 256; b++) if (s.has(b)) w += FREQ[b]!;
  return w;
};

/** Anchors at or below this frequency are rare enough to visit one by one. */
const ANCHOR_MAX_WEIGHT = 0.004;
/** Run triggers compare at most this many bytes in the bitmask stage (the scalar check is exact). */
export const MAX_DETECT_RUN = 64;
export const MAX_PLANES = 6;

export interface PatternFacts {
  alphabet: ByteSet;
  /** no match starts or ends with an anchor byte: every anchor has match bytes on both sides */
  interior: boolean;
  minLength: number;
  anchor: ByteSet | null;
  /** fewest anchor bytes any match contains */
  minAnchors: number;
  /** a mandatory literal and the offset of its rarest byte */
  literal: { bytes: number[]; at: number } | null;
}

/**
 * Facts per branch: a top-level alternation (after distributing what surrounds it) gets
 * one trigger per branch, so each branch is filtered by its own alphabet and length.
 * `interiorHint`: the detector guarantees that a valid match has an anchor byte with match
 * bytes on both sides even where the pattern alone does not (IPv6: "::1", "1::").
 */
export function patternFacts(ast: Node, interiorHint = false): PatternFacts[] {
  return branches(ast).map((b) => branchFacts(b, interiorHint));
}

function branchFacts(ast: Node, interiorHint: boolean): PatternFacts {
  const alpha = alphabet(ast);
  const min = minLength(ast);
  const literal = bestLiteral(ast);
  const candidates = cuts(ast, weight).concat(firstSets(ast));
  let anchor: ByteSet | null = null;
  for (const c of candidates) if (!anchor || weight(c) < weight(anchor)) anchor = c;
  const edges = edgeBytes(ast, true).union(edgeBytes(ast, false));
  const interior = anchor !== null && (interiorHint || anchor.intersect(edges).isEmpty());
  return { alphabet: alpha, minLength: min, anchor, minAnchors: anchor ? countOf(ast, anchor) : 0, literal, interior };
}

const MAX_BRANCHES = 4;

function branches(n: Node): Node[] {
  if (n.t === 'alt') return n.items.length <= MAX_BRANCHES ? n.items : [n];
  if (n.t !== 'seq') return [n];
  const i = n.items.findIndex((x) => x.t === 'alt');
  const alt = n.items[i];
  if (i < 0 || alt?.t !== 'alt' || alt.items.length > MAX_BRANCHES) return [n];
  // p (a|b) s = p a s | p b s
  return alt.items.map((a) => ({ t: 'seq', items: [...n.items.slice(0, i), a, ...n.items.slice(i + 1)] }) as Node);
}

/** Bytes that can be the first (or last) byte of a match. */
function edgeBytes(n: Node, first: boolean): ByteSet {
  switch (n.t) {
    case 'set': return n.set.clone();
    case 'seq': {
      const out = new ByteSet();
      const items = first ? n.items : [...n.items].reverse();
      for (const i of items) {
        out.addSet(edgeBytes(i, first));
        if (!nullableNode(i)) break;
      }
      return out;
    }
    case 'alt': return n.items.reduce((a, i) => a.addSet(edgeBytes(i, first)), new ByteSet());
    case 'rep': return n.max > 0 ? edgeBytes(n.item, first) : new ByteSet();
    default: return new ByteSet();
  }
}

function nullableNode(n: Node): boolean {
  return minLength(n) === 0;
}

/** Fewest bytes from `set` in any match of `n`. */
function countOf(n: Node, set: ByteSet): number {
  switch (n.t) {
    case 'set': return n.set.subsetOf(set) ? 1 : 0;
    case 'seq': return n.items.reduce((a, i) => a + countOf(i, set), 0);
    case 'alt': return Math.min(...n.items.map((i) => countOf(i, set)));
    case 'rep': return n.min * countOf(n.item, set);
    default: return 0;
  }
}

/** Union of the first-byte sets of the alternatives: a cut the per-alternative rule misses (AKIA|ASIA -> {A}). */
function firstSets(n: Node): ByteSet[] {
  const first = (m: Node): ByteSet | null => {
    switch (m.t) {
      case 'set': return m.set;
      case 'seq': {
        for (const i of m.items) {
          if (i.t === 'assert' || i.t === 'look') continue;
          return first(i);
        }
        return null;
      }
      case 'alt': {
        const u = new ByteSet();
        for (const i of m.items) { const f = first(i); if (!f) return null; u.addSet(f); }
        return u;
      }
      case 'rep': return m.min > 0 ? first(m.item) : null;
      default: return null;
    }
  };
  const f = first(n);
  return f ? [f] : [];
}

/** The mandatory literal (run of single-byte sets at the top level) with the rarest byte. */
function bestLiteral(n: Node): { bytes: number[]; at: number } | null {
  const items = n.t === 'seq' ? flatten(n.items) : [n];
  let best: { bytes: number[]; at: number; w: number } | null = null;
  let cur: number[] = [];
  const flush = () => {
    if (cur.length >= 2) {
      let at = 0;
      for (let i = 1; i < cur.length; i++) if (FREQ[cur[i]!]! < FREQ[cur[at]!]!) at = i;
      const w = FREQ[cur[at]!]!;
      if (!best || w < best.w || (w === best.w && cur.length > best.bytes.length)) best = { bytes: cur, at, w };
    }
    cur = [];
  };
  for (const i of items) {
    if (i.t === 'set' && i.set.size() === 1) cur.push(i.set.bytes()[0]!);
    else if (i.t === 'assert' || i.t === 'look') flush();
    else flush();
  }
  flush();
  const b = best as { bytes: number[]; at: number; w: number } | null;
  return b ? { bytes: b.bytes, at: b.at } : null;
}

function flatten(items: Node[]): Node[] {
  return items.flatMap((i) => (i.t === 'seq' ? flatten(i.items) : [i]));
}

/**
 * Anchor triggers visit each byte of their anchor set (one shared plane for all of them;
 * a table says which triggers a byte belongs to); run triggers fire on a run of at least
 * `detectLength` bytes of their plane. Either way the scalar stage then takes the maximal
 * run of the pattern alphabet around the hit and checks minLength, minAnchors and the
 * literal exactly; what survives is a region for the automata.
 */
export interface Trigger {
  /** neighbor: an anchor byte next to an alphabet byte (for anchors too common to visit all) */
  kind: 'anchor' | 'run' | 'neighbor';
  /** neighbor triggers: alphabet bytes needed on both sides (else on either) */
  interior: boolean;
  /** run triggers: plane index; neighbor triggers: the anchor plane */
  plane: number;
  /** neighbor triggers: the alphabet plane */
  plane2: number;
  detectLength: number;
  /** anchor triggers: the bytes that start a visit */
  anchorSet: ByteSet;
  minLength: number;
  /** the region must hold at least this many anchorSet bytes (0 = no check) */
  minAnchors: number;
  literal: { bytes: number[]; at: number } | null;
  /** the union of the alphabets of `patterns`: the region extends over these bytes */
  alphabet: ByteSet;
  patterns: bigint;
}

export interface Prefilter {
  /** planes[0]: rare anchors (anchor triggers), planes[1]: common anchors (neighbor triggers), then alphabets */
  planes: ByteSet[];
  /** shufti tables: [lo1, hi1, lo2, hi2], 16 bytes each */
  tables: Uint8Array;
  /** per plane: class bits in table pair 1 and 2 */
  planeBits: Array<[number, number]>;
  triggers: Trigger[];
}

/** Builds the planes and triggers for all patterns (facts per branch of each pattern). */
export function buildPrefilter(facts: PatternFacts[][]): Prefilter {
  const rareAnchors = new ByteSet();
  const commonAnchors = new ByteSet();
  const planes: ByteSet[] = [rareAnchors, commonAnchors];
  const planeOf = (s: ByteSet): number => {
    const i = planes.findIndex((p, k) => k > 1 && p.equals(s));
    if (i >= 0) return i;
    planes.push(s.clone());
    return planes.length - 1;
  };
  const triggers: Trigger[] = [];
  facts.forEach((fs, p) => fs.forEach((f) => {
    const bit = 1n << BigInt(p);
    // a literal's rarest byte is itself a mandatory byte, and checking the literal around it is sharper
    const literal = f.literal && FREQ[f.literal.bytes[f.literal.at]!]! <= ANCHOR_MAX_WEIGHT ? f.literal : null;
    let t: Trigger;
    const base = { minLength: f.minLength, alphabet: f.alphabet.clone(), patterns: bit, interior: false, plane2: 0 };
    if (literal) {
      t = { ...base, kind: 'anchor', plane: 0, detectLength: 1, anchorSet: ByteSet.of(literal.bytes[literal.at]!), minAnchors: 1, literal };
    } else if (f.anchor !== null && weight(f.anchor) <= ANCHOR_MAX_WEIGHT) {
      t = { ...base, kind: 'anchor', plane: 0, detectLength: 1, anchorSet: f.anchor, minAnchors: f.minAnchors, literal: null };
    } else if (f.anchor !== null && f.minLength >= 2 && weight(f.anchor) <= 0.03 && (f.minAnchors >= 2 || f.interior)) {
      // e.g. IPv6's ":" or IPv4's ".": common bytes, but in a match one of an anchor's
      // neighbors (both, when anchors never sit at a match's edge) is an alphabet byte,
      // which a JSON key's ":" never has
      t = { ...base, kind: 'neighbor', plane: 1, plane2: planeOf(f.alphabet), detectLength: 1, anchorSet: f.anchor, minAnchors: f.minAnchors, literal: null, interior: f.interior };
    } else {
      const selective = f.anchor !== null && weight(f.anchor) < 0.5 * weight(f.alphabet);
      t = {
        ...base, kind: 'run', plane: planeOf(f.alphabet), detectLength: Math.min(Math.max(f.minLength, 1), MAX_DETECT_RUN),
        anchorSet: selective ? f.anchor! : new ByteSet(), minAnchors: selective ? f.minAnchors : 0, literal: null,
      };
    }
    const same = triggers.find((o) => o.kind === t.kind && o.plane === t.plane && o.plane2 === t.plane2 && o.detectLength === t.detectLength && o.minLength === t.minLength
      && o.minAnchors === t.minAnchors && o.interior === t.interior && o.anchorSet.equals(t.anchorSet) && sameLiteral(o.literal, t.literal));
    if (same) { same.patterns |= bit; same.alphabet.addSet(t.alphabet); }
    else triggers.push(t);
    if (t.kind === 'anchor') rareAnchors.addSet(t.anchorSet);
    if (t.kind === 'neighbor') commonAnchors.addSet(t.anchorSet);
  }));
  // Too many planes: fold one alphabet plane into another (the union: a weaker filter, the
  // same result). Cost: how much more often the merged plane fires, for each of its users.
  const uses = (k: number) => triggers.filter((t) => (t.kind === 'run' && t.plane === k) || (t.kind === 'neighbor' && t.plane2 === k)).length;
  while (planes.length > MAX_PLANES) {
    let best: { from: number; into: number; cost: number } | null = null;
    for (let a = 2; a < planes.length; a++) {
      for (let b = a + 1; b < planes.length; b++) {
        const u = weight(planes[a]!.union(planes[b]!));
        const cost = (u - weight(planes[a]!)) * uses(a) + (u - weight(planes[b]!)) * uses(b);
        if (!best || cost < best.cost) best = { from: b, into: a, cost };
      }
    }
    const { from, into } = best!;
    planes[into] = planes[into]!.union(planes[from]!);
    planes.splice(from, 1);
    const renumber = (k: number) => (k === from ? into : k > from ? k - 1 : k);
    for (const t of triggers) {
      if (t.kind === 'run') t.plane = renumber(t.plane);
      if (t.kind === 'neighbor') t.plane2 = renumber(t.plane2);
    }
  }
  const { tables, planeBits } = shufti(planes);
  return { planes, tables, planeBits, triggers };
}

function sameLiteral(a: Trigger['literal'], b: Trigger['literal']): boolean {
  if (a === null || b === null) return a === b;
  return a.at === b.at && a.bytes.length === b.bytes.length && a.bytes.every((x, i) => x === b.bytes[i]);
}

interface Rect {
  rows: number; // bitmask of hi nibbles
  cols: number; // bitmask of lo nibbles
  planes: number; // bitmask of planes
}

/**
 * Decomposes the planes into at most 16 nibble rectangles (class bits). When more are
 * needed, the two rectangles whose bounding rectangle adds the least frequency are
 * merged; planes then over-approximate, which only weakens the filter.
 */
export function shufti(planes: ByteSet[]): { tables: Uint8Array; planeBits: Array<[number, number]> } {
  // atoms: bytes grouped by plane signature, then rows grouped by identical column sets
  const byAtom = new Map<number, number[]>(); // signature -> per row: cols bitmask
  for (let b = 0; b < 256; b++) {
    let sig = 0;
    planes.forEach((p, i) => { if (p.has(b)) sig |= 1 << i; });
    if (sig === 0) continue;
    let rows = byAtom.get(sig);
    if (!rows) { rows = new Array<number>(16).fill(0); byAtom.set(sig, rows); }
    rows[b >> 4]! |= 1 << (b & 15);
  }
  let rects: Rect[] = [];
  for (const [sig, rows] of byAtom) {
    const byCols = new Map<number, number>();
    rows.forEach((cols, row) => { if (cols) byCols.set(cols, (byCols.get(cols) ?? 0) | (1 << row)); });
    for (const [cols, rowMask] of byCols) rects.push({ rows: rowMask, cols, planes: sig });
  }
  const rectWeight = (r: Rect): number => {
    let w = 0;
    for (let h = 0; h < 16; h++) if (r.rows & (1 << h)) for (let l = 0; l < 16; l++) if (r.cols & (1 << l)) w += FREQ[(h << 4) | l]!;
    return w;
  };
  while (rects.length > 16) {
    let best: { i: number; j: number; cost: number; r: Rect } | null = null;
    for (let i = 0; i < rects.length; i++) {
      for (let j = i + 1; j < rects.length; j++) {
        const a = rects[i]!;
        const b = rects[j]!;
        const r = { rows: a.rows | b.rows, cols: a.cols | b.cols, planes: a.planes | b.planes };
        // added false positives, weighted by how many planes gain them
        const cost = (rectWeight(r) - rectWeight(a)) * popcount(r.planes & ~a.planes | 1) + (rectWeight(r) - rectWeight(b)) * popcount(r.planes & ~b.planes | 1);
        if (!best || cost < best.cost) best = { i, j, cost, r };
      }
    }
    rects = rects.filter((_, k) => k !== best!.i && k !== best!.j);
    rects.push(best!.r);
  }
  const tables = new Uint8Array(64);
  const planeBits: Array<[number, number]> = planes.map(() => [0, 0]);
  rects.forEach((r, k) => {
    const pair = k < 8 ? 0 : 1;
    const bit = 1 << (k & 7);
    for (let l = 0; l < 16; l++) if (r.cols & (1 << l)) tables[pair * 32 + l]! |= bit;
    for (let h = 0; h < 16; h++) if (r.rows & (1 << h)) tables[pair * 32 + 16 + h]! |= bit;
    planes.forEach((_, i) => { if (r.planes & (1 << i)) planeBits[i]![pair] |= bit; });
  });
  return { tables, planeBits };
}

const popcount = (x: number): number => { let n = 0; while (x) { n += x & 1; x >>>= 1; } return n; };

/** The planes as the shufti tables actually classify them (supersets after merging). */
export function effectivePlanes(pf: Prefilter): ByteSet[] {
  return pf.planes.map((_, i) => {
    const s = new ByteSet();
    const [m1, m2] = pf.planeBits[i]!;
    for (let b = 0; b < 256; b++) {
      const c1 = pf.tables[b & 15]! & pf.tables[16 + (b >> 4)]!;
      const c2 = pf.tables[32 + (b & 15)]! & pf.tables[48 + (b >> 4)]!;
      if ((c1 & m1) !== 0 || (c2 & m2) !== 0) s.add(b);
    }
    return s;
  });
}
