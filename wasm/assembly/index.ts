// streamgate inspection engine — batch ABI over linear memory (ABI v1).
//
// The host never allocates inside WASM and the engine never allocates at all
// (runtime "stub", no `new`): all working memory is a fixed set of regions
// laid out after __heap_base by ensure(), reused by every call, grown (and
// re-laid out) only when a batch does not fit.
//
// Header (u32 words at header()):
//   [0] ABI version          [1] record capacity
//   [2] in table ptr         [3] in data ptr        [4] in data capacity
//   [5] out table ptr        [6] out data ptr       [7] out data capacity
//   [8] status table ptr     [9] digest region ptr
// Regions:
//   in table   : records x {u32 offset, u32 length}, offsets relative to in data
//   in data    : payloads, any order/packing the table describes
//   out table  : records x {u32 offset, u32 length}, relative to out data;
//                valid only where the record's CHANGED flag is set
//   out data   : rewritten payloads, concatenated in record order
//   status     : records x {u32 hits, u32 flags}
//   digests    : records x 32 bytes (sha256Batch)
// Unchanged records are not copied to out data: the host keeps its original.
// All pointers move when ensure() grows anything; re-read the header then.
import { maskCards, lastHits } from "./cards";
import { sha256 } from "./sha256";

const ABI_VERSION: u32 = 1;

export const FLAG_CHANGED: u32 = 1;

// Negative results of inspect / sha256Batch.
export const E_RECORDS: i32 = -1;  // n exceeds record capacity
export const E_OUT_FULL: i32 = -2; // out data too small: grow outBytes and retry
export const E_RANGE: i32 = -3;    // an in table entry points outside in data

const HDR: usize = memory.data(64);

const MIN_RECORDS: u64 = 256;
const MIN_BYTES: u64 = 64 * 1024;

let recCap: u64 = 0;
let inCap: u64 = 0;
let outCap: u64 = 0;
let inTab: usize = 0;
let inData: usize = 0;
let outTab: usize = 0;
let outData: usize = 0;
let status: usize = 0;
let digests: usize = 0;

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
}
writeHeader();

// @ts-ignore: decorator
@inline function align(v: u64, a: u64): u64 {
  return (v + a - 1) & ~(a - 1);
}

// Grow a capacity geometrically so a slowly rising batch size does not
// re-layout (and copy nothing, but re-read views on the host) every call.
// @ts-ignore: decorator
@inline function grown(cur: u64, want: u64, min: u64, unit: u64): u64 {
  if (want <= cur) return cur;
  return align(max(max(want, cur + (cur >> 1)), min), unit);
}

export function header(): usize {
  return HDR;
}

// Makes room for a batch of `records` records with `inBytes` of input and
// `outBytes` of output. Returns header() or 0 when memory cannot grow.
// Region contents are not preserved across a re-layout.
export function ensure(records: u32, inBytes: u32, outBytes: u32): usize {
  if (<u64>records <= recCap && <u64>inBytes <= inCap && <u64>outBytes <= outCap) return HDR;
  let r = grown(recCap, records, MIN_RECORDS, 64);
  let i = grown(inCap, inBytes, MIN_BYTES, 64 * 1024);
  let o = grown(outCap, outBytes, MIN_BYTES, 64 * 1024);
  // 16 spare bytes after each data region keep future 16-byte SIMD loads in bounds.
  let p = align(<u64>__heap_base, 64);
  let pInTab = p; p = align(p + r * 8, 64);
  let pStatus = p; p = align(p + r * 8, 64);
  let pOutTab = p; p = align(p + r * 8, 64);
  let pDig = p; p = align(p + r * 32, 64);
  let pIn = p; p = align(p + i + 16, 64);
  let pOut = p; p = align(p + o + 16, 64);
  if (p > 0xFFFF0000) return 0;
  let pages = <i32>((p + 0xFFFF) >> 16);
  let have = memory.size();
  if (pages > have && memory.grow(pages - have) < 0) return 0;
  recCap = r; inCap = i; outCap = o;
  inTab = <usize>pInTab; status = <usize>pStatus; outTab = <usize>pOutTab;
  digests = <usize>pDig; inData = <usize>pIn; outData = <usize>pOut;
  writeHeader();
  return HDR;
}

// Runs the detectors over records [0, n). Returns total bytes written to out
// data (>= 0) or a negative E_* code. Fills status for every record and the
// out table for changed ones.
export function inspect(n: u32): i32 {
  if (<u64>n > recCap) return E_RECORDS;
  let w: usize = 0;
  for (let k: u32 = 0; k < n; k++) {
    let e = inTab + (<usize>k << 3);
    let off = load<u32>(e);
    let len = load<u32>(e + 4);
    if (<u64>off + <u64>len > inCap) return E_RANGE;
    let st = status + (<usize>k << 3);
    let r = maskCards(inData + off, len, outData + w, <usize>outCap - w);
    if (r == -2) return E_OUT_FULL;
    store<u32>(st, lastHits);
    let ot = outTab + (<usize>k << 3);
    if (r < 0) {
      store<u32>(st + 4, 0);
      store<u64>(ot, 0);
    } else {
      store<u32>(st + 4, FLAG_CHANGED);
      store<u32>(ot, <u32>w);
      store<u32>(ot + 4, <u32>r);
      w += <usize>r;
    }
  }
  return <i32>w;
}

// SHA-256 of each record [0, n) into digests + 32*k. Returns 0 or E_*.
export function sha256Batch(n: u32): i32 {
  if (<u64>n > recCap) return E_RECORDS;
  for (let k: u32 = 0; k < n; k++) {
    let e = inTab + (<usize>k << 3);
    let off = load<u32>(e);
    let len = load<u32>(e + 4);
    if (<u64>off + <u64>len > inCap) return E_RANGE;
    sha256(inData + off, len, digests + (<usize>k << 5));
  }
  return 0;
}
