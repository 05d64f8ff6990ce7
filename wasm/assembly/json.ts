// JSON awareness: a validating recursive-descent walk that
//   * scans string values, object keys and numbers with the detectors in force there (a
//     number with a match becomes a JSON string: masked digits are no number),
//   * follows field paths (JSONPath subset, compiled into path states) and applies
//     field rules to whole values: replace, drop the member/element, or block,
//   * decodes escapes where a string has them (detectors see the value, not "\u0034"),
//     mapping matches back to the raw bytes and re-escaping replacements,
//   * walks NDJSON: documents on their own lines, each with the same rules.
// A record that does not parse (syntax, nesting over MAX_DEPTH, data after a document that
// is not another line's document) is reported as malformed with the reason; the caller
// rewinds the output and scans the record as bytes instead.
import {
  A_BLOCK, A_DROP, A_MASK, pathState, pathWords, PS_DESC, PS_FINAL, PS_INDEX, PS_KIND,
  PS_NAME_LEN, PS_NAME_OFF, PS_RULE, R_ACTION, R_MASK_CHAR, R_PATTERN, RS_GLOBAL, RS_PATH_INIT, RS_TRIGGERS, rule, ruleset, str,
} from "./program";
import { copied, copyTo, hit, hitsPos, outPos, put, replacement, restore, setStop, setUnit, skipTo, ST_DROP, ST_OK, stopRule } from "./act";
import { prefilter, regionCount, regionEnd, regionPatterns, regions, regionStart, restoreRegions, scanRegion } from "./scan";
import { salloc, scratchMark, scratchRelease } from "./scratch";
import { decodedLen, decodedMap, unescape } from "./unescape";

export const W_OK: i32 = 0;
export const W_DROP: i32 = 1;
export const W_BLOCK: i32 = 2;
export const W_MALFORMED: i32 = 3;

// why a record is malformed (malformedReason, after W_MALFORMED)
export const M_SYNTAX: u32 = 0;
export const M_TOO_DEEP: u32 = 1;
/** a document parsed, then came data that is not another NDJSON line's document */
export const M_TRAILING: u32 = 2;

const MAX_DEPTH: i32 = 512;

export let malformedReason: u32 = M_SYNTAX;
/** documents walked in the last walkJson (more than one: NDJSON) */
export let documents: u32 = 0;

let rec: usize = 0;
let len: u32 = 0;
let pos: u32 = 0;
let globalPats: u64 = 0;
let trigs: u32 = 0;
let words: usize = 0; // u64 words per path bitset
let pathStack: usize = 0; // (MAX_DEPTH + 2) bitsets
let regionCursor: u32 = 0;

// ---- writer save/rewind (whole record, for the malformed-JSON fallback) ----

let recOut: u32 = 0;
let recCopied: u32 = 0;
let recHits: u32 = 0;

export function save(): void {
  recOut = outPos;
  recCopied = copied;
  recHits = hitsPos;
}

export function rewind(): void {
  restore(recOut, recCopied, recHits);
}

// ---- entry ----

/** Walks rec[0, n) under ruleset rs. W_OK, W_BLOCK (stopRule set) or W_MALFORMED (malformedReason set). */
export function walkJson(r: usize, n: u32, rs: u32): i32 {
  rec = r;
  len = n;
  pos = 0;
  regionCursor = 0;
  malformedReason = M_SYNTAX;
  documents = 0;
  let rsp = ruleset(rs);
  globalPats = load<u64>(rsp + RS_GLOBAL);
  trigs = load<u32>(rsp + RS_TRIGGERS);
  words = <usize>pathWords;
  pathStack = salloc(<usize>(MAX_DEPTH + 2) * words << 3);
  let init = str(load<u32>(rsp + RS_PATH_INIT));
  memory.copy(pathStack, init, words << 3);
  let any = false;
  for (let w: usize = 0; w < words; w++) if (load<u64>(pathStack + (w << 3)) != 0) any = true;
  ws();
  // one document, or NDJSON: one per line (the path states at depth 0 are never written, so
  // every document starts from the ruleset's)
  for (;;) {
    let valueStart = pos;
    let st = value(0, any ? pathStack : 0, globalPats, false);
    if (st == W_MALFORMED) {
      if (documents > 0 && malformedReason == M_SYNTAX) malformedReason = M_TRAILING;
      return st;
    }
    if (st == W_BLOCK) return st; // a blocked record is refused whole: the rest need not parse
    if (st == W_DROP) {
      // dropping a whole document leaves null
      copyTo(valueStart);
      put(0x6e); put(0x75); put(0x6c); put(0x6c);
      skipTo(pos);
      hit(stopRule);
    }
    documents++;
    let newline = false;
    while (pos < len) {
      let c = <u32>load<u8>(rec + pos);
      if (c == 0x0a) newline = true;
      else if (c != 0x20 && c != 0x0d && c != 0x09) break;
      pos++;
    }
    if (pos == len) return W_OK;
    if (!newline) {
      malformedReason = M_TRAILING;
      return W_MALFORMED;
    }
  }
  return W_OK; // unreachable: the loop only returns
}

// ---- lexing ----

// @ts-ignore: decorator
@inline function peek(): u32 {
  return pos < len ? <u32>load<u8>(rec + pos) : 0xffffffff;
}

function ws(): void {
  while (pos < len) {
    let c = <u32>load<u8>(rec + pos);
    if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
    pos++;
  }
}

// @ts-ignore: decorator
@inline function isHex(c: u32): bool {
  return c - 0x30 < 10 || (c | 0x20) - 0x61 < 6;
}

let strStart: u32 = 0; // content start (after the quote)
let strEnd: u32 = 0; // content end (at the closing quote)
let strEscaped: bool = false;

// Skips a string starting at its opening quote; sets strStart/strEnd/strEscaped.
function skipString(): bool {
  pos++;
  strStart = pos;
  strEscaped = false;
  let quote = i8x16.splat(0x22);
  let bslash = i8x16.splat(0x5c);
  let ctl = i8x16.splat(0x20);
  for (;;) {
    // 16 bytes at a time up to the next quote, backslash or control byte
    while (pos + 16 <= len) {
      let v = v128.load(rec + pos);
      let m = i8x16.bitmask(v128.or(v128.or(i8x16.eq(v, quote), i8x16.eq(v, bslash)), i8x16.lt_u(v, ctl)));
      if (m != 0) { pos += <u32>ctz(m); break; }
      pos += 16;
    }
    if (pos >= len) return false;
    let c = <u32>load<u8>(rec + pos);
    if (c == 0x22) { strEnd = pos; pos++; return true; }
    if (c < 0x20) return false;
    if (c == 0x5c) {
      strEscaped = true;
      if (pos + 1 >= len) return false;
      let e = <u32>load<u8>(rec + pos + 1);
      if (e == 0x75) {
        if (pos + 6 > len) return false;
        for (let i: u32 = 2; i < 6; i++) if (!isHex(<u32>load<u8>(rec + pos + i))) return false;
        pos += 6;
      } else if (e == 0x22 || e == 0x5c || e == 0x2f || e == 0x62 || e == 0x66 || e == 0x6e || e == 0x72 || e == 0x74) {
        pos += 2;
      } else return false;
      continue;
    }
    pos++;
  }
  return false; // unreachable: the loop only returns
}

function skipNumber(): bool {
  if (peek() == 0x2d) pos++;
  let c = peek();
  if (c == 0x30) pos++;
  else if (c - 0x31 < 9) { while (peek() - 0x30 < 10) pos++; }
  else return false;
  if (peek() == 0x2e) {
    pos++;
    if (peek() - 0x30 >= 10) return false;
    while (peek() - 0x30 < 10) pos++;
  }
  c = peek();
  if (c == 0x65 || c == 0x45) {
    pos++;
    c = peek();
    if (c == 0x2b || c == 0x2d) pos++;
    if (peek() - 0x30 >= 10) return false;
    while (peek() - 0x30 < 10) pos++;
  }
  return true;
}

function skipLiteral(word: string): bool {
  let n = <u32>word.length;
  if (pos + n > len) return false;
  for (let i: u32 = 0; i < n; i++) if (<u32>load<u8>(rec + pos + i) != <u32>word.charCodeAt(i)) return false;
  pos += n;
  return true;
}

// ---- paths ----

// Path states in force for the child at key rec[ka, kb) (index < 0) or array index `index`.
function childPaths(parent: usize, child: usize, ka: u32, kb: u32, kEscaped: bool, index: i32): bool {
  let any = false;
  let key: usize = rec + ka;
  let keyLen = kb - ka;
  let decoded = false;
  let mark = scratchMark();
  for (let w: usize = 0; w < words; w++) store<u64>(child + (w << 3), 0);
  for (let w: usize = 0; w < words; w++) {
    let bits = load<u64>(parent + (w << 3));
    while (bits != 0) {
      let i = <u32>((w << 6) + <usize>ctz(bits));
      bits &= bits - 1;
      let ps = pathState(i);
      if (load<u32>(ps + PS_FINAL) != 0) continue;
      if (load<u32>(ps + PS_DESC) != 0) { setBit(child, i); any = true; }
      let kind = load<u32>(ps + PS_KIND);
      let hitStep = false;
      if (kind == 1) hitStep = true;
      else if (kind == 2) hitStep = index >= 0 && <u32>index == load<u32>(ps + PS_INDEX);
      else if (index < 0) {
        if (kEscaped && !decoded) { key = unescape(rec, ka, kb, false); keyLen = decodedLen; decoded = true; }
        let nl = load<u32>(ps + PS_NAME_LEN);
        if (nl == keyLen) {
          let name = str(load<u32>(ps + PS_NAME_OFF));
          hitStep = memory.compare(name, key, <usize>nl) == 0;
        }
      }
      if (hitStep) { setBit(child, i + 1); any = true; }
    }
  }
  scratchRelease(mark);
  return any;
}

// @ts-ignore: decorator
@inline function setBit(set: usize, i: u32): void {
  let p = set + (<usize>(i >> 6) << 3);
  store<u64>(p, load<u64>(p) | (<u64>1 << <u64>(i & 63)));
}

// Field rules completed at this value: patterns to switch on, and the whole-value rule
// (block wins over everything, then the first listed).
let wholeRule: i32 = -1;

function fieldRules(paths: usize): u64 {
  wholeRule = -1;
  let pats: u64 = 0;
  for (let w: usize = 0; w < words; w++) {
    let bits = load<u64>(paths + (w << 3));
    while (bits != 0) {
      let i = <u32>((w << 6) + <usize>ctz(bits));
      bits &= bits - 1;
      let ps = pathState(i);
      if (load<u32>(ps + PS_FINAL) == 0) continue;
      let r = load<u32>(ps + PS_RULE);
      let rp = rule(r);
      let p = load<u32>(rp + R_PATTERN);
      if (p != 0xffffffff) { pats |= <u64>1 << <u64>p; continue; }
      if (wholeRule < 0) wholeRule = <i32>r;
      else if (load<u32>(rp + R_ACTION) == A_BLOCK && load<u32>(rule(<u32>wholeRule) + R_ACTION) != A_BLOCK) wholeRule = <i32>r;
      else if (r < <u32>wholeRule && load<u32>(rule(<u32>wholeRule) + R_ACTION) != A_BLOCK) wholeRule = <i32>r;
    }
  }
  return pats;
}

// ---- values ----

/**
 * One value at pos. `paths`: path states reaching it (null bitset when none), `active`:
 * patterns in force, `skip`: only validate (the value is being replaced as a whole).
 */
function value(depth: i32, paths: usize, active: u64, skip: bool): i32 {
  if (depth > MAX_DEPTH) { malformedReason = M_TOO_DEEP; return W_MALFORMED; }
  let wr: i32 = -1;
  if (!skip && paths != 0) {
    active |= fieldRules(paths);
    wr = wholeRule;
  }
  if (wr >= 0) {
    let rp = rule(<u32>wr);
    let a = load<u32>(rp + R_ACTION);
    let start = pos;
    let isString = peek() == 0x22;
    let st = value(depth, 0, 0, true);
    if (st != W_OK) return st;
    if (a == A_BLOCK) { setStop(<u32>wr); return W_BLOCK; }
    if (a == A_DROP) { setStop(<u32>wr); return W_DROP; }
    replaceValue(rp, start, isString);
    hit(<u32>wr);
    return W_OK;
  }
  let c = peek();
  if (c == 0x22) return stringValue(active, skip);
  if (c == 0x7b) return object(depth, paths, active, skip);
  if (c == 0x5b) return array(depth, paths, active, skip);
  if (c == 0x74) return skipLiteral("true") ? W_OK : W_MALFORMED;
  if (c == 0x66) return skipLiteral("false") ? W_OK : W_MALFORMED;
  if (c == 0x6e) return skipLiteral("null") ? W_OK : W_MALFORMED;
  if (c == 0x2d || c - 0x30 < 10) {
    let start = pos;
    if (!skipNumber()) return W_MALFORMED;
    return skip || active == 0 ? W_OK : numberValue(start, pos, active);
  }
  return W_MALFORMED;
}

// Replaces the value rec[start, pos) (already validated) as a whole.
function replaceValue(rp: usize, start: u32, isString: bool): void {
  let a = load<u32>(rp + R_ACTION);
  let first = <u32>load<u8>(rec + start);
  copyTo(start);
  put(0x22);
  if (isString) {
    let mark = scratchMark();
    let v: usize = rec + strStart;
    let n = strEnd - strStart;
    if (strEscaped) { v = unescape(rec, strStart, strEnd, false); n = decodedLen; }
    replacement(rp, v, n, true);
    scratchRelease(mark);
  } else if (a == A_MASK && (first == 0x7b || first == 0x5b)) {
    let ch = load<u32>(rp + R_MASK_CHAR);
    put(ch); put(ch); put(ch); put(ch);
  } else {
    // numbers and literals as their text, objects and arrays as their raw bytes
    replacement(rp, rec + start, pos - start, true);
  }
  put(0x22);
  skipTo(pos);
}

function stringValue(active: u64, skip: bool): i32 {
  if (!skipString()) return W_MALFORMED;
  if (skip || active == 0) return W_OK;
  return scanString(strStart, strEnd, strEscaped, active);
}

// The content rec[a, b) of a string (value or key) as its own text, under `active`.
function scanString(a: u32, b: u32, escaped: bool, active: u64): i32 {
  // undo point: a drop/block found inside the string discards its edits
  let out0 = outPos;
  let copied0 = copied;
  let hits0 = hitsPos;
  let st = ST_OK;
  if (!escaped) {
    st = scanRaw(a, b, active);
  } else {
    // the raw prefilter saw escapes, not the value: prefilter the decoded value itself
    let mark = scratchMark();
    let outerRegions = regions;
    let outerCount = regionCount;
    let d = unescape(rec, a, b, true);
    let dlen = decodedLen;
    let map = decodedMap;
    prefilter(d, dlen, trigs, active);
    setUnit(map, dlen, 0, true);
    for (let i: u32 = 0; i < regionCount; i++) {
      st = scanRegion(d, dlen, regionStart(i), regionEnd(i), regionPatterns(i) & active);
      if (st != ST_OK) break;
    }
    restoreRegions(outerRegions, outerCount);
    scratchRelease(mark);
  }
  if (st == ST_OK) return W_OK;
  restore(out0, copied0, hits0);
  return st == ST_DROP ? W_DROP : W_BLOCK;
}

// The prefilter's regions of the record clipped to rec[a, b), scanned as the unit rec[a, b).
function scanRaw(a: u32, b: u32, active: u64): i32 {
  while (regionCursor < regionCount && regionEnd(regionCursor) <= a) regionCursor++;
  let i = regionCursor;
  if (i >= regionCount || regionStart(i) >= b) return ST_OK; // no candidate here (most strings, keys and numbers)
  setUnit(0, b - a, a, true);
  while (i < regionCount && regionStart(i) < b) {
    let ra = max(regionStart(i), a);
    let rb = min(regionEnd(i), b);
    let st = scanRegion(rec + a, b - a, ra - a, rb - a, regionPatterns(i) & active);
    if (st != ST_OK) return st;
    i++;
  }
  return ST_OK;
}

// A number rec[a, b) scanned as its own text. A match turns it into a JSON string holding
// the number's text with the replacement: digits masked by "*" would be no number, and a
// string keeps the document valid whatever the action writes.
function numberValue(a: u32, b: u32, active: u64): i32 {
  let out0 = outPos;
  let copied0 = copied;
  let hits0 = hitsPos;
  let st = scanRaw(a, b, active);
  if (st != ST_OK) {
    restore(out0, copied0, hits0);
    return st == ST_DROP ? W_DROP : W_BLOCK;
  }
  if (hitsPos == hits0) return W_OK;
  // a match (rare): write it again, this time inside quotes (the scan is deterministic)
  restore(out0, copied0, hits0);
  copyTo(a);
  put(0x22);
  scanRaw(a, b, active);
  copyTo(b);
  put(0x22);
  return W_OK;
}

function object(depth: i32, paths: usize, active: u64, skip: bool): i32 {
  pos++;
  ws();
  if (peek() == 0x7d) { pos++; return W_OK; }
  let child = paths != 0 ? pathStack + <usize>(depth + 1) * (words << 3) : 0;
  let kept: u32 = 0;
  let comma: u32 = 0xffffffff;
  for (;;) {
    if (peek() != 0x22) return W_MALFORMED;
    let memberStart = pos;
    // every member so far was dropped: this member's comma goes too
    if (!skip && kept == 0 && comma != 0xffffffff) { copyTo(comma); skipTo(comma + 1); }
    if (!skipString()) return W_MALFORMED;
    let ka = strStart;
    let kb = strEnd;
    let kEsc = strEscaped;
    // a key is text like a value: masked in place, or its match drops the member / blocks
    let keySt = skip || active == 0 ? W_OK : scanString(ka, kb, kEsc, active);
    if (keySt == W_BLOCK) return keySt;
    ws();
    if (peek() != 0x3a) return W_MALFORMED;
    pos++;
    ws();
    let st: i32;
    if (keySt == W_DROP) {
      // the member goes: its value is only validated
      st = value(depth + 1, 0, 0, true);
      if (st == W_OK) st = W_DROP;
    } else {
      let cp: usize = 0;
      if (child != 0 && !skip && childPaths(paths, child, ka, kb, kEsc, -1)) cp = child;
      st = value(depth + 1, cp, active, skip);
    }
    if (st == W_MALFORMED || st == W_BLOCK) return st;
    if (st == W_DROP) {
      if (kept > 0) { copyTo(comma); skipTo(pos); }
      else { copyTo(memberStart); skipTo(pos); }
      hit(stopRule);
    } else kept++;
    ws();
    let c = peek();
    if (c == 0x2c) { comma = pos; pos++; ws(); continue; }
    if (c == 0x7d) { pos++; return W_OK; }
    return W_MALFORMED;
  }
}

function array(depth: i32, paths: usize, active: u64, skip: bool): i32 {
  pos++;
  ws();
  if (peek() == 0x5d) { pos++; return W_OK; }
  let child = paths != 0 ? pathStack + <usize>(depth + 1) * (words << 3) : 0;
  let kept: u32 = 0;
  let comma: u32 = 0xffffffff;
  let index: i32 = 0;
  for (;;) {
    let elemStart = pos;
    if (!skip && kept == 0 && comma != 0xffffffff) { copyTo(comma); skipTo(comma + 1); }
    let cp: usize = 0;
    if (child != 0 && !skip && childPaths(paths, child, 0, 0, false, index)) cp = child;
    let st = value(depth + 1, cp, active, skip);
    if (st == W_MALFORMED || st == W_BLOCK) return st;
    if (st == W_DROP) {
      if (kept > 0) { copyTo(comma); skipTo(pos); }
      else { copyTo(elemStart); skipTo(pos); }
      hit(stopRule);
    } else kept++;
    index++;
    ws();
    let c = peek();
    if (c == 0x2c) { comma = pos; pos++; ws(); continue; }
    if (c == 0x5d) { pos++; return W_OK; }
    return W_MALFORMED;
  }
}

/** True when rec[0, n) contains a backslash (SIMD, 16 bytes at a time). */
export function hasBackslash(r: usize, n: u32): bool {
  let b = i8x16.splat(0x5c);
  let i: u32 = 0;
  while (i + 16 <= n) {
    if (i8x16.bitmask(i8x16.eq(v128.load(r + i), b)) != 0) return true;
    i += 16;
  }
  while (i < n) { if (load<u8>(r + i) == 0x5c) return true; i++; }
  return false;
}
