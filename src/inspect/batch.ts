import { hash } from 'node:crypto';
import { FLAG_CHANGED, outputOf, type WasmEngine } from './engine.ts';

/** The result of inspecting one batch of values, the same whether inline or in the pool. */
export interface BatchResult {
  /** value as forwarded, per record (null stays null) */
  values: Array<Uint8Array | null>;
  /** SHA-256 hex of each original value ('' hash input for null) */
  hashes: string[];
  /** SHA-256 hex of the forwarded value where an action changed it */
  maskedHashes: Array<string | null>;
  /** per record: engine FLAG_* bits */
  flags: Uint32Array;
  /** per record: the rule that blocked it */
  stopRule: Uint32Array;
  /** per record: [first, count) into hits */
  hitStart: Uint32Array;
  hitCount: Uint32Array;
  /** rule index per applied action */
  hits: Uint32Array;
}

const EMPTY = new Uint8Array(0);

/**
 * Inspects values with `engine` under the given ruleset(s) and hashes the originals and
 * the rewritten results. Hashing uses node:crypto: OpenSSL's SHA-256 with CPU SHA
 * extensions beat the WASM implementation in the engine benchmark (see bench/RESULTS.md),
 * so WASM does the scanning and OpenSSL the hashing.
 */
export function inspectValues(engine: WasmEngine, values: ReadonlyArray<Uint8Array | null>, rulesets: number | ArrayLike<number>): BatchResult {
  const n = values.length;
  const hashes = new Array<string>(n);
  for (let i = 0; i < n; i++) hashes[i] = hash('sha256', values[i] ?? EMPTY, 'hex');
  const r = engine.inspect(values, rulesets);
  const out = new Array<Uint8Array | null>(n);
  const maskedHashes = new Array<string | null>(n);
  for (let i = 0; i < n; i++) {
    const v = values[i] ?? null;
    if ((r.flags[i]! & FLAG_CHANGED) !== 0 && v !== null) {
      const o = outputOf(r, i, v)!;
      out[i] = o;
      maskedHashes[i] = hash('sha256', o, 'hex');
    } else {
      out[i] = v;
      maskedHashes[i] = null;
    }
  }
  return { values: out, hashes, maskedHashes, flags: r.flags, stopRule: r.stopRule, hitStart: r.hitStart, hitCount: r.hitCount, hits: r.hits };
}
