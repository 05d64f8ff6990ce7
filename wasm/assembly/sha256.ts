// SHA-256 (FIPS 180-4) and HMAC-SHA256 over linear memory, no allocation: state,
// schedule and padding scratch live in static memory. Payload hashing for the audit trail
// uses node:crypto (faster with SHA-NI); this one hashes matches (hash/tokenize actions),
// where a call into JavaScript per match would cost more than the hash.

const K: usize = memory.data<u32>([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const W: usize = memory.data(64 * 4);
const PAD: usize = memory.data(128);
const INNER: usize = memory.data(32);

let h0: u32 = 0;
let h1: u32 = 0;
let h2: u32 = 0;
let h3: u32 = 0;
let h4: u32 = 0;
let h5: u32 = 0;
let h6: u32 = 0;
let h7: u32 = 0;

function compress(blk: usize): void {
  for (let t: usize = 0; t < 16; t++) {
    store<u32>(W + (t << 2), bswap<u32>(load<u32>(blk + (t << 2))));
  }
  for (let t: usize = 16; t < 64; t++) {
    let w15 = load<u32>(W + ((t - 15) << 2));
    let w2 = load<u32>(W + ((t - 2) << 2));
    let s0 = rotr<u32>(w15, 7) ^ rotr<u32>(w15, 18) ^ (w15 >>> 3);
    let s1 = rotr<u32>(w2, 17) ^ rotr<u32>(w2, 19) ^ (w2 >>> 10);
    store<u32>(W + (t << 2), load<u32>(W + ((t - 16) << 2)) + s0 + load<u32>(W + ((t - 7) << 2)) + s1);
  }
  let a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
  let t1: u32;
  // Eight rounds per iteration with the variable roles rotated by hand, so
  // the a..h shuffle of the textbook loop costs no moves.
  for (let t: usize = 0; t < 256; t += 32) {
    t1 = h + (rotr<u32>(e, 6) ^ rotr<u32>(e, 11) ^ rotr<u32>(e, 25)) + ((e & f) ^ (~e & g)) + load<u32>(K + t, 0) + load<u32>(W + t, 0);
    d += t1;
    h = t1 + (rotr<u32>(a, 2) ^ rotr<u32>(a, 13) ^ rotr<u32>(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    t1 = g + (rotr<u32>(d, 6) ^ rotr<u32>(d, 11) ^ rotr<u32>(d, 25)) + ((d & e) ^ (~d & f)) + load<u32>(K + t, 4) + load<u32>(W + t, 4);
    c += t1;
    g = t1 + (rotr<u32>(h, 2) ^ rotr<u32>(h, 13) ^ rotr<u32>(h, 22)) + ((h & a) ^ (h & b) ^ (a & b));
    t1 = f + (rotr<u32>(c, 6) ^ rotr<u32>(c, 11) ^ rotr<u32>(c, 25)) + ((c & d) ^ (~c & e)) + load<u32>(K + t, 8) + load<u32>(W + t, 8);
    b += t1;
    f = t1 + (rotr<u32>(g, 2) ^ rotr<u32>(g, 13) ^ rotr<u32>(g, 22)) + ((g & h) ^ (g & a) ^ (h & a));
    t1 = e + (rotr<u32>(b, 6) ^ rotr<u32>(b, 11) ^ rotr<u32>(b, 25)) + ((b & c) ^ (~b & d)) + load<u32>(K + t, 12) + load<u32>(W + t, 12);
    a += t1;
    e = t1 + (rotr<u32>(f, 2) ^ rotr<u32>(f, 13) ^ rotr<u32>(f, 22)) + ((f & g) ^ (f & h) ^ (g & h));
    t1 = d + (rotr<u32>(a, 6) ^ rotr<u32>(a, 11) ^ rotr<u32>(a, 25)) + ((a & b) ^ (~a & c)) + load<u32>(K + t, 16) + load<u32>(W + t, 16);
    h += t1;
    d = t1 + (rotr<u32>(e, 2) ^ rotr<u32>(e, 13) ^ rotr<u32>(e, 22)) + ((e & f) ^ (e & g) ^ (f & g));
    t1 = c + (rotr<u32>(h, 6) ^ rotr<u32>(h, 11) ^ rotr<u32>(h, 25)) + ((h & a) ^ (~h & b)) + load<u32>(K + t, 20) + load<u32>(W + t, 20);
    g += t1;
    c = t1 + (rotr<u32>(d, 2) ^ rotr<u32>(d, 13) ^ rotr<u32>(d, 22)) + ((d & e) ^ (d & f) ^ (e & f));
    t1 = b + (rotr<u32>(g, 6) ^ rotr<u32>(g, 11) ^ rotr<u32>(g, 25)) + ((g & h) ^ (~g & a)) + load<u32>(K + t, 24) + load<u32>(W + t, 24);
    f += t1;
    b = t1 + (rotr<u32>(c, 2) ^ rotr<u32>(c, 13) ^ rotr<u32>(c, 22)) + ((c & d) ^ (c & e) ^ (d & e));
    t1 = a + (rotr<u32>(f, 6) ^ rotr<u32>(f, 11) ^ rotr<u32>(f, 25)) + ((f & g) ^ (~f & h)) + load<u32>(K + t, 28) + load<u32>(W + t, 28);
    e += t1;
    a = t1 + (rotr<u32>(b, 2) ^ rotr<u32>(b, 13) ^ rotr<u32>(b, 22)) + ((b & c) ^ (b & d) ^ (c & d));
  }
  h0 += a; h1 += b; h2 += c; h3 += d; h4 += e; h5 += f; h6 += g; h7 += h;
}

function init(): void {
  h0 = 0x6a09e667; h1 = 0xbb67ae85; h2 = 0x3c6ef372; h3 = 0xa54ff53a;
  h4 = 0x510e527f; h5 = 0x9b05688c; h6 = 0x1f83d9ab; h7 = 0x5be0cd19;
}

function loadState(p: usize): void {
  h0 = load<u32>(p); h1 = load<u32>(p, 4); h2 = load<u32>(p, 8); h3 = load<u32>(p, 12);
  h4 = load<u32>(p, 16); h5 = load<u32>(p, 20); h6 = load<u32>(p, 24); h7 = load<u32>(p, 28);
}

function saveState(p: usize): void {
  store<u32>(p, h0); store<u32>(p, h1, 4); store<u32>(p, h2, 8); store<u32>(p, h3, 12);
  store<u32>(p, h4, 16); store<u32>(p, h5, 20); store<u32>(p, h6, 24); store<u32>(p, h7, 28);
}

// Processes src[0, len) after `prior` bytes already absorbed, pads, writes the digest.
function finish(src: usize, len: usize, prior: u64, out: usize): void {
  let full = len & ~(<usize>63);
  for (let p: usize = 0; p < full; p += 64) compress(src + p);
  // Tail + 0x80 + zeros + 64-bit bit length: one block if the tail is < 56 bytes.
  let rest = len - full;
  let padLen: usize = rest < 56 ? 64 : 128;
  memory.copy(PAD, src + full, rest);
  store<u8>(PAD + rest, 0x80);
  memory.fill(PAD + rest + 1, 0, padLen - rest - 1 - 8);
  store<u64>(PAD + padLen - 8, bswap<u64>((prior + <u64>len) << 3));
  compress(PAD);
  if (padLen == 128) compress(PAD + 64);
  store<u32>(out, bswap<u32>(h0));
  store<u32>(out + 4, bswap<u32>(h1));
  store<u32>(out + 8, bswap<u32>(h2));
  store<u32>(out + 12, bswap<u32>(h3));
  store<u32>(out + 16, bswap<u32>(h4));
  store<u32>(out + 20, bswap<u32>(h5));
  store<u32>(out + 24, bswap<u32>(h6));
  store<u32>(out + 28, bswap<u32>(h7));
}

// Digest of src[0, len) written big-endian to out[0, 32).
export function sha256(src: usize, len: usize, out: usize): void {
  init();
  finish(src, len, 0, out);
}

// Precomputes the HMAC inner/outer states of a 64-byte key block.
export function hmacPrepare(keyBlock: usize, inner: usize, outer: usize): void {
  for (let i: usize = 0; i < 64; i++) store<u8>(PAD + i, load<u8>(keyBlock + i) ^ 0x36);
  init(); compress(PAD); saveState(inner);
  for (let i: usize = 0; i < 64; i++) store<u8>(PAD + i, load<u8>(keyBlock + i) ^ 0x5c);
  init(); compress(PAD); saveState(outer);
}

// HMAC-SHA256(key, src[0, len)) with the prepared states, into out[0, 32).
export function hmac(inner: usize, outer: usize, src: usize, len: usize, out: usize): void {
  loadState(inner);
  finish(src, len, 64, INNER);
  loadState(outer);
  finish(INNER, 32, 64, out);
}
