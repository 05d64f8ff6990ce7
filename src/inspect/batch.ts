import { hash } from 'node:crypto';
import type { WasmEngine } from './engine.ts';

/** The result of inspecting one batch of values, the same whether inline or in the pool. */
export interface BatchResult {
  /** value as forwarded, per record (null stays null) */
  values: Array<Uint8Array | null>;
  /** SHA-256 hex of each original value ('' hash input for null) */
  hashes: string[];
  /** SHA-256 hex of the forwarded value where masking changed it */
  maskedHashes: Array<string | null>;
  /** card numbers masked per record */
  hits: number[];
}

const EMPTY = new Uint8Array(0);

/**
 * Inspects values with `engine` (masking applies only where `mask[i]`) and hashes the
 * originals and the masked results. Hashing uses node:crypto: OpenSSL's SHA-256 with
 * CPU SHA extensions beat the WASM implementation in the engine benchmark (see
 * bench/RESULTS.md), so WASM does the scanning and OpenSSL the hashing.
 */
export function inspectValues(engine: WasmEngine, values: ReadonlyArray<Uint8Array | null>, mask: (i: number) => boolean): BatchResult {
  const n = values.length;
  const hashes = new Array<string>(n);
  for (let i = 0; i < n; i++) hashes[i] = hash('sha256', values[i] ?? EMPTY, 'hex');

  const toScan: Array<Uint8Array | null> = [];
  const positions: number[] = [];
  for (let i = 0; i < n; i++) {
    if (mask(i) && values[i]) {
      toScan.push(values[i]!);
      positions.push(i);
    }
  }
  const out = values.slice();
  const maskedHashes = new Array<string | null>(n).fill(null);
  const hits = new Array<number>(n).fill(0);
  if (toScan.length > 0) {
    const r = engine.inspect(toScan);
    for (let k = 0; k < positions.length; k++) {
      const i = positions[k]!;
      hits[i] = r.hits[k]!;
      if (r.changed[k]) {
        out[i] = r.payloads[k]!;
        maskedHashes[i] = hash('sha256', r.payloads[k]!, 'hex');
      }
    }
  }
  return { values: out, hashes, maskedHashes, hits };
}
