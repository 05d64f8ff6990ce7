// Kinesis records <-> protocol-neutral records, so that inspection sees (and masks) the whole
// record: Data is the value, PartitionKey the key, and a PutRecord(s) entry's
// ExplicitHashKey a header named "ExplicitHashKey" (rules can target it as
// `headers.ExplicitHashKey`). What is forwarded or delivered is built back from the
// inspected record, never from the client's fields.
import { GatewayError, type StreamRecord } from '../../operation.ts';

type Body = Record<string, unknown>;

/** The header an entry's ExplicitHashKey travels in through the controls. */
export const EXPLICIT_HASH_KEY = 'ExplicitHashKey';
/** Kinesis: a partition key is 1 to 256 characters. */
const MAX_PARTITION_KEY = 256;
const utf8 = new TextDecoder();

/** A validated PutRecord(s) entry as a record. */
export function entryRecord(e: Body): StreamRecord {
  return {
    key: Buffer.from(String(e.PartitionKey)),
    value: Buffer.from(String(e.Data), 'base64'),
    headers: typeof e.ExplicitHashKey === 'string' ? [[EXPLICIT_HASH_KEY, Buffer.from(e.ExplicitHashKey)]] : [],
  };
}

/**
 * The entry as forwarded after inspection: Data and PartitionKey from the record. An
 * ExplicitHashKey that inspection changed is left out (a masked one is no decimal number):
 * Kinesis then places the record by the hash of its (masked) partition key.
 */
export function forwardedEntry(e: Body, r: StreamRecord): Body {
  const { ExplicitHashKey: hashKey, ...rest } = e;
  const out: Body = { ...rest, Data: Buffer.from(r.value ?? new Uint8Array(0)).toString('base64'), PartitionKey: partitionKey(r.key, String(e.PartitionKey)) };
  const inspected = r.headers.find(([name]) => name === EXPLICIT_HASH_KEY)?.[1];
  if (typeof hashKey === 'string' && inspected !== undefined && utf8.decode(inspected) === hashKey) out.ExplicitHashKey = hashKey;
  return out;
}

/** A GetRecords record as delivered: Data and PartitionKey from the inspected record. */
export function deliveredRecord(r: Body, s: StreamRecord | undefined): Body {
  const out: Body = { ...r, Data: Buffer.from(s?.value ?? new Uint8Array(0)).toString('base64') };
  if (s?.key) out.PartitionKey = utf8.decode(s.key);
  return out;
}

/** The inspected key as a valid partition key: the client's own when unchanged, else cut to 256 characters (whole code points); one inspection emptied refuses the write. */
function partitionKey(key: Uint8Array | null, original: string): string {
  if (key !== null && Buffer.from(original).equals(key)) return original;
  const text = key === null ? '' : utf8.decode(key);
  if (text.length === 0) throw new GatewayError('blocked', 'a partition key is empty after inspection (a rule removed all of it); the records were not forwarded');
  if (text.length <= MAX_PARTITION_KEY) return text;
  let cut = '';
  for (const ch of text) {
    if (cut.length + ch.length > MAX_PARTITION_KEY) break;
    cut += ch;
  }
  return cut;
}
