// JSON escape decoding into scratch memory, with a map back to the raw bytes so matches in
// the decoded text can be replaced in the record. Lenient: what is not a complete escape
// (`\q`, `\u12`, a trailing backslash) stays as it is, so the same decoder serves string
// content the walker validated and whole values that did not parse (the byte-scan
// fallback must see `\u0034` as the digit a JSON reader will see).
import { salloc } from "./scratch";

/** The decoded length of the last unescape(). */
export let decodedLen: u32 = 0;
/** The last unescape()'s map (when asked for): u32 per decoded byte = the raw offset of the escape or byte that produced it, then one for the end. */
export let decodedMap: usize = 0;

// @ts-ignore: decorator
@inline function hexDigit(c: u32): i32 {
  if (c - 0x30 < 10) return <i32>(c - 0x30);
  let l = c | 0x20;
  if (l - 0x61 < 6) return <i32>(l - 0x61 + 10);
  return -1;
}

/** The code unit of `\uXXXX` at p (the backslash), or -1 when the four characters are not hex digits. */
function unit(p: usize): i32 {
  let v: i32 = 0;
  for (let i: usize = 2; i < 6; i++) {
    let d = hexDigit(<u32>load<u8>(p + i));
    if (d < 0) return -1;
    v = (v << 4) | d;
  }
  return v;
}

/**
 * Decodes src[a, b) (offsets relative to src) into a new scratch buffer and returns it;
 * the length is in decodedLen, the map (withMap) in decodedMap, as offsets relative to src.
 */
export function unescape(src: usize, a: u32, b: u32, withMap: bool): usize {
  let n = b - a;
  // decoding never makes text longer (an escape of 2-12 bytes gives at most 4)
  let d = salloc(<usize>n);
  let m: usize = withMap ? salloc(<usize>(n + 1) << 2) : 0;
  let k: u32 = 0;
  let i = a;
  while (i < b) {
    let c = <u32>load<u8>(src + i);
    let cp: i32 = -1;
    let from = i;
    if (c == 0x5c && i + 1 < b) {
      let e = <u32>load<u8>(src + i + 1);
      if (e == 0x75) {
        if (i + 6 <= b) cp = unit(src + i);
        if (cp >= 0) {
          i += 6;
          if (cp >= 0xd800 && cp <= 0xdbff && i + 6 <= b && load<u8>(src + i) == 0x5c && load<u8>(src + i + 1) == 0x75) {
            let lo = unit(src + i);
            if (lo >= 0xdc00 && lo <= 0xdfff) { cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00); i += 6; }
          }
          if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd; // a lone surrogate
        }
      } else if (e == 0x22 || e == 0x5c || e == 0x2f) { cp = <i32>e; i += 2; }
      else if (e == 0x62) { cp = 0x08; i += 2; }
      else if (e == 0x66) { cp = 0x0c; i += 2; }
      else if (e == 0x6e) { cp = 0x0a; i += 2; }
      else if (e == 0x72) { cp = 0x0d; i += 2; }
      else if (e == 0x74) { cp = 0x09; i += 2; }
    }
    if (cp < 0) {
      // a plain byte, or a backslash that starts no escape
      store<u8>(d + k, <u8>c);
      if (withMap) store<u32>(m + (<usize>k << 2), i);
      k++;
      i++;
      continue;
    }
    let u = <u32>cp;
    let bytes: u32 = u < 0x80 ? 1 : u < 0x800 ? 2 : u < 0x10000 ? 3 : 4;
    if (bytes == 1) store<u8>(d + k, <u8>u);
    else if (bytes == 2) { store<u8>(d + k, <u8>(0xc0 | (u >> 6))); store<u8>(d + k + 1, <u8>(0x80 | (u & 63))); }
    else if (bytes == 3) { store<u8>(d + k, <u8>(0xe0 | (u >> 12))); store<u8>(d + k + 1, <u8>(0x80 | ((u >> 6) & 63))); store<u8>(d + k + 2, <u8>(0x80 | (u & 63))); }
    else { store<u8>(d + k, <u8>(0xf0 | (u >> 18))); store<u8>(d + k + 1, <u8>(0x80 | ((u >> 12) & 63))); store<u8>(d + k + 2, <u8>(0x80 | ((u >> 6) & 63))); store<u8>(d + k + 3, <u8>(0x80 | (u & 63))); }
    if (withMap) for (let j: u32 = 0; j < bytes; j++) store<u32>(m + (<usize>(k + j) << 2), from);
    k += bytes;
  }
  if (withMap) store<u32>(m + (<usize>k << 2), b);
  decodedLen = k;
  decodedMap = m;
  return d;
}
