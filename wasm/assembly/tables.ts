// Byte classification shared by the detectors. One 256-byte table in static
// memory, filled once at instantiation, so the hot loops do a single load per
// byte instead of range comparisons.

export const CC_DIGIT: u8 = 1;
export const CC_ALPHA: u8 = 2;
export const CC_ALNUM: u8 = CC_DIGIT | CC_ALPHA;

export const CHAR_CLASS: usize = memory.data(256);

for (let c: i32 = 0; c < 256; c++) {
  let k: u8 = 0;
  if (c >= 0x30 && c <= 0x39) k = CC_DIGIT;
  else if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) k = CC_ALPHA;
  store<u8>(CHAR_CLASS + <usize>c, k);
}

// @ts-ignore: decorator
@inline export function isDigit(c: u32): bool {
  return c - 0x30 < 10;
}

// Only ASCII letters/digits count as word characters: bytes >= 0x80 (UTF-8
// multi-byte sequences) are boundaries, like punctuation.
// @ts-ignore: decorator
@inline export function isAlnum(c: u32): bool {
  return (load<u8>(CHAR_CLASS + <usize>c) & CC_ALNUM) != 0;
}
