// streamgate inspection engine: batch ABI over linear memory (ABI v4).
//
// The host copies the compiled rules (the "program", src/inspect/compile/program.ts)
// into memory once, then hands over whole batches. The engine never allocates through a
// managed heap (runtime "stub"): fixed regions laid out by ensure() and reused by every
// call, plus per-record scratch on top that grows with memory.grow.
//
// Header (u32 words at header()):
//   [0] ABI version     [1] record capacity
//   [2] in table        [3] in data          [4] in data capacity
//   [5] out table       [6] out data         [7] out data capacity
//   [8] status table    [9] digest region
//   [10] hits           [11] hits capacity
//   [12] program        [13] program capacity
//   [14] out bytes needed after E_OUT_FULL   [15] hits needed after E_HITS_FULL
// Regions:
//   in table   : records x {u32 offset, u32 length, u32 ruleset, u32 reserved}
//   out table  : records x {u32 offset, u32 length} into out data; for every record when
//                inspect(n, emitAll=1), else only where CHANGED
//   status     : records x {u32 flags, u32 first hit, u32 hit count, u32 stop rule}
//                (stop rule STOP_MALFORMED_JSON: refused because the value does not parse)
//   hits       : u32 rule index per applied action, in order, records back to back
//   digests    : records x 32 bytes (sha256Batch, kept for the benchmark)
// All pointers move when ensure() grows anything; re-read the header then.
import {
  bindProgram, FORMAT_AUTO, FORMAT_JSON, K_BLOCK, K_INNER, K_OUTER, KEY_SIZE, keyTable, numKeys, numRulesets, prog,
  RS_ALL, RS_FLAGS, RS_FORMAT, RS_HAS_FIELDS, RS_TRIGGERS, RSF_BLOCK_MALFORMED, RSF_WHOLE_VALUE_RULES, ruleset, str,
} from "./program";
import { hmacPrepare, sha256 } from "./sha256";
import { prefilter, regionCount, regionEnd, regionPatterns, regionStart, scanRegion } from "./scan";
import { copyTo, hitsPos, hitsStart, outPos, putBytes, setUnit, ST_BLOCK, stopRule, writerStart } from "./act";
import { scratchMark, scratchRelease, scratchReset } from "./scratch";
import { documents, hasBackslash, M_TOO_DEEP, M_TRAILING, malformedReason, rewind, save, walkJson, W_BLOCK, W_MALFORMED } from "./json";
import { decodedLen, decodedMap, unescape } from "./unescape";

const ABI_VERSION: u32 = 4;

export const FLAG_CHANGED: u32 = 1;
export const FLAG_BLOCKED: u32 = 2;
/** should be JSON, did not parse: scanned as bytes (escapes decoded) or refused */
export const FLAG_JSON_FALLBACK: u32 = 4;
export const FLAG_JSON: u32 = 8;
/** several documents, one per line */
export const FLAG_NDJSON: u32 = 16;
/** with FLAG_JSON_FALLBACK: nested deeper than the walker goes */
export const FLAG_JSON_TOO_DEEP: u32 = 32;
/** with FLAG_JSON_FALLBACK: data after a document that is not another line's document */
export const FLAG_JSON_TRAILING: u32 = 64;

/** the stop rule of a value refused because it does not parse (no rule of the program) */
export const STOP_MALFORMED_JSON: u32 = 0xffffffff;

export const E_RECORDS: i32 = -1;  // n exceeds record capacity
export const E_OUT_FULL: i32 = -2; // out data too small: grow to header[14] and retry
export const E_RANGE: i32 = -3;    // an in table entry points outside in data
export const E_PROGRAM: i32 = -4;  // no valid program loaded
export const E_RULESET: i32 = -5;  // a record names an unknown ruleset
export const E_HITS_FULL: i32 = -6; // hits too small: grow to header[15] and retry

const HDR: usize = memory.data(64);

const MIN_RECORDS: u64 = 256;
const MIN_BYTES: u64 = 64 * 1024;
const SPARE: u64 = 64; // readable bytes after each data region for 64-byte SIMD chunks

let progCap: u64 = 0;
let progLen: u32 = 0;
let recCap: u64 = 0;
let inCap: u64 = 0;
let outCap: u64 = 0;
let hitsCap: u64 = 0;
let progPtr: usize = 0;
let inTab: usize = 0;
let inData: usize = 0;
let outTab: usize = 0;
let outData: usize = 0;
let status: usize = 0;
let digests: usize = 0;
let hitsPtr: usize = 0;
let scratchBase: usize = 0;

function writeHeader(): void {
  store<u32>(HDR, ABI_VERSION);
  store<u32>(HDR + 4, <u32>recCap);
  store<u32>(HDR + 8, <u32>inTab);
  store<u32>(HDR + 12, <u32>inData);
  store<u32>(HDR + 16, <u32>inCap);
  store<u32>(HDR + 20, <u32>outTab);
  store<u32>(HDR + 24, <u32>outData);
  store<u32>(HDR + 28, <u32>outCap);
  store<u32>(HDR + 32, <u32>status);
  store<u32>(HDR + 36, <u32>digests);
  store<u32>(HDR + 40, <u32>hitsPtr);
  store<u32>(HDR + 44, <u32>hitsCap);
  store<u32>(HDR + 48, <u32>progPtr);
  store<u32>(HDR + 52, <u32>progCap);
}
writeHeader();

// @ts-ignore: decorator
@inline function align(v: u64, a: u64): u64 {
  return (v + a - 1) & ~(a - 1);
}

// Grow a capacity geometrically so a slowly rising batch size does not re-layout every call.
// @ts-ignore: decorator
@inline function grown(cur: u64, want: u64, min: u64, unit: u64): u64 {
  if (want <= cur) return cur;
  return align(max(max(want, cur + (cur >> 1)), min), unit);
}

export function header(): usize {
  return HDR;
}

function layout(p: u64, r: u64, i: u64, o: u64, h: u64): bool {
  let a = align(<u64>__heap_base, 64);
  let pProg = a; a = align(a + p, 64);
  let pInTab = a; a = align(a + r * 16, 64);
  let pStatus = a; a = align(a + r * 16, 64);
  let pOutTab = a; a = align(a + r * 8, 64);
  let pDig = a; a = align(a + r * 32, 64);
  let pHits = a; a = align(a + h * 4, 64);
  let pIn = a; a = align(a + i + SPARE, 64);
  let pOut = a; a = align(a + o + SPARE, 64);
  let pScratch = a; a = a + 1024 * 1024;
  if (a > 0xFFFF0000) return false;
  let pages = <i32>((a + 0xFFFF) >> 16);
  let have = memory.size();
  if (pages > have && memory.grow(pages - have) < 0) return false;
  if (pProg != <u64>progPtr && progLen > 0) memory.copy(<usize>pProg, progPtr, progLen); // keep a loaded program
  progCap = p; recCap = r; inCap = i; outCap = o; hitsCap = h;
  progPtr = <usize>pProg; inTab = <usize>pInTab; status = <usize>pStatus; outTab = <usize>pOutTab;
  digests = <usize>pDig; hitsPtr = <usize>pHits; inData = <usize>pIn; outData = <usize>pOut; scratchBase = <usize>pScratch;
  writeHeader();
  if (progLen > 0) bindProgram(progPtr, progLen);
  return true;
}

// Makes room for a program of `bytes`; returns header() or 0. The host then writes the
// program at header[12] and calls loadProgram().
export function reserveProgram(bytes: u32): usize {
  progLen = 0;
  if (!layout(align(<u64>bytes, 64), max(recCap, MIN_RECORDS), max(inCap, MIN_BYTES), max(outCap, MIN_BYTES), max(hitsCap, 1024))) return 0;
  return HDR;
}

// Validates and binds the program written at header[12]; derives the HMAC key states.
export function loadProgram(bytes: u32): i32 {
  if (<u64>bytes > progCap || !bindProgram(progPtr, bytes)) return E_PROGRAM;
  progLen = bytes;
  for (let k: u32 = 0; k < numKeys; k++) {
    let kp = keyTable + <usize>k * KEY_SIZE;
    hmacPrepare(str(load<u32>(kp + K_BLOCK)), str(load<u32>(kp + K_INNER)), str(load<u32>(kp + K_OUTER)));
  }
  return 0;
}

// Makes room for a batch. Returns header() or 0 when memory cannot grow.
export function ensure(records: u32, inBytes: u32, outBytes: u32, hitCount: u32): usize {
  if (<u64>records <= recCap && <u64>inBytes <= inCap && <u64>outBytes <= outCap && <u64>hitCount <= hitsCap) return HDR;
  let r = grown(recCap, records, MIN_RECORDS, 64);
  let i = grown(inCap, inBytes, MIN_BYTES, 64 * 1024);
  let o = grown(outCap, outBytes, MIN_BYTES, 64 * 1024);
  let h = grown(hitsCap, hitCount, 1024, 1024);
  return layout(progCap, r, i, o, h) ? HDR : 0;
}

// Inspects records [0, n). Returns the bytes written to out data, or a negative E_*.
export function inspect(n: u32, emitAll: u32): i32 {
  if (prog == 0 || progLen == 0) return E_PROGRAM;
  if (<u64>n > recCap) return E_RECORDS;
  hitsStart(hitsPtr, <u32>hitsCap, 0);
  writerStart(inData, outData, <u32>outCap, 0);
  for (let k: u32 = 0; k < n; k++) {
    let e = inTab + (<usize>k << 4);
    let off = load<u32>(e);
    let len = load<u32>(e, 4);
    let rs = load<u32>(e, 8);
    if (<u64>off + <u64>len > inCap) return E_RANGE;
    if (rs >= numRulesets) return E_RULESET;
    record(k, inData + off, len, rs, emitAll != 0);
  }
  store<u32>(HDR + 56, outPos);
  store<u32>(HDR + 60, hitsPos);
  if (<u64>outPos > outCap) return E_OUT_FULL;
  if (<u64>hitsPos > hitsCap) return E_HITS_FULL;
  return <i32>outPos;
}

// @ts-ignore: decorator
@inline function isSpace(c: u32): bool {
  return c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09;
}

function record(k: u32, rec: usize, len: u32, rs: u32, emitAll: bool): void {
  let st = status + (<usize>k << 4);
  let ot = outTab + (<usize>k << 3);
  let outStart = outPos;
  let hitStart = hitsPos;
  scratchReset(scratchBase);
  writerStart(rec, outData, <u32>outCap, outPos);
  let rsp = ruleset(rs);
  let pats = load<u64>(rsp + RS_ALL);
  let trigs = load<u32>(rsp + RS_TRIGGERS);
  let hasFields = load<u32>(rsp + RS_HAS_FIELDS) != 0;
  let format = load<u32>(rsp + RS_FORMAT);
  let rsFlags = load<u32>(rsp + RS_FLAGS);
  let flags: u32 = 0;
  let stop: u32 = 0;

  let first: u32 = 0;
  while (first < len && isSpace(<u32>load<u8>(rec + first))) first++;
  // blank values (tombstones) are never JSON, so never "unparsable"; as text they are scanned
  let json = first < len && format == FORMAT_JSON;
  if (first < len && format == FORMAT_AUTO) {
    let c = load<u8>(rec + first);
    json = c == 0x7b || c == 0x5b || c == 0x22;
  }
  let blockMalformed = (rsFlags & RSF_BLOCK_MALFORMED) != 0;
  if (len > 0 && (pats != 0 || (json && (hasFields || blockMalformed)))) {
    prefilter(rec, len, trigs, pats);
    let text = !json;
    let fallback = false;
    // the walk also validates: with block-on-malformed every JSON value is walked
    if (json && (regionCount > 0 || hasFields || blockMalformed || hasBackslash(rec, len))) {
      save();
      let r = walkJson(rec, len, rs);
      if (r == W_MALFORMED) {
        rewind();
        flags |= FLAG_JSON_FALLBACK;
        if (malformedReason == M_TOO_DEEP) flags |= FLAG_JSON_TOO_DEEP;
        else if (malformedReason == M_TRAILING) flags |= FLAG_JSON_TRAILING;
        fallback = true;
      } else {
        flags |= FLAG_JSON;
        if (documents > 1) flags |= FLAG_NDJSON;
        if (r == W_BLOCK) { flags |= FLAG_BLOCKED; stop = stopRule; }
      }
    }
    if (fallback && (blockMalformed || (rsFlags & RSF_WHOLE_VALUE_RULES) != 0)) {
      // fail closed: a whole-value field rule cannot apply to bytes, and the topic may refuse
      // what does not parse; either way the value must not pass as scanned bytes
      flags |= FLAG_BLOCKED;
      stop = STOP_MALFORMED_JSON;
    } else if (fallback && hasBackslash(rec, len)) {
      // a JSON reader decodes the escapes, so the scan must see them decoded: "\u0034" is a
      // digit. Every pattern of the ruleset applies (field-scoped ones too: with no fields
      // to scope them, masking more is the safe side); replacements are JSON-escaped.
      let mark = scratchMark();
      let d = unescape(rec, 0, len, true);
      let dlen = decodedLen;
      setUnit(decodedMap, dlen, 0, false, true);
      prefilter(d, dlen, trigs, pats);
      for (let i: u32 = 0; i < regionCount; i++) {
        if (scanRegion(d, dlen, regionStart(i), regionEnd(i), regionPatterns(i) & pats) == ST_BLOCK) {
          flags |= FLAG_BLOCKED;
          stop = stopRule;
          break;
        }
      }
      scratchRelease(mark);
    } else if (text || fallback) {
      // Bytes: every pattern of the ruleset applies (as above).
      setUnit(0, len, 0, false);
      for (let i: u32 = 0; i < regionCount; i++) {
        if (scanRegion(rec, len, regionStart(i), regionEnd(i), regionPatterns(i) & pats) == ST_BLOCK) {
          flags |= FLAG_BLOCKED;
          stop = stopRule;
          break;
        }
      }
    }
  }
  let hitCount = hitsPos - hitStart;
  if ((flags & FLAG_BLOCKED) != 0) {
    outPos = outStart;
    store<u32>(ot, outStart);
    store<u32>(ot, 0, 4);
  } else if (hitCount > 0) {
    copyTo(len);
    flags |= FLAG_CHANGED;
    store<u32>(ot, outStart);
    store<u32>(ot, outPos - outStart, 4);
  } else if (emitAll) {
    outPos = outStart;
    putBytes(rec, len);
    store<u32>(ot, outStart);
    store<u32>(ot, len, 4);
  } else {
    outPos = outStart;
    store<u64>(ot, 0);
  }
  store<u32>(st, flags);
  store<u32>(st, hitStart, 4);
  store<u32>(st, hitCount, 8);
  store<u32>(st, stop, 12);
}

// SHA-256 of each record [0, n) into digests + 32*k. Returns 0 or E_*.
export function sha256Batch(n: u32): i32 {
  if (<u64>n > recCap) return E_RECORDS;
  for (let k: u32 = 0; k < n; k++) {
    let e = inTab + (<usize>k << 4);
    let off = load<u32>(e);
    let len = load<u32>(e + 4);
    if (<u64>off + <u64>len > inCap) return E_RANGE;
    sha256(inData + off, len, digests + (<usize>k << 5));
  }
  return 0;
}
