// What the audit needs about a Kafka records blob without decoding a single record: the
// record count is in each batch header (v2 format, offset 57), the bytes are the blob's
// length, and the batch hash is one SHA-256 over the bytes as they crossed the gateway.

import { createHash, type Hash } from 'node:crypto';

const HEADER = 61; // bytes of a v2 record batch header
const COUNT_AT = 57;
const ATTRIBUTES_AT = 21;
const CONTROL = 0x20;

export interface BatchSummary {
  records: number;
  bytes: number;
  batches: number;
}

/** Walks the batch headers of a records blob; a trailing partial batch (fetch) is ignored. */
export function summarize(records: Uint8Array | null | undefined, into: BatchSummary = { records: 0, bytes: 0, batches: 0 }): BatchSummary {
  if (!records || records.byteLength === 0) return into;
  const view = new DataView(records.buffer, records.byteOffset, records.byteLength);
  let o = 0;
  while (o + HEADER <= records.byteLength) {
    const size = 12 + view.getInt32(o + 8);
    if (size < HEADER || o + size > records.byteLength) break;
    if (view.getInt8(o + 16) === 2 && (view.getInt16(o + ATTRIBUTES_AT) & CONTROL) === 0) into.records += view.getInt32(o + COUNT_AT);
    into.batches++;
    o += size;
  }
  into.bytes += records.byteLength;
  return into;
}

export function hashInto(h: Hash | undefined, records: Uint8Array | null | undefined): Hash {
  const hash = h ?? createHash('sha256');
  if (records && records.byteLength > 0) hash.update(records);
  return hash;
}
