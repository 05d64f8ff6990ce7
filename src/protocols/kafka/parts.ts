// Record data of a Produce or Fetch request, partition by partition, without decoding it:
// counts and bytes from the batch headers, hashes of the bytes as they cross, the encoded
// parts handed to the inspect control and put back once rebuilt.

import type { EncodedRecords } from '../../operation.ts';
import { decodedSizeHint } from '../../formats/kafka-batch.ts';
import { hashInto, summarize } from './batches.ts';
import type { Struct } from './codec.ts';
import type { SessionPartitions } from './fetch-sessions.ts';

const NO_RECORDS = new Uint8Array(0);

/** The records of some partitions, still encoded, for the inspect control. */
export function encodedParts(parts: Struct[], indexField: 'Index' | 'PartitionIndex'): EncodedRecords {
  let decodedBytes = 0;
  for (const p of parts) decodedBytes += decodedSizeHint(p.Records as Uint8Array | null);
  return {
    format: 'kafka',
    parts: parts.map((p) => (p.Records as Uint8Array | null) ?? NO_RECORDS),
    partitions: parts.map((p) => p[indexField] as number),
    decodedBytes,
  };
}

/** A Fetch request's topic entry (or forgotten topic) as the session's partitions. */
export function sessionPartitions(t: Struct): SessionPartitions {
  const parts = (t.Partitions as Array<Struct | number> | undefined) ?? [];
  return { topic: t.Topic as string, partitions: parts.map((p) => (typeof p === 'number' ? p : (p.Partition as number))) };
}

export function hasRecords(tr: Struct): boolean {
  return (tr.Partitions as Struct[]).some((p) => ((p.Records as Uint8Array | null)?.byteLength ?? 0) > 0);
}

export function hashParts(parts: Struct[]): string {
  let hash;
  for (const p of parts) hash = hashInto(hash, p.Records as Uint8Array | null);
  return hash ? hash.digest('hex') : '';
}

/** Records of one topic in a Fetch response, counted and hashed without decoding them. */
export function fetchedSummary(tr: Struct): { records: number; bytes: number; hash: string } {
  const parts = tr.Partitions as Struct[];
  return { ...countParts(parts), hash: hashParts(parts) };
}

/** Records and bytes of some partitions' records, from the batch headers. */
export function countParts(parts: Struct[]): { records: number; bytes: number } {
  const sum = { records: 0, bytes: 0, batches: 0 };
  for (const p of parts) summarize(p.Records as Uint8Array | null, sum);
  return { records: sum.records, bytes: sum.bytes };
}

/** Puts the inspect control's rebuilt batches into the partitions they came from; true when any changed. */
export function rebuilt(parts: Struct[], encoded: EncodedRecords): boolean {
  let any = false;
  encoded.changed?.forEach((changed, k) => {
    if (!changed) return;
    parts[k]!.Records = encoded.parts[k]!;
    any = true;
  });
  return any;
}
