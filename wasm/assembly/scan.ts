// Finding matches: SIMD prefilter -> candidate regions -> per-pattern reverse DFAs mark
// match starts -> the combined forward DFA lists every end at each start -> validators
// pick the longest valid candidate (leftmost-longest; on equal length the lower pattern
// id, i.e. the rule listed first, wins).
import {
  acceptAt, alphaBits, anchorBits, classMap, countBits, fwdStart, fwdTable, numPlanes, numTriggers, P_REV_START, P_REV_TABLE, P_VALIDATOR,
  pattern, planeMasks, shufti, str, T_DETECT, T_KIND, T_LIT_AT, T_LIT_LEN, T_LIT_OFF, T_MIN_ANCHORS, T_MIN_LEN, T_PATTERNS, T_PLANE, trigger, twoPairs,
} from "./program";
import { salloc, sgrow, scratchMark, scratchRelease } from "./scratch";
import { validate } from "./validators";
import { applyMatch, ST_OK } from "./act";

const PLANE_BITS: usize = memory.data(8 * 8);
const CARRY: usize = memory.data(32 * 4); // per plane (run) / per trigger (neighbor, at +16)
const PLANE_TRIGS: usize = memory.data(16 * 4); // run triggers per plane
const PLANE_MIN: usize = memory.data(16 * 4); // their shortest window per plane
const DONE: usize = memory.data(32 * 4);
const REGION_SIZE: usize = 16;

// The regions of the last prefilter() call: [start u32, end u32, patterns u64], sorted, merged.
export let regions: usize = 0;
export let regionCount: u32 = 0;
let regionCap: u32 = 0;

// @ts-ignore: decorator
@inline function cls(b: u32): usize {
  return <usize>load<u16>(classMap + (<usize>b << 1));
}

// Plane masks of src[0, 64) into PLANE_BITS (bit i = byte i is in the plane): the shufti
// classes of the four 16-byte blocks once, then one 64-bit mask per plane.
// @ts-ignore: decorator
@inline function classify(src: usize): void {
  let nib = i8x16.splat(0x0f);
  let zero = i8x16.splat(0);
  let lo1 = v128.load(shufti);
  let hi1 = v128.load(shufti, 16);
  let v0 = v128.load(src);
  let v1 = v128.load(src, 16);
  let v2 = v128.load(src, 32);
  let v3 = v128.load(src, 48);
  let l0 = v128.and(v0, nib), l1 = v128.and(v1, nib), l2 = v128.and(v2, nib), l3 = v128.and(v3, nib);
  let h0 = v128.and(i16x8.shr_u(v0, 4), nib), h1 = v128.and(i16x8.shr_u(v1, 4), nib);
  let h2 = v128.and(i16x8.shr_u(v2, 4), nib), h3 = v128.and(i16x8.shr_u(v3, 4), nib);
  let a0 = v128.and(i8x16.swizzle(lo1, l0), i8x16.swizzle(hi1, h0));
  let a1 = v128.and(i8x16.swizzle(lo1, l1), i8x16.swizzle(hi1, h1));
  let a2 = v128.and(i8x16.swizzle(lo1, l2), i8x16.swizzle(hi1, h2));
  let a3 = v128.and(i8x16.swizzle(lo1, l3), i8x16.swizzle(hi1, h3));
  let np = <usize>numPlanes;
  if (!twoPairs) {
    for (let k: usize = 0; k < np; k++) {
      let m = v128.load(planeMasks + (k << 5));
      let b0 = <u64>(i8x16.bitmask(i8x16.eq(v128.and(a0, m), zero)) & 0xffff);
      let b1 = <u64>(i8x16.bitmask(i8x16.eq(v128.and(a1, m), zero)) & 0xffff);
      let b2 = <u64>(i8x16.bitmask(i8x16.eq(v128.and(a2, m), zero)) & 0xffff);
      let b3 = <u64>(i8x16.bitmask(i8x16.eq(v128.and(a3, m), zero)) & 0xffff);
      store<u64>(PLANE_BITS + (k << 3), ~(b0 | (b1 << 16) | (b2 << 32) | (b3 << 48)));
    }
    return;
  }
  let lo2 = v128.load(shufti, 32);
  let hi2 = v128.load(shufti, 48);
  let c0 = v128.and(i8x16.swizzle(lo2, l0), i8x16.swizzle(hi2, h0));
  let c1 = v128.and(i8x16.swizzle(lo2, l1), i8x16.swizzle(hi2, h1));
  let c2 = v128.and(i8x16.swizzle(lo2, l2), i8x16.swizzle(hi2, h2));
  let c3 = v128.and(i8x16.swizzle(lo2, l3), i8x16.swizzle(hi2, h3));
  for (let k: usize = 0; k < np; k++) {
    let m = v128.load(planeMasks + (k << 5));
    let n = v128.load(planeMasks + (k << 5), 16);
    let b0 = <u64>(i8x16.bitmask(i8x16.eq(v128.or(v128.and(a0, m), v128.and(c0, n)), zero)) & 0xffff);
    let b1 = <u64>(i8x16.bitmask(i8x16.eq(v128.or(v128.and(a1, m), v128.and(c1, n)), zero)) & 0xffff);
    let b2 = <u64>(i8x16.bitmask(i8x16.eq(v128.or(v128.and(a2, m), v128.and(c2, n)), zero)) & 0xffff);
    let b3 = <u64>(i8x16.bitmask(i8x16.eq(v128.or(v128.and(a3, m), v128.and(c3, n)), zero)) & 0xffff);
    store<u64>(PLANE_BITS + (k << 3), ~(b0 | (b1 << 16) | (b2 << 32) | (b3 << 48)));
  }
}

// Start positions of windows of L (1..64) consecutive set bits inside m: the doubling
// chain (runs of 2, 4, 8, ...) without a data-dependent loop, then one more shift-and.
// @ts-ignore: decorator
@inline function windows(m: u64, L: u32): u64 {
  let x2 = m & (m >> 1);
  let x4 = x2 & (x2 >> 2);
  let x8 = x4 & (x4 >> 4);
  let x16 = x8 & (x8 >> 8);
  let x32 = x16 & (x16 >> 16);
  let p: u32 = L >= 32 ? 32 : L >= 16 ? 16 : L >= 8 ? 8 : L >= 4 ? 4 : L >= 2 ? 2 : 1;
  let x = L >= 32 ? x32 : L >= 16 ? x16 : L >= 8 ? x8 : L >= 4 ? x4 : L >= 2 ? x2 : m;
  return x & (x >> <u64>(L - p));
}

function pushRegion(a: u32, b: u32, pats: u64): void {
  if (regionCount == regionCap) {
    regionCap = regionCap * 2;
    sgrow(regions, <usize>regionCap * REGION_SIZE);
  }
  let e = regions + <usize>regionCount * REGION_SIZE;
  store<u32>(e, a);
  store<u32>(e, b, 4);
  store<u64>(e, pats, 8);
  regionCount++;
}

// The maximal run of trigger t's alphabet around pos; checks it and records a region.
// Returns where the run ends (the caller skips hits before it).
function visit(t: u32, src: usize, len: u32, pos: u32, pats: u64): u32 {
  let tp = trigger(t);
  let bit: u32 = 1 << t;
  if ((load<u32>(alphaBits + (<usize>load<u8>(src + pos) << 2)) & bit) == 0) return pos + 1;
  let litLen = load<u32>(tp + T_LIT_LEN);
  if (litLen > 0) {
    let litAt = load<u32>(tp + T_LIT_AT);
    if (pos < litAt || pos - litAt + litLen > len) return pos + 1;
    let lit = str(load<u32>(tp + T_LIT_OFF));
    let from = src + pos - litAt;
    for (let i: u32 = 0; i < litLen; i++) if (load<u8>(from + i) != load<u8>(lit + i)) return pos + 1;
  }
  let a = pos;
  while (a > 0 && (load<u32>(alphaBits + (<usize>load<u8>(src + a - 1) << 2)) & bit) != 0) a--;
  let b = pos + 1;
  while (b < len && (load<u32>(alphaBits + (<usize>load<u8>(src + b) << 2)) & bit) != 0) b++;
  store<u32>(DONE + (<usize>t << 2), b);
  if (b - a < load<u32>(tp + T_MIN_LEN)) return b;
  let need = load<u32>(tp + T_MIN_ANCHORS);
  if (need > 1) {
    let n: u32 = 0;
    for (let i = a; i < b && n < need; i++) if ((load<u32>(countBits + (<usize>load<u8>(src + i) << 2)) & bit) != 0) n++;
    if (n < need) return b;
  }
  pushRegion(a, b, pats);
  return b;
}

/**
 * Regions of src[0, len) where a pattern of `pats` may match (triggers `trigs`), sorted
 * and merged, into `regions`/`regionCount` (scratch memory: valid until the caller
 * releases it).
 */
export function prefilter(src: usize, len: u32, trigs: u32, pats: u64): void {
  regionCap = 16;
  regionCount = 0;
  regions = salloc(<usize>regionCap * REGION_SIZE);
  if (trigs == 0 || len == 0) return;
  let anchorTrigs: u32 = 0;
  let nearTrigs: u32 = 0;
  let runPlanes: u32 = 0;
  for (let k: usize = 0; k < 16; k++) { store<u32>(PLANE_TRIGS + (k << 2), 0); store<u32>(CARRY + (k << 2), 0); }
  for (let t: u32 = 0; t < numTriggers; t++) {
    if ((trigs & (1 << t)) == 0) continue;
    store<u32>(DONE + (<usize>t << 2), 0);
    let tp = trigger(t);
    let kind = load<u32>(tp + T_KIND);
    if (kind == 0) anchorTrigs |= 1 << t;
    else if (kind == 2) { nearTrigs |= 1 << t; store<u32>(CARRY + 64 + (<usize>(t & 15) << 2), 0); }
    else {
      let k = <usize>load<u32>(tp + T_PLANE);
      let L = load<u32>(tp + T_DETECT);
      let had = load<u32>(PLANE_TRIGS + (k << 2));
      if (had == 0 || L < load<u32>(PLANE_MIN + (k << 2))) store<u32>(PLANE_MIN + (k << 2), L);
      store<u32>(PLANE_TRIGS + (k << 2), had | (1 << t));
      runPlanes |= 1 << <u32>k;
    }
  }
  for (let base: u32 = 0; base < len; base += 64) {
    classify(src + base);
    let valid: u64 = len - base >= 64 ? <u64>-1 : (<u64>1 << <u64>(len - base)) - 1;
    if (anchorTrigs != 0) {
      let a = load<u64>(PLANE_BITS) & valid;
      while (a != 0) {
        let pos = base + <u32>ctz(a);
        a &= a - 1;
        let tm = load<u32>(anchorBits + (<usize>load<u8>(src + pos) << 2)) & anchorTrigs;
        while (tm != 0) {
          let t = <u32>ctz(tm);
          tm &= tm - 1;
          if (pos < load<u32>(DONE + (<usize>t << 2))) continue;
          visit(t, src, len, pos, load<u64>(trigger(t) + T_PATTERNS) & pats);
        }
      }
    }
    let nm = nearTrigs;
    if (nm != 0) {
      let anchors = load<u64>(PLANE_BITS + 8) & valid;
      while (nm != 0) {
        let t = <u32>ctz(nm);
        nm &= nm - 1;
        let tp = trigger(t);
        let second = load<u32>(tp + T_DETECT);
        let al = load<u64>(PLANE_BITS + (<usize>(second & 0xff) << 3));
        let cslot = CARRY + 64 + (<usize>(t & 15) << 2);
        let prevTop = <u64>load<u32>(cslot);
        store<u32>(cslot, <u32>(al >> 63));
        if (anchors == 0) continue;
        // alphabet bytes before and/or after (the byte after the chunk is unknown: assume so)
        let before = (al << 1) | prevTop;
        let after = (al >> 1) | (<u64>1 << 63);
        let hits = anchors & ((second & 0x100) != 0 ? before & after : before | after);
        let bit: u32 = 1 << t;
        let pt = load<u64>(tp + T_PATTERNS) & pats;
        while (hits != 0) {
          let pos = base + <u32>ctz(hits);
          hits &= hits - 1;
          // the common-anchor plane holds every neighbor trigger's anchors: this one's only
          if ((load<u32>(countBits + (<usize>load<u8>(src + pos) << 2)) & bit) == 0) continue;
          if (pos < load<u32>(DONE + (<usize>t << 2))) continue;
          visit(t, src, len, pos, pt);
        }
      }
    }
    let rp = runPlanes;
    while (rp != 0) {
      let k = <usize>ctz(rp);
      rp &= rp - 1;
      let m = load<u64>(PLANE_BITS + (k << 3)) & valid;
      let cslot = CARRY + (k << 2);
      let carry = load<u32>(cslot);
      store<u32>(cslot, m == <u64>-1 ? min(carry + 64, 1 << 20) : <u32>clz(~m));
      if (m == 0) continue;
      // the plane's shortest window first: no window, no trigger on this plane can fire
      let minL = load<u32>(PLANE_MIN + (k << 2));
      let x = windows(m, minL);
      let lead = carry > 0 && (m & 1) != 0 ? carry + <u32>ctz(~m) : 0; // a run continuing from the previous chunk
      if (x == 0 && lead < minL) continue;
      let tm = load<u32>(PLANE_TRIGS + (k << 2));
      while (tm != 0) {
        let t = <u32>ctz(tm);
        tm &= tm - 1;
        let tp = trigger(t);
        let L = load<u32>(tp + T_DETECT);
        let hits = L == minL ? x : windows(m, L);
        if (lead >= L) hits |= 1;
        let pt = load<u64>(tp + T_PATTERNS) & pats;
        while (hits != 0) {
          let pos = base + <u32>ctz(hits);
          let done = load<u32>(DONE + (<usize>t << 2));
          let next = pos < done ? done : visit(t, src, len, pos, pt);
          if (next >= base + 64) break;
          hits &= <u64>-1 << <u64>(next - base);
        }
      }
    }
  }
  sortAndMerge();
}

function sortAndMerge(): void {
  let n = regionCount;
  if (n < 2) return;
  // insertion sort by start: regions arrive nearly sorted
  for (let i: u32 = 1; i < n; i++) {
    let e = regions + <usize>i * REGION_SIZE;
    let a = load<u32>(e);
    let b = load<u32>(e, 4);
    let m = load<u64>(e, 8);
    let j = i;
    while (j > 0 && load<u32>(regions + <usize>(j - 1) * REGION_SIZE) > a) {
      memory.copy(regions + <usize>j * REGION_SIZE, regions + <usize>(j - 1) * REGION_SIZE, REGION_SIZE);
      j--;
    }
    let d = regions + <usize>j * REGION_SIZE;
    store<u32>(d, a); store<u32>(d, b, 4); store<u64>(d, m, 8);
  }
  let w: u32 = 0;
  for (let i: u32 = 1; i < n; i++) {
    let cur = regions + <usize>w * REGION_SIZE;
    let e = regions + <usize>i * REGION_SIZE;
    if (load<u32>(e) <= load<u32>(cur, 4)) {
      store<u32>(cur, max(load<u32>(cur, 4), load<u32>(e, 4)), 4);
      store<u64>(cur, load<u64>(cur, 8) | load<u64>(e, 8), 8);
    } else {
      w++;
      if (w != i) memory.copy(regions + <usize>w * REGION_SIZE, e, REGION_SIZE);
    }
  }
  regionCount = w + 1;
}

export function restoreRegions(ptr: usize, count: u32): void {
  regions = ptr;
  regionCount = count;
}

// @ts-ignore: decorator
@inline export function regionStart(i: u32): u32 { return load<u32>(regions + <usize>i * REGION_SIZE); }
// @ts-ignore: decorator
@inline export function regionEnd(i: u32): u32 { return load<u32>(regions + <usize>i * REGION_SIZE, 4); }
// @ts-ignore: decorator
@inline export function regionPatterns(i: u32): u64 { return load<u64>(regions + <usize>i * REGION_SIZE, 8); }

/**
 * Matches of patterns `pm` starting in [ra, rb) of the unit u[0, ulen) (context bytes
 * outside the region are real, outside the unit there are none), applied in order.
 * Returns ST_OK or the status of the action that stopped the unit (drop, block).
 */
export function scanRegion(u: usize, ulen: u32, ra: u32, rb: u32, pm: u64): i32 {
  if (pm == 0 || rb <= ra) return ST_OK;
  let mark = scratchMark();
  let n = rb - ra;
  let cand = salloc((<usize>n + 1) << 4);
  // Starts: try the forward DFA at every position while that stays cheap (most starts die
  // on their first byte); past a budget, mark the real starts with the reverse DFAs so the
  // work stays linear in the region.
  let flags: usize = 0;
  let budget = (n << 2) + 64;
  let status = ST_OK;
  let s = ra;
  while (s < rb) {
    if (flags != 0 && load<u8>(flags + <usize>(s - ra)) == 0) { s++; continue; }
    let st = load<u32>(fwdStart + (<usize>(s > 0 ? <u32>load<u8>(u + s - 1) : <u32>256) << 2));
    // positions no pattern can start at (the byte before rules them out): skip in a tight loop
    while (st == 0 && s + 1 < rb) {
      s++;
      st = load<u32>(fwdStart + (<usize>load<u8>(u + s - 1) << 2));
    }
    if (st == 0) break;
    let nc: usize = 0;
    let j = s;
    while (j < rb && st != 0) {
      st = load<u32>(fwdTable + <usize>st + cls(<u32>load<u8>(u + j)));
      let acc = load<u64>(fwdTable + <usize>st + acceptAt) & pm;
      if (acc != 0) {
        let c = cand + (nc << 4);
        store<u32>(c, j);
        store<u64>(c, acc, 8);
        nc++;
      }
      j++;
    }
    if (flags == 0) {
      let spent = j - s + 1;
      budget = budget > spent ? budget - spent : 0;
    }
    if (st != 0 && j == rb) {
      let acc: u64;
      if (rb < ulen) acc = load<u64>(fwdTable + <usize>load<u32>(fwdTable + <usize>st + cls(<u32>load<u8>(u + rb))) + acceptAt);
      else acc = load<u64>(fwdTable + <usize>st + acceptAt + 8);
      acc &= pm;
      if (acc != 0) {
        let c = cand + (nc << 4);
        store<u32>(c, rb);
        store<u64>(c, acc, 8);
        nc++;
      }
    }
    let matched = false;
    while (nc > 0 && !matched) {
      nc--;
      let c = cand + (nc << 4);
      let e = load<u32>(c);
      let acc = load<u64>(c, 8);
      while (acc != 0) {
        let p = <u32>ctz(acc);
        acc &= acc - 1;
        if (validate(load<u32>(pattern(p) + P_VALIDATOR), u + s, e - s)) {
          status = applyMatch(p, u, s, e);
          matched = true;
          s = e;
          break;
        }
      }
    }
    if (status != ST_OK) break;
    if (!matched) s++;
    if (budget == 0 && flags == 0 && s < rb) {
      flags = salloc(<usize>n + 1);
      memory.fill(flags, 0, <usize>n + 1);
      let m = pm;
      while (m != 0) {
        let p = <u32>ctz(m);
        m &= m - 1;
        markStarts(p, u, ulen, ra, rb, flags);
      }
    }
  }
  scratchRelease(mark);
  return status;
}

// Reverse DFA of pattern p over [ra, rb): flags[i - ra] = 1 where a match of p starts at i.
function markStarts(p: u32, u: usize, ulen: u32, ra: u32, rb: u32, flags: usize): void {
  let pp = pattern(p);
  let table = str(load<u32>(pp + P_REV_TABLE));
  let start = str(load<u32>(pp + P_REV_START));
  let st = load<u32>(start + (<usize>(rb < ulen ? <u32>load<u8>(u + rb) : <u32>256) << 2));
  let i = rb;
  while (i > ra) {
    i--;
    st = load<u32>(table + <usize>st + cls(<u32>load<u8>(u + i)));
    if (load<u64>(table + <usize>st + acceptAt) != 0) store<u8>(flags + <usize>(i + 1 - ra), 1);
  }
  let first: u64;
  if (ra > 0) first = load<u64>(table + <usize>load<u32>(table + <usize>st + cls(<u32>load<u8>(u + ra - 1))) + acceptAt);
  else first = load<u64>(table + <usize>st + acceptAt + 8);
  if (first != 0) store<u8>(flags, 1);
}
