// Validators run on each automaton candidate; ids match src/inspect/detectors.ts.
// A candidate is a byte range; the patterns guarantee its shape (digits where digits
// belong), validators check what a regular language cannot: checksums and value ranges.

export const V_NONE: u32 = 0;
export const V_CARD: u32 = 1;
export const V_SSN: u32 = 2;
export const V_IBAN: u32 = 3;
export const V_IPV4: u32 = 4;
export const V_IPV6: u32 = 5;
export const V_SECRET: u32 = 6;

// Registered IBAN lengths per country (SWIFT IBAN registry), 26 x 26 table filled at start.
const IBAN_COUNTRIES = "AD24AE23AL28AT20AZ28BA20BE16BG22BH22BR29BY28CH21CR22CY28CZ24DE22DK18DO28EE20EG29ES24FI18FO18FR27GB22GE22GI23GL18GR27GT28HR21HU28IE22IL23IQ23IS26IT27JO30KW30KZ20LB28LC32LI21LT20LU20LV21MC27MD24ME22MK19MR27MT31MU30NL18NO15PK24PL28PS29PT25QA29RO24RS22SA24SC31SE24SI19SK24SM27ST25SV28TL23TN24TR26UA29VA22VG24XK20";
const IBAN_LEN: usize = memory.data(676);
for (let i = 0; i < IBAN_COUNTRIES.length; i += 4) {
  let a = <usize>(IBAN_COUNTRIES.charCodeAt(i) - 65);
  let b = <usize>(IBAN_COUNTRIES.charCodeAt(i + 1) - 65);
  let n = (IBAN_COUNTRIES.charCodeAt(i + 2) - 48) * 10 + (IBAN_COUNTRIES.charCodeAt(i + 3) - 48);
  store<u8>(IBAN_LEN + a * 26 + b, <u8>n);
}

// @ts-ignore: decorator
@inline function isDigit(c: u32): bool {
  return c - 0x30 < 10;
}

// @ts-ignore: decorator
@inline function hexVal(c: u32): i32 {
  if (c - 0x30 < 10) return <i32>(c - 0x30);
  let l = c | 0x20;
  if (l - 0x61 < 6) return <i32>(l - 0x61 + 10);
  return -1;
}

export function validate(v: u32, p: usize, len: u32): bool {
  switch (v) {
    case V_NONE: return true;
    case V_CARD: return card(p, len);
    case V_SSN: return ssn(p, len);
    case V_IBAN: return iban(p, len);
    case V_IPV4: return ipv4(p, len);
    case V_IPV6: return ipv6(p, len);
    case V_SECRET: return secret(p, len);
  }
  return false;
}

// Luhn over the digits (separators skipped) and an issuer prefix that allows the length.
function card(p: usize, len: u32): bool {
  let n: u32 = 0;
  let prefix: u32 = 0; // first 6 digits
  let sumA: u32 = 0; // digits at even index from the left doubled
  let sumB: u32 = 0; // digits at odd index doubled
  for (let i: u32 = 0; i < len; i++) {
    let c = <u32>load<u8>(p + i);
    if (!isDigit(c)) continue;
    let d = c - 0x30;
    let dd = d < 5 ? d << 1 : (d << 1) - 9;
    if (n & 1) { sumA += d; sumB += dd; } else { sumA += dd; sumB += d; }
    if (n < 6) prefix = prefix * 10 + d;
    n++;
  }
  // the rightmost digit is never doubled: with n even, even indices are doubled
  let sum = (n & 1) ? sumB : sumA;
  if (sum % 10 != 0) return false;
  return issuerAllows(prefix, n);
}

function issuerAllows(p6: u32, n: u32): bool {
  let p1 = p6 / 100000;
  let p2 = p6 / 10000;
  let p3 = p6 / 1000;
  let p4 = p6 / 100;
  if (p1 == 4) return n == 13 || n == 16 || n == 19; // Visa
  if (p2 >= 51 && p2 <= 55) return n == 16; // Mastercard
  if (p4 >= 2221 && p4 <= 2720) return n == 16; // Mastercard 2-series
  if (p2 == 34 || p2 == 37) return n == 15; // Amex
  if (p4 == 6011 || (p3 >= 644 && p3 <= 649) || p2 == 65) return n >= 16 && n <= 19; // Discover
  if ((p3 >= 300 && p3 <= 305) || p2 == 36 || p2 == 38 || p2 == 39) return n >= 14 && n <= 19; // Diners
  if (p4 >= 3528 && p4 <= 3589) return n >= 16 && n <= 19; // JCB
  if (p2 == 62) return n >= 16 && n <= 19; // UnionPay
  if (p4 == 5018 || p4 == 5020 || p4 == 5038 || p4 == 5893 || p4 == 6304 || p4 == 6759 || (p4 >= 6761 && p4 <= 6763)) return n >= 12 && n <= 19; // Maestro
  if (p4 >= 2200 && p4 <= 2204) return n >= 16 && n <= 19; // Mir
  return false;
}

function ssn(p: usize, len: u32): bool {
  let v: u32 = 0;
  let n: u32 = 0;
  for (let i: u32 = 0; i < len; i++) {
    let c = <u32>load<u8>(p + i);
    if (isDigit(c)) { v = v * 10 + (c - 0x30); n++; }
  }
  if (n != 9) return false;
  let area = v / 1000000;
  let group = (v / 10000) % 100;
  let serial = v % 10000;
  return area != 0 && area != 666 && area < 900 && group != 0 && serial != 0;
}

function iban(p: usize, len: u32): bool {
  // compact form into a small buffer: at most 34 characters
  let n: u32 = 0;
  for (let i: u32 = 0; i < len; i++) {
    let c = <u32>load<u8>(p + i);
    if (c != 0x20) n++;
  }
  if (n < 15 || n > 34) return false;
  let c0 = <u32>load<u8>(p) - 65;
  let c1 = <u32>load<u8>(p + 1) - 65;
  if (c0 >= 26 || c1 >= 26) return false;
  if (<u32>load<u8>(IBAN_LEN + <usize>(c0 * 26 + c1)) != n) return false;
  // mod 97 of the rearranged number: chars 4.. then the first four, letters as 10..35
  let r: u32 = 0;
  for (let pass = 0; pass < 2; pass++) {
    let k: u32 = 0;
    for (let i: u32 = 0; i < len; i++) {
      let c = <u32>load<u8>(p + i);
      if (c == 0x20) continue;
      let inFirst = k < 4;
      k++;
      if ((pass == 0) == inFirst) continue;
      if (isDigit(c)) r = (r * 10 + (c - 0x30)) % 97;
      else r = (r * 100 + (c - 55)) % 97;
    }
  }
  return r == 1;
}

function ipv4(p: usize, len: u32): bool {
  let v: u32 = 0;
  for (let i: u32 = 0; i < len; i++) {
    let c = <u32>load<u8>(p + i);
    if (c == 0x2e) { if (v > 255) return false; v = 0; }
    else v = v * 10 + (c - 0x30);
  }
  return v <= 255;
}

// 8 groups, or fewer with exactly one "::" (and no ":::"); at least one hex digit.
function ipv6(p: usize, len: u32): bool {
  let groups: u32 = 0;
  let groupLen: u32 = 0;
  let doubles: u32 = 0;
  let hexTotal: u32 = 0;
  for (let i: u32 = 0; i < len; i++) {
    let c = <u32>load<u8>(p + i);
    if (c == 0x3a) {
      if (i + 1 < len && <u32>load<u8>(p + i + 1) == 0x3a) {
        if (i + 2 < len && <u32>load<u8>(p + i + 2) == 0x3a) return false;
        doubles++;
        if (groupLen > 0) groups++;
        groupLen = 0;
        i++;
        continue;
      }
      // a single ':' must separate two groups
      if (groupLen == 0 || i + 1 >= len) return false;
      groups++;
      groupLen = 0;
    } else {
      if (hexVal(c) < 0) return false;
      groupLen++;
      hexTotal++;
      if (groupLen > 4) return false;
    }
  }
  if (groupLen > 0) groups++;
  if (hexTotal == 0 || doubles > 1) return false;
  return doubles == 1 ? groups <= 7 : groups == 8;
}

function secret(p: usize, len: u32): bool {
  let upper = false, lower = false, digit = false;
  for (let i: u32 = 0; i < len; i++) {
    let c = <u32>load<u8>(p + i);
    if (c - 0x41 < 26) upper = true;
    else if (c - 0x61 < 26) lower = true;
    else if (c - 0x30 < 10) digit = true;
  }
  return upper && lower && digit;
}
