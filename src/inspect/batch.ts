import { hash } from 'node:crypto';
import { FLAG_CHANGED, outputOf, type WasmEngine } from './engine.ts';
import type { RegisteredSchema } from '../schemas/source.ts';
import { closeValues, openValues, type SchemaFailure, type SchemaNeeds, type ValueProblemReport, type ValueSpec } from './values.ts';

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

/** Values (and the key and header payloads after them) of a topic with schema-registry values. */
export interface SchemaValuesTask {
  /** the records' values first (`count` of them), then any key and header payloads */
  payloads: Array<Uint8Array | null>;
  count: number;
  /** per payload: its ruleset (the values' is their plain ruleset; views get spec.viewRuleset) */
  rulesets: Uint32Array;
  spec: ValueSpec;
  /** the topic (the accept thread checks `spec.subjects` against it) */
  topic?: string;
  /** per value, its record's headers (for the apicurio-header framing) */
  headers?: Array<Array<[string, Uint8Array]>>;
  schemaEpoch: string;
  schemas?: RegisteredSchema[];
  schemaFailures?: SchemaFailure[];
}

/**
 * inspectValues for schema-registry values: framed values are decoded into views for the
 * engine and written back with their schema (inspect/values.ts). Every payload of the result
 * is a copy (the engine runs twice when tag rules apply).
 */
export function inspectSchemaValues(engine: WasmEngine, task: SchemaValuesTask): (BatchResult & { problems: ValueProblemReport[]; schemaIds: number[] }) | SchemaNeeds {
  const n = task.count;
  const values = task.payloads.slice(0, n);
  const open = openValues(values, task.spec, task.rulesets[0] ?? 0, task.schemaEpoch, task.schemas, task.schemaFailures, task.headers);
  if ('needSchemas' in open) return open;
  const payloads = task.payloads.slice();
  const rulesets = task.rulesets.slice();
  for (let i = 0; i < n; i++) {
    payloads[i] = open.inputs[i]!;
    rulesets[i] = open.rulesets[i]!;
  }
  const hashes = new Array<string>(payloads.length);
  for (let i = 0; i < payloads.length; i++) hashes[i] = hash('sha256', task.payloads[i] ?? EMPTY, 'hex');
  const r = engine.inspect(payloads, rulesets);
  const out = new Array<Uint8Array | null>(payloads.length);
  // keys and headers: their engine output, copied before the engine runs again
  for (let j = n; j < payloads.length; j++) out[j] = (r.flags[j]! & FLAG_CHANGED) !== 0 && payloads[j] !== null ? outputOf(r, j, payloads[j]!)!.slice() : task.payloads[j] ?? null;
  const extra = { flags: r.flags.slice(n), stopRule: r.stopRule.slice(n), hitStart: r.hitStart.slice(n), hitCount: r.hitCount.slice(n) };
  const allHits = r.hits.slice();
  const closed = closeValues(engine, open, r, (i) => ((r.flags[i]! & FLAG_CHANGED) !== 0 && payloads[i] !== null ? outputOf(r, i, payloads[i]!) : null), task.spec);
  const maskedHashes = new Array<string | null>(payloads.length).fill(null);
  for (let i = 0; i < n; i++) {
    out[i] = closed.outputs[i] ?? values[i] ?? null;
    if (closed.outputs[i]) maskedHashes[i] = hash('sha256', closed.outputs[i]!, 'hex');
  }
  for (let j = n; j < payloads.length; j++) if (out[j] !== task.payloads[j]) maskedHashes[j] = hash('sha256', out[j]!, 'hex');
  // the facts: the values' (closed) followed by the other payloads' (from the first call)
  const total = payloads.length;
  const flags = new Uint32Array(total);
  const stopRule = new Uint32Array(total);
  const hitStart = new Uint32Array(total);
  const hitCount = new Uint32Array(total);
  flags.set(closed.facts.flags);
  stopRule.set(closed.facts.stopRule);
  flags.set(extra.flags, n);
  stopRule.set(extra.stopRule, n);
  const hits: number[] = Array.from(closed.facts.hits.subarray(0, n > 0 ? closed.facts.hitStart[n - 1]! + closed.facts.hitCount[n - 1]! : 0));
  hitStart.set(closed.facts.hitStart);
  hitCount.set(closed.facts.hitCount);
  for (let j = 0; j < total - n; j++) {
    hitStart[n + j] = hits.length;
    hitCount[n + j] = extra.hitCount[j]!;
    for (let k = extra.hitStart[j]!; k < extra.hitStart[j]! + extra.hitCount[j]!; k++) hits.push(allHits[k]!);
  }
  return { values: out, hashes, maskedHashes, flags, stopRule, hitStart, hitCount, hits: Uint32Array.from(hits), problems: closed.problems, schemaIds: open.schemaIds };
}
