// Writing a record's output: the bytes between edits are copied, each edit writes its
// replacement. Edits arrive in increasing position order (document order), so output is
// produced in one pass; a JSON walk that has to undo edits (a dropped member, a malformed
// document) rewinds the writer to a saved state.
import {
  A_BLOCK, A_DROP, A_HASH, A_MASK, A_PROTECT, A_REDACT, A_TOKENIZE, PROTECT_MARK, K_INNER, K_OUTER, KEY_SIZE, keyTable, P_RULE, pattern, R_ACTION,
  R_HASH_LEN, R_KEEP_FIRST, R_KEEP_LAST, R_KEY, R_KEY_VERSION, R_MASK_CHAR, R_STR_LEN, R_STR_OFF, R_TOKEN_FORMAT, rule, str,
} from "./program";
import { hmac, sha256 } from "./sha256";

export const ST_OK: i32 = 0;
export const ST_DROP: i32 = 1;
export const ST_BLOCK: i32 = 2;

// ---- output writer ----

export let src: usize = 0; // the record
export let outData: usize = 0;
export let outCap: u32 = 0;
export let outPos: u32 = 0; // may run past outCap: the batch is then retried with more room
export let copied: u32 = 0; // src[0, copied) is accounted for in the output
export let hits: usize = 0;
export let hitsCap: u32 = 0;
export let hitsPos: u32 = 0;
/** rule that blocked / dropped, for the status */
export let stopRule: u32 = 0;

export function writerStart(record: usize, outBase: usize, cap: u32, pos: u32): void {
  src = record;
  outData = outBase;
  outCap = cap;
  outPos = pos;
  copied = 0;
}

export function hitsStart(base: usize, cap: u32, pos: u32): void {
  hits = base;
  hitsCap = cap;
  hitsPos = pos;
}

// @ts-ignore: decorator
@inline export function put(b: u32): void {
  if (outPos < outCap) store<u8>(outData + <usize>outPos, <u8>b);
  outPos++;
}

export function putBytes(p: usize, n: u32): void {
  if (<u64>outPos + <u64>n <= <u64>outCap) {
    let d = outData + <usize>outPos;
    // short copies inline (memory.copy is a call into the runtime); regions have 64 spare
    // bytes after them, so the last 16-byte store may run past n
    if (n <= 512) {
      for (let i: usize = 0; i < <usize>n; i += 16) v128.store(d + i, v128.load(p + i));
    } else memory.copy(d, p, <usize>n);
  }
  outPos += n;
}

/** Copies the input up to `to` (record offset). */
export function copyTo(to: u32): void {
  if (to > copied) putBytes(src + <usize>copied, to - copied);
  copied = to;
}

export function hit(r: u32): void {
  if (hitsPos < hitsCap) store<u32>(hits + (<usize>hitsPos << 2), r);
  hitsPos++;
}

/** Restores a writer state saved from outPos / copied / hitsPos. */
export function restore(out: u32, at: u32, hitCount: u32): void {
  outPos = out;
  copied = at;
  hitsPos = hitCount;
}

/** Marks src[0, to) as handled without copying it (the bytes are dropped). */
export function skipTo(to: u32): void {
  copied = to;
}

export function setStop(r: u32): void {
  stopRule = r;
}

// ---- the unit being scanned ----

/** decoded-to-raw offset map (u32 per decoded byte + 1), or 0 when the unit is raw bytes */
export let unitMap: usize = 0;
export let unitLen: u32 = 0;
/** record offset of the unit's first byte (raw units) */
export let unitRaw: u32 = 0;
/** the unit is JSON string content: output must be escaped, drop removes the member */
export let unitJson: bool = false;
/** replacements are JSON-escaped though the unit is not a JSON string (the decoded view of a value that did not parse) */
export let unitEscape: bool = false;

export function setUnit(map: usize, len: u32, raw: u32, json: bool, escape: bool = false): void {
  unitMap = map;
  unitLen = len;
  unitRaw = raw;
  unitJson = json;
  unitEscape = json || escape;
}

function rawStart(s: u32): u32 {
  return unitMap == 0 ? unitRaw + s : load<u32>(unitMap + (<usize>s << 2));
}

function rawEnd(e: u32): u32 {
  if (unitMap == 0) return unitRaw + e;
  // an escape that decodes to several bytes is replaced whole
  while (e > 0 && e < unitLen && load<u32>(unitMap + (<usize>e << 2)) == load<u32>(unitMap + (<usize>(e - 1) << 2))) e++;
  return load<u32>(unitMap + (<usize>e << 2));
}

/** Applies pattern p's rule to the match u[s, e) of the current unit. */
export function applyMatch(p: u32, u: usize, s: u32, e: u32): i32 {
  let r = load<u32>(pattern(p) + P_RULE);
  let rp = rule(r);
  let act = load<u32>(rp + R_ACTION);
  if (act == A_BLOCK) { stopRule = r; return ST_BLOCK; }
  if (act == A_DROP && unitJson) { stopRule = r; return ST_DROP; }
  copyTo(rawStart(s));
  if (act != A_DROP) replacement(rp, u + s, e - s, unitEscape);
  copied = rawEnd(e);
  hit(r);
  return ST_OK;
}

// ---- replacements ----

const DIGEST: usize = memory.data(32);
const STREAM: usize = memory.data(64);
const HEX = "0123456789abcdef";
const HEX_T: usize = memory.data(16);
const B64_T: usize = memory.data(64);
{
  for (let i = 0; i < 16; i++) store<u8>(HEX_T + i, <u8>HEX.charCodeAt(i));
  let b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (let i = 0; i < 64; i++) store<u8>(B64_T + i, <u8>b64.charCodeAt(i));
}

/** One byte of value text; escaped when it goes into a JSON string. */
// @ts-ignore: decorator
@inline function putText(b: u32, json: bool): void {
  if (json && (b == 0x22 || b == 0x5c || b < 0x20)) putEscape(b);
  else put(b);
}

function putEscape(b: u32): void {
  put(0x5c);
  if (b == 0x22 || b == 0x5c) put(b);
  else if (b == 0x0a) put(0x6e);
  else if (b == 0x0d) put(0x72);
  else if (b == 0x09) put(0x74);
  else if (b == 0x08) put(0x62);
  else if (b == 0x0c) put(0x66);
  else { put(0x75); put(0x30); put(0x30); put(<u32>load<u8>(HEX_T + (b >> 4))); put(<u32>load<u8>(HEX_T + (b & 15))); }
}

// @ts-ignore: decorator
@inline function isAlnum(c: u32): bool {
  return c - 0x30 < 10 || (c | 0x20) - 0x61 < 26;
}

function putDecimal(v: u32): void {
  if (v >= 10) putDecimal(v / 10);
  put(0x30 + v % 10);
}

/**
 * Writes rule rp's replacement for the value bytes v[0, n). `json`: the replacement lands
 * inside a JSON string (value bytes that are copied through get escaped).
 */
export function replacement(rp: usize, v: usize, n: u32, json: bool): void {
  let act = load<u32>(rp + R_ACTION);
  if (act == A_REDACT) {
    putBytes(str(load<u32>(rp + R_STR_OFF)), load<u32>(rp + R_STR_LEN));
  } else if (act == A_MASK) {
    let total: u32 = 0;
    for (let i: u32 = 0; i < n; i++) if (isAlnum(<u32>load<u8>(v + i))) total++;
    let keepFirst = load<u32>(rp + R_KEEP_FIRST);
    let keepLast = load<u32>(rp + R_KEEP_LAST);
    let ch = load<u32>(rp + R_MASK_CHAR);
    let k: u32 = 0;
    for (let i: u32 = 0; i < n; i++) {
      let c = <u32>load<u8>(v + i);
      if (isAlnum(c)) {
        k++;
        if (k > keepFirst && k + keepLast <= total) { put(ch); continue; }
      }
      putText(c, json);
    }
  } else if (act == A_HASH) {
    sha256(v, n, DIGEST);
    let len = load<u32>(rp + R_HASH_LEN);
    for (let i: u32 = 0; i < len; i++) {
      let b = <u32>load<u8>(DIGEST + (i >> 1));
      put(<u32>load<u8>(HEX_T + ((i & 1) == 0 ? b >> 4 : b & 15)));
    }
  } else if (act == A_PROTECT) {
    // encryption runs on the host after this call (no AES here): the match is written as is and
    // its place recorded among the hits, before the rule's own hit
    hit(PROTECT_MARK);
    hit(outPos);
    hit(n | (json ? 0x80000000 : 0));
    putBytes(v, n);
  } else if (act == A_TOKENIZE) {
    let key = keyTable + <usize>load<u32>(rp + R_KEY) * KEY_SIZE;
    let inner = str(load<u32>(key + K_INNER));
    let outer = str(load<u32>(key + K_OUTER));
    hmac(inner, outer, v, n, DIGEST);
    let version = load<u32>(rp + R_KEY_VERSION);
    if (load<u32>(rp + R_TOKEN_FORMAT) == 0) {
      // prefix "v" version "_" base64url(first 16 bytes of the HMAC) = 128 bits
      putBytes(str(load<u32>(rp + R_STR_OFF)), load<u32>(rp + R_STR_LEN));
      put(0x76);
      putDecimal(version);
      put(0x5f);
      for (let i: usize = 0; i < 15; i += 3) {
        let x = (<u32>load<u8>(DIGEST + i) << 16) | (<u32>load<u8>(DIGEST + i + 1) << 8) | <u32>load<u8>(DIGEST + i + 2);
        put(<u32>load<u8>(B64_T + (x >> 18)));
        put(<u32>load<u8>(B64_T + ((x >> 12) & 63)));
        put(<u32>load<u8>(B64_T + ((x >> 6) & 63)));
        put(<u32>load<u8>(B64_T + (x & 63)));
      }
      let last = <u32>load<u8>(DIGEST + 15);
      put(<u32>load<u8>(B64_T + (last >> 2)));
      put(<u32>load<u8>(B64_T + ((last & 3) << 4)));
    } else {
      preserve(rp, v, n, json, version);
    }
  }
}

// Format-preserving token: digits stay digits, letters stay letters of the same case,
// everything else and the last keepLast alphanumerics are kept. The first replaced
// character carries the key version (mod 10 / mod 26). Derived from the HMAC (more
// bytes: SHA-256 of the HMAC and a block counter), so equal inputs give equal tokens.
function preserve(rp: usize, v: usize, n: u32, json: bool, version: u32): void {
  let total: u32 = 0;
  for (let i: u32 = 0; i < n; i++) if (isAlnum(<u32>load<u8>(v + i))) total++;
  let keepLast = load<u32>(rp + R_KEEP_LAST);
  memory.copy(STREAM, DIGEST, 32);
  let used: u32 = 0;
  let block: u32 = 0;
  let k: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    let c = <u32>load<u8>(v + i);
    if (!isAlnum(c)) { putText(c, json); continue; }
    k++;
    if (k + keepLast > total) { put(c); continue; }
    if (used == 32) {
      block++;
      store<u32>(STREAM + 32, block);
      sha256(STREAM, 36, STREAM);
      used = 0;
    }
    let r = version;
    if (k > 1) { r = <u32>load<u8>(STREAM + <usize>used); used++; }
    if (c - 0x30 < 10) put(0x30 + r % 10);
    else if (c - 0x61 < 26) put(0x61 + r % 26);
    else put(0x41 + r % 26);
  }
}
