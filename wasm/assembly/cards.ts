// Payment card number detector + partial mask (v0).
//
// Semantics (the TS reference in test/engine.test.ts implements the same):
//  * A start is an ASCII digit at position s whose previous byte is not an
//    ASCII letter/digit (or s = 0). Bytes >= 0x80 are not word characters.
//  * From s a candidate extends over digits, where two digits may be
//    separated by exactly one ' ' or '-' (mixing allowed), up to 19 digits.
//  * A candidate end is reached after the k-th digit, 13 <= k <= 19, when the
//    next byte is not an ASCII letter/digit (or the record ends) and the k
//    digits pass the Luhn check.
//  * Leftmost-longest: the first start (left to right) that has any candidate
//    end wins, with its longest candidate end. Scanning resumes right after the
//    match. A start without a candidate end is skipped; the next start may lie
//    inside the same digit group sequence (after a separator).
//  * Mask: every digit except the last 4 of the match becomes '*';
//    separators are kept, so masking is length-preserving.
import { isAlnum, isDigit } from "./tables";

const MIN_DIGITS: i32 = 13;
const MAX_DIGITS: i32 = 19;

// Side results of matchAt (globals avoid a multi-value return; an instance
// is single-threaded): digit count of the match, and where to resume after a
// failed start.
let matchDigits: i32 = 0;
let resumeAt: usize = 0;
// Cards masked by the last maskCards call.
export let lastHits: u32 = 0;

// Longest Luhn-valid candidate starting at p (a digit); returns its end
// (exclusive) or 0 when none. Luhn doubles every second digit counted from the
// right, so the doubled set depends on the final length: keep both parity
// sums while walking left to right and pick by the length at each end.
// @ts-ignore: decorator
@inline function matchAt(src: usize, p: usize, len: usize): usize {
  let i = p;
  let n: i32 = 0;
  let sumEven: u32 = 0; // digits at even indices doubled: right for even n
  let sumOdd: u32 = 0;  // digits at odd indices doubled: right for odd n
  let best: usize = 0;
  let bestN: i32 = 0;
  let firstSep: usize = 0;
  while (true) {
    let d = <u32>load<u8>(src + i) - 0x30;
    let dd = (d << 1) - select<u32>(9, 0, d > 4);
    if (n & 1) { sumEven += d; sumOdd += dd; } else { sumEven += dd; sumOdd += d; }
    n++;
    i++;
    let next: u32 = i < len ? <u32>load<u8>(src + i) : 0x20;
    if (n >= MIN_DIGITS && !isAlnum(next)) {
      let s = (n & 1) ? sumOdd : sumEven;
      if (s % 10 == 0) { best = i; bestN = n; }
    }
    if (n == MAX_DIGITS || i >= len) break;
    if (isDigit(next)) continue;
    if ((next == 0x20 || next == 0x2d) && i + 1 < len && isDigit(<u32>load<u8>(src + i + 1))) {
      if (firstSep == 0) firstSep = i;
      i++;
      continue;
    }
    break;
  }
  // On failure the next start can only follow a separator we crossed; with
  // none, everything up to i is one digit run (no starts inside). The byte
  // at i is then a non-digit or a 20th digit that the word skip handles.
  resumeAt = firstSep != 0 ? firstSep + 1 : i;
  matchDigits = bestN;
  return best;
}

// Writes the masked form of src[0, mlen) (a match with `digits` digits) to dst.
// @ts-ignore: decorator
@inline function writeMasked(dst: usize, src: usize, mlen: usize, digits: i32): void {
  let hide = digits - 4;
  for (let k: usize = 0; k < mlen; k++) {
    let c = <u32>load<u8>(src + k);
    if (isDigit(c) && hide > 0) { c = 0x2a; hide--; }
    store<u8>(dst + k, <u8>c);
  }
}

// 16 bytes at p -> bitmask of lanes holding an ASCII digit.
// @ts-ignore: decorator
@inline function digitMask16(p: usize): i32 {
  let t = i8x16.sub(v128.load(p), i8x16.splat(0x30));
  return i8x16.bitmask(i8x16.lt_u(t, i8x16.splat(10)));
}

// Scans src[0, len) and writes the rewritten record to dst (capacity dstCap).
// Returns bytes written, -1 when nothing matched (dst untouched: the caller
// reuses the input), -2 when dstCap is too small. Sets lastHits.
// Output is assembled as gap/replacement/gap... so a future non
// length-preserving action (tokenize, redact) only changes the replacement.
export function maskCards(src: usize, len: usize, dst: usize, dstCap: usize): isize {
  let hits: u32 = 0;
  let copied: usize = 0; // src[0, copied) already emitted
  let w: usize = 0;
  let p: usize = 0;
  while (p < len) {
    if (p + 16 <= len) {
      let m = digitMask16(src + p);
      if (m == 0) { p += 16; continue; }
      p += <usize>ctz(m);
    } else if (!isDigit(<u32>load<u8>(src + p))) {
      p++;
      continue;
    }
    // src[p] is a digit.
    if (p > 0 && isAlnum(<u32>load<u8>(src + p - 1))) {
      // Inside a word: no start before the next non-word byte.
      p++;
      while (p < len && isAlnum(<u32>load<u8>(src + p))) p++;
      continue;
    }
    let end = matchAt(src, p, len);
    if (end == 0) { p = resumeAt; continue; }
    let gap = p - copied;
    let mlen = end - p;
    if (w + gap + mlen > dstCap) { lastHits = hits; return -2; }
    memory.copy(dst + w, src + copied, gap);
    w += gap;
    writeMasked(dst + w, src + p, mlen, matchDigits);
    w += mlen;
    hits++;
    copied = end;
    p = end;
  }
  lastHits = hits;
  if (hits == 0) return -1;
  let tail = len - copied;
  if (w + tail > dstCap) return -2;
  memory.copy(dst + w, src + copied, tail);
  return <isize>(w + tail);
}
