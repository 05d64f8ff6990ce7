// Kafka RecordBatch v2 decoding and re-encoding for record-level inspection. Only the
// parts inspection may change (key, value, headers) are rebuilt; everything else is
// copied byte for byte (batch header, per-record attributes, timestamp and offset deltas),
// so producer id/epoch, base sequence, record count, timestamps, transactional and control
// flags survive exactly and idempotent/transactional producers keep working.
// Compression: gzip and zstd via node:zlib, lz4 (frame) and snappy via @platformatic/wasm-utils,
// which also computes the CRC32C.

import { gunzipSync, gzipSync, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { crc32c, lz4Compress, lz4Decompress, snappyCompress, snappyDecompress } from '@platformatic/wasm-utils';
import type { StreamRecord } from '../operation.ts';

/**
 * Bytes that are not a valid record batch (truncated, CRC, codec, compression bomb). The Kafka
 * codec's own BatchFormatError extends it, so one check covers a frame and its records.
 */
export class BatchFormatError extends Error {
  override name = 'BatchFormatError';
}

export const HEADER_BYTES = 61;
const MAGIC_AT = 16;
const CRC_AT = 17;
const ATTRIBUTES_AT = 21;
const COUNT_AT = 57;
const FIRST_TIMESTAMP_AT = 27;
const CONTROL = 0x20;
const COMPRESSION_MASK = 0x07;
export const CODECS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;

/** snappy-java's stream header (magic + version 1 + compatible 1): Java clients frame snappy with it */
const XERIAL_MAGIC = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00]);
const XERIAL_HEADER = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1]);
const XERIAL_BLOCK = 32 * 1024; // snappy-java's default block size

interface RawRecord {
  /** attributes, timestampDelta, offsetDelta exactly as received */
  head: Uint8Array;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: Array<[string, Uint8Array]>;
  /** header count + headers exactly as received */
  headersRaw: Uint8Array;
  /** offset and timestamp relative to the batch's base offset / first timestamp (Fetch: where the broker stored it) */
  offsetDelta: number;
  timestampDelta: number;
}

export interface DecodedBatch {
  /** the batch as received */
  bytes: Uint8Array;
  /** null: passed through untouched (control batch, old magic) */
  records: RawRecord[] | null;
  compression: number;
  /** snappy input framed by snappy-java (xerial); re-encoded the same way */
  xerial: boolean;
}

export interface DecodedRecords {
  batches: DecodedBatch[];
  /** a partial batch at the end (Fetch responses); dropped when re-encoding */
  truncated: number;
}

const utf8 = new TextDecoder();
const EMPTY = new Uint8Array(0);

class VarReader {
  readonly buf: Uint8Array;
  offset = 0;
  constructor(buf: Uint8Array) {
    this.buf = buf;
  }
  /** zigzag varint (Kafka record fields), up to 64 bits; returned as a number (deltas and lengths fit) */
  varlong(): number {
    // up to 7 bytes (49 bits) in plain arithmetic: every real timestamp delta; BigInt beyond
    const start = this.offset;
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      if (this.offset >= this.buf.byteLength) throw new BatchFormatError('truncated record');
      const b = this.buf[this.offset++]!;
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result % 2 === 0 ? result / 2 : -(result + 1) / 2;
      scale *= 128;
    }
    this.offset = start;
    return this.#bigVarlong();
  }
  #bigVarlong(): number {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.offset >= this.buf.byteLength) throw new BatchFormatError('truncated record');
      const b = this.buf[this.offset++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) break;
      shift += 7n;
      if (shift > 63n) throw new BatchFormatError('varint is too long');
    }
    return Number((result >> 1n) ^ -(result & 1n));
  }
  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.offset >= this.buf.byteLength) throw new BatchFormatError('truncated record');
      const b = this.buf[this.offset++]!;
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) break;
      shift += 7;
      if (shift > 28) throw new BatchFormatError('varint is too long');
    }
    return (result >>> 1) ^ -(result & 1);
  }
  bytes(): Uint8Array | null {
    const n = this.varint();
    if (n < 0) return null;
    if (this.offset + n > this.buf.byteLength) throw new BatchFormatError('truncated record');
    const s = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return s;
  }
}

/** Splits a records blob into batches and decodes the records of each data batch. */
export function decodeRecords(blob: Uint8Array | null | undefined): DecodedRecords {
  const out: DecodedRecords = { batches: [], truncated: 0 };
  if (!blob || blob.byteLength === 0) return out;
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  let o = 0;
  while (o < blob.byteLength) {
    if (o + HEADER_BYTES > blob.byteLength) break;
    const size = 12 + view.getInt32(o + 8);
    if (size < HEADER_BYTES - 12 || o + size > blob.byteLength) break;
    out.batches.push(decodeBatch(blob.subarray(o, o + size)));
    o += size;
  }
  out.truncated = blob.byteLength - o;
  return out;
}

function decodeBatch(bytes: Uint8Array): DecodedBatch {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getInt8(MAGIC_AT);
  const attributes = magic === 2 ? view.getInt16(ATTRIBUTES_AT) : 0;
  const compression = attributes & COMPRESSION_MASK;
  if (magic !== 2 || (attributes & CONTROL) !== 0) return { bytes, records: null, compression, xerial: false };
  if (compression >= CODECS.length) throw new BatchFormatError(`unknown compression ${compression}`);
  if (crc32c(bytes.subarray(ATTRIBUTES_AT)) !== view.getUint32(CRC_AT)) throw new BatchFormatError('record batch CRC mismatch');
  const payload = bytes.subarray(HEADER_BYTES);
  const xerial = compression === 2 && startsWith(payload, XERIAL_MAGIC);
  const data = decompress(compression, payload, xerial);
  const count = view.getInt32(COUNT_AT);
  const r = new VarReader(data);
  const records: RawRecord[] = [];
  for (let i = 0; i < count; i++) {
    const len = r.varint();
    const start = r.offset;
    const end = start + len;
    if (len < 0 || end > data.byteLength) throw new BatchFormatError('truncated record');
    r.offset += 1; // attributes
    const timestampDelta = r.varlong();
    const offsetDelta = r.varint();
    const head = data.subarray(start, r.offset);
    const key = r.bytes();
    const value = r.bytes();
    const hStart = r.offset;
    const n = r.varint();
    const headers: Array<[string, Uint8Array]> = [];
    for (let k = 0; k < n; k++) {
      const hk = r.bytes();
      const hv = r.bytes();
      headers.push([hk ? utf8.decode(hk) : '', hv ?? EMPTY]);
    }
    if (r.offset !== end) throw new BatchFormatError('record length mismatch');
    records.push({ head, key, value, headers, headersRaw: data.subarray(hStart, end), offsetDelta, timestampDelta });
  }
  return { bytes, records, compression, xerial };
}

function startsWith(b: Uint8Array, prefix: Uint8Array): boolean {
  if (b.byteLength < prefix.byteLength) return false;
  for (let i = 0; i < prefix.byteLength; i++) if (b[i] !== prefix[i]) return false;
  return true;
}

/**
 * Hard bound on one batch's decompressed size. A few kilobytes of gzip or lz4 can expand
 * to gigabytes (a compression bomb); every codec is checked against this before or while
 * it inflates, never after. Far above what a real batch holds (producers cap batches at
 * around a megabyte compressed).
 */
export const MAX_DECOMPRESSED_BATCH_BYTES = 64 * 1024 * 1024;

function tooLarge(codec: string): BatchFormatError {
  return new BatchFormatError(`the ${codec} record batch decompresses to more than ${MAX_DECOMPRESSED_BATCH_BYTES} bytes`);
}

function decompress(codec: number, payload: Uint8Array, xerial: boolean): Uint8Array {
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const bounded = { maxOutputLength: MAX_DECOMPRESSED_BATCH_BYTES };
  try {
    switch (codec) {
      case 0:
        return payload;
      case 1:
        return gunzipSync(buf, bounded);
      case 2: {
        if (!xerial) {
          if (snappyLength(buf, 0) > MAX_DECOMPRESSED_BATCH_BYTES) throw tooLarge('snappy');
          return snappyDecompress(buf);
        }
        // snappy-java stream: 16-byte header, then [int32 length][raw snappy block] ...
        const parts: Buffer[] = [];
        let total = 0;
        let o = XERIAL_HEADER.byteLength;
        while (o < buf.byteLength) {
          if (o + 4 > buf.byteLength) throw new BatchFormatError('truncated snappy block');
          const n = buf.readUInt32BE(o);
          o += 4;
          if (o + n > buf.byteLength) throw new BatchFormatError('truncated snappy block');
          total += snappyLength(buf, o);
          if (total > MAX_DECOMPRESSED_BATCH_BYTES) throw tooLarge('snappy');
          parts.push(snappyDecompress(buf.subarray(o, o + n)));
          o += n;
        }
        return Buffer.concat(parts);
      }
      case 3:
        if (lz4FrameBound(buf) > MAX_DECOMPRESSED_BATCH_BYTES) throw tooLarge('lz4');
        return lz4Decompress(buf);
      case 4:
        return zstdDecompressSync(buf, bounded);
      default:
        throw new BatchFormatError(`unknown compression ${codec}`);
    }
  } catch (err) {
    if (err instanceof BatchFormatError) throw err;
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(CODECS[codec] ?? String(codec));
    // a codec's own complaint about corrupt input is the client's fault, not ours
    throw new BatchFormatError(`corrupt ${CODECS[codec] ?? codec} record batch: ${(err as Error).message}`);
  }
}

/** The uncompressed length a raw snappy block declares (its varint preamble). */
function snappyLength(buf: Buffer, at: number): number {
  let length = 0;
  for (let shift = 0, o = at; shift <= 28; shift += 7, o++) {
    if (o >= buf.byteLength) throw new BatchFormatError('truncated snappy block');
    const b = buf[o]!;
    length += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return length;
  }
  throw new BatchFormatError('corrupt snappy length');
}

const LZ4_MAGIC = 0x184d2204;
const LZ4_BLOCK_MAX = [0, 0, 0, 0, 64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024];

/**
 * The most an lz4 frame sequence can inflate to, from its headers alone: each block holds at
 * most the frame's block maximum (or the declared content size, when smaller).
 */
function lz4FrameBound(buf: Buffer): number {
  let o = 0;
  let bound = 0;
  while (o < buf.byteLength) {
    if (o + 7 > buf.byteLength || buf.readUInt32LE(o) !== LZ4_MAGIC) throw new BatchFormatError('corrupt lz4 frame header');
    const flg = buf[o + 4]!;
    const blockMax = LZ4_BLOCK_MAX[(buf[o + 5]! >> 4) & 7]!;
    if (blockMax === 0) throw new BatchFormatError('corrupt lz4 block size');
    let declared = Infinity;
    o += 6;
    if (flg & 0x08) {
      if (o + 8 > buf.byteLength) throw new BatchFormatError('truncated lz4 frame header');
      declared = Number(buf.readBigUInt64LE(o));
      o += 8;
    }
    if (flg & 0x01) o += 4; // dictionary id
    o += 1; // header checksum
    let blocks = 0;
    for (;;) {
      if (o + 4 > buf.byteLength) throw new BatchFormatError('truncated lz4 frame');
      const size = buf.readUInt32LE(o) & 0x7fffffff;
      o += 4;
      if (size === 0) break; // end mark
      blocks++;
      o += size + (flg & 0x10 ? 4 : 0);
    }
    if (flg & 0x04) o += 4; // content checksum
    bound += Math.min(declared, blocks * blockMax);
  }
  return bound;
}

/**
 * About how many bytes a records blob decodes to, from its batch headers alone (what the
 * inspector uses to choose between the accept thread and the pool): exact for uncompressed
 * batches, the frame bound for lz4, the trailer for gzip, four times the wire size otherwise.
 */
export function decodedSizeHint(blob: Uint8Array | null | undefined): number {
  if (!blob) return 0;
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  let total = 0;
  let o = 0;
  while (o + HEADER_BYTES <= blob.byteLength) {
    const size = 12 + view.getInt32(o + 8);
    if (size < HEADER_BYTES || o + size > blob.byteLength) break;
    const codec = view.getInt8(o + MAGIC_AT) === 2 ? view.getInt16(o + ATTRIBUTES_AT) & COMPRESSION_MASK : 0;
    let hint = size * 4;
    if (codec === 0) hint = size;
    else if (codec === 3) {
      try {
        hint = lz4FrameBound(Buffer.from(blob.buffer, blob.byteOffset + o + HEADER_BYTES, size - HEADER_BYTES));
      } catch {
        hint = size; // corrupt: decoding fails fast wherever it runs
      }
    } else if (codec === 1 && size - HEADER_BYTES >= 18) hint = view.getUint32(o + size - 4, true); // gzip ISIZE trailer
    total += hint;
    o += size;
  }
  return total + (blob.byteLength - o);
}

function compress(codec: number, data: Buffer, xerial: boolean): Uint8Array {
  switch (codec) {
    case 0:
      return data;
    case 1:
      return gzipSync(data);
    case 2: {
      if (!xerial) return snappyCompress(data);
      const parts: Uint8Array[] = [XERIAL_HEADER];
      for (let o = 0; o < data.byteLength; o += XERIAL_BLOCK) {
        const block = snappyCompress(data.subarray(o, Math.min(o + XERIAL_BLOCK, data.byteLength)));
        const len = Buffer.allocUnsafe(4);
        len.writeUInt32BE(block.byteLength);
        parts.push(len, block);
      }
      return Buffer.concat(parts);
    }
    case 3:
      return lz4Compress(data);
    case 4:
      return zstdCompressSync(data);
    default:
      throw new BatchFormatError(`unknown compression ${codec}`);
  }
}

/**
 * The records of every data batch, in order, as protocol-neutral records (views, no copies).
 * `stored`: the batches come from the broker (Fetch), so base offset + delta is where each
 * record is stored (StreamRecord.offset, timestamp); a produce request's offsets are not known yet.
 */
export function streamRecords(decoded: DecodedRecords, partition: number, into: StreamRecord[] = [], stored = false): StreamRecord[] {
  for (const b of decoded.batches) {
    if (!b.records) continue;
    if (!stored) {
      for (const r of b.records) into.push({ key: r.key, value: r.value, headers: r.headers, partition });
      continue;
    }
    const view = new DataView(b.bytes.buffer, b.bytes.byteOffset, b.bytes.byteLength);
    const baseOffset = view.getBigInt64(0);
    const firstTimestamp = Number(view.getBigInt64(FIRST_TIMESTAMP_AT));
    for (const r of b.records) {
      into.push({ key: r.key, value: r.value, headers: r.headers, partition, offset: String(baseOffset + BigInt(r.offsetDelta)), timestamp: firstTimestamp + r.timestampDelta });
    }
  }
  return into;
}

/**
 * Re-encodes the blob with the values of `records` (in the order streamRecords gave them).
 * Unchanged batches keep their bytes; a changed one is rebuilt, recompressed with its own
 * codec and gets a new CRC. A truncated tail is dropped (clients fetch it again).
 * Returns the input blob itself when nothing changed.
 */
export function encodeRecords(decoded: DecodedRecords, records: readonly StreamRecord[], at = 0): { blob: Uint8Array; changed: boolean; used: number } {
  const parts: Uint8Array[] = [];
  let changed = decoded.truncated > 0;
  let i = at;
  for (const b of decoded.batches) {
    if (!b.records) {
      parts.push(b.bytes);
      continue;
    }
    const mine = records.slice(i, i + b.records.length);
    i += b.records.length;
    const dirty = mine.some((s, k) => !same(s.value, b.records![k]!.value) || !same(s.key, b.records![k]!.key) || s.headers !== b.records![k]!.headers);
    if (!dirty) {
      parts.push(b.bytes);
      continue;
    }
    changed = true;
    parts.push(encodeBatch(b, mine));
  }
  if (!changed) return { blob: joined(decoded), changed: false, used: i - at };
  return { blob: Buffer.concat(parts), changed: true, used: i - at };
}

/** the pool hands back every value as a new view, so unchanged values are compared by content */
function same(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === b) return true;
  if (a === null || b === null || a.byteLength !== b.byteLength) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

function joined(decoded: DecodedRecords): Uint8Array {
  const first = decoded.batches[0];
  if (!first) return EMPTY;
  if (decoded.batches.length === 1) return first.bytes;
  const last = decoded.batches[decoded.batches.length - 1]!;
  // consecutive views of one blob
  return new Uint8Array(first.bytes.buffer, first.bytes.byteOffset, last.bytes.byteOffset + last.bytes.byteLength - first.bytes.byteOffset);
}

/** Bytes of a zigzag varint. */
function varintSize(v: number): number {
  let z = ((v << 1) ^ (v >> 31)) >>> 0;
  let n = 1;
  while (z >= 0x80) {
    z >>>= 7;
    n++;
  }
  return n;
}

/** Writes a zigzag varint at `o`; returns the offset after it. */
function writeVarint(out: Uint8Array, o: number, v: number): number {
  let z = ((v << 1) ^ (v >> 31)) >>> 0;
  while (z >= 0x80) {
    out[o++] = (z & 0x7f) | 0x80;
    z >>>= 7;
  }
  out[o++] = z;
  return o;
}

/** Size of a length-prefixed (nullable) byte field. */
function bytesSize(v: Uint8Array | null): number {
  return v === null ? 1 : varintSize(v.byteLength) + v.byteLength;
}

function writeBytes(out: Uint8Array, o: number, v: Uint8Array | null): number {
  if (v === null) return writeVarint(out, o, -1);
  o = writeVarint(out, o, v.byteLength);
  out.set(v, o);
  return o + v.byteLength;
}

/**
 * A changed batch's records, uncompressed, in one buffer: sized first, then written, so a
 * batch of hundreds of records costs one allocation instead of several per record (the
 * masked path's GC pressure).
 */
function recordsBody(b: DecodedBatch, records: readonly StreamRecord[]): Buffer {
  const sizes = new Array<number>(records.length);
  const headerKeys = new Map<number, Buffer[]>();
  let total = 0;
  for (let k = 0; k < records.length; k++) {
    const raw = b.records![k]!;
    const s = records[k]!;
    let size = raw.head.byteLength + bytesSize(s.key) + bytesSize(s.value);
    if (s.headers === raw.headers) size += raw.headersRaw.byteLength;
    else {
      const keys = s.headers.map(([hk]) => Buffer.from(hk, 'utf8'));
      headerKeys.set(k, keys);
      size += varintSize(s.headers.length);
      s.headers.forEach(([, hv], n) => (size += bytesSize(keys[n]!) + bytesSize(hv)));
    }
    sizes[k] = size;
    total += varintSize(size) + size;
  }
  const out = Buffer.allocUnsafe(total);
  let o = 0;
  for (let k = 0; k < records.length; k++) {
    const raw = b.records![k]!;
    const s = records[k]!;
    o = writeVarint(out, o, sizes[k]!);
    out.set(raw.head, o);
    o += raw.head.byteLength;
    o = writeBytes(out, o, s.key);
    o = writeBytes(out, o, s.value);
    const keys = headerKeys.get(k);
    if (!keys) {
      out.set(raw.headersRaw, o);
      o += raw.headersRaw.byteLength;
    } else {
      o = writeVarint(out, o, s.headers.length);
      s.headers.forEach(([, hv], n) => {
        o = writeBytes(out, o, keys[n]!);
        o = writeBytes(out, o, hv);
      });
    }
  }
  return out;
}

function encodeBatch(b: DecodedBatch, records: readonly StreamRecord[]): Uint8Array {
  const payload = compress(b.compression, recordsBody(b, records), b.xerial);
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.byteLength);
  out.set(b.bytes.subarray(0, HEADER_BYTES), 0);
  out.set(payload, HEADER_BYTES);
  out.writeInt32BE(out.byteLength - 12, 8);
  out.writeUInt32BE(crc32c(out.subarray(ATTRIBUTES_AT)), CRC_AT);
  return out;
}
