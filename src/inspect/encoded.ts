// Inspection of records still in their wire encoding: decode, scan and mask, hash, re-encode
// in one call, on whichever thread runs it (the accept thread for small batches, a pool
// worker otherwise). Handing the pool the encoded bytes instead of the decoded values saves
// the accept thread the decompression, the per-record copies into the task and the
// re-encoding; for compressed batches the task is also several times smaller.

import { hash } from 'node:crypto';
import { BatchFormatError, recordContainer } from '../formats/index.ts';
import type { RecordFormat } from '../operation.ts';
import { FLAG_BLOCKED, FLAG_CHANGED, FLAG_KEY_CHANGED, outputOf, type WasmEngine } from './engine.ts';
import { foldKeyHeaders, planKeyHeaders } from './key-headers.ts';
import type { KeyHeaderRulesets } from './rules.ts';
import type { RegisteredSchema } from '../schemas/source.ts';
import { closeValues, FRAMED_KEY_CHANGED, framedKey, openValues, STOP_VALUE, type SchemaFailure, type SchemaNeeds, type ValueProblemReport, type ValueSpec } from './values.ts';

export interface EncodedTask {
  format: RecordFormat;
  /** one blob per partition (Kafka: a sequence of record batches) */
  parts: Uint8Array[];
  /** the values' ruleset */
  ruleset: number;
  /** rulesets of keys and headers; absent or null: only values are inspected */
  keyHeaders?: KeyHeaderRulesets | null;
  /** the topic's schema-registry values (inspect/values.ts); absent: values are JSON or text */
  values?: ValueSpec | null;
  /** identifies the schema source: ids of another source mean other schemas */
  schemaEpoch?: string;
  /** the topic (the accept thread checks `values.subjects` against it) */
  topic?: string;
  /** schemas the accept thread fetched for this task */
  schemas?: RegisteredSchema[];
  /** ids the accept thread could not get */
  schemaFailures?: SchemaFailure[];
}

export interface EncodedResult {
  /** per part: the re-encoded blob where a record in it changed, else null (forward the original) */
  parts: Array<Uint8Array | null>;
  /** per part: how many records it holds */
  counts: number[];
  /** per record, in order across the parts: key + value bytes (for the size limits) */
  sizes: Uint32Array;
  /** SHA-256 hex of each original value, back to back (64 characters each) */
  hashes: string;
  /** SHA-256 hex of each changed value as forwarded, 64 characters each; 64 spaces where unchanged */
  maskedHashes: string;
  flags: Uint32Array;
  stopRule: Uint32Array;
  hitStart: Uint32Array;
  hitCount: Uint32Array;
  hits: Uint32Array;
  /** values refused by the schema step (stop rule STOP_VALUE): which, and why */
  problems: ValueProblemReport[];
  /** per record, in order across the parts: the schema id its value was decoded with, -1 for none (schema topics only, else empty) */
  schemaIds: number[];
}

export const UNCHANGED_HASH = ' '.repeat(64);
/** packParts: the length of a part that is null (unchanged) */
const NULL_PART = 0xffffffff;

/** Parts back to back in one buffer with their lengths: one copy, then transferred to or from a pool worker. */
export function packParts(parts: ReadonlyArray<Uint8Array | null>): { data: Uint8Array<ArrayBuffer>; lengths: Uint32Array<ArrayBuffer> } {
  const lengths = new Uint32Array(parts.length);
  let total = 0;
  parts.forEach((p, k) => {
    lengths[k] = p === null ? NULL_PART : p.byteLength;
    total += p?.byteLength ?? 0;
  });
  const data = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    if (p === null) continue;
    data.set(p, o);
    o += p.byteLength;
  }
  return { data, lengths };
}

/** The parts of packParts, as views of `data`. */
export function unpackParts(data: Uint8Array, lengths: Uint32Array): Array<Uint8Array | null> {
  const parts: Array<Uint8Array | null> = [];
  let at = 0;
  for (const len of lengths) {
    if (len === NULL_PART) parts.push(null);
    else {
      parts.push(data.subarray(at, at + len));
      at += len;
    }
  }
  return parts;
}
const EMPTY = new Uint8Array(0);

/** `invalid`: the records could not be decoded (the client's fault: corrupt, or a compression bomb). */
export function inspectEncoded(engine: WasmEngine, task: EncodedTask): EncodedResult | { invalid: string } | SchemaNeeds {
  const container = recordContainer(task.format);
  let decoded: unknown[];
  try {
    decoded = task.parts.map((p) => container.open(p));
  } catch (err) {
    if (err instanceof BatchFormatError) return { invalid: err.message };
    throw err;
  }
  const counts: number[] = [];
  const records = decoded.flatMap((d) => {
    const list = container.records(d);
    counts.push(list.length);
    return list;
  });
  const n = records.length;
  const values = new Array<Uint8Array | null>(n);
  const sizes = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const r = records[i]!;
    values[i] = r.value;
    sizes[i] = (r.value?.byteLength ?? 0) + (r.key?.byteLength ?? 0);
  }
  // schema-registry values become JSON views with their own ruleset
  const open = task.values ? openValues(values, task.values, task.ruleset, task.schemaEpoch ?? '', task.schemas, task.schemaFailures, task.values.framing === 'apicurio-header' ? records.map((r) => r.headers) : undefined) : null;
  if (open && 'needSchemas' in open) return open;
  const hashes = new Array<string>(n);
  for (let i = 0; i < n; i++) hashes[i] = hash('sha256', values[i] ?? EMPTY, 'hex');
  const inputs = open ? open.inputs : values;
  const plan = task.keyHeaders ? planKeyHeaders(records, task.ruleset, task.keyHeaders) : null;
  if (plan && open) {
    for (let i = 0; i < n; i++) {
      plan.payloads[i] = inputs[i]!;
      plan.rulesets[i] = open.rulesets[i]!;
    }
  }
  const r = plan ? engine.inspect(plan.payloads, plan.rulesets) : engine.inspect(inputs, open ? open.rulesets : task.ruleset);
  const valueOutput = (i: number): Uint8Array | null => ((r.flags[i]! & FLAG_CHANGED) !== 0 && inputs[i] !== null ? outputOf(r, i, inputs[i]!) : null);
  const masked = new Array<string>(n);
  // without schema values, the engine's output is the value; keys and headers: rewritten in
  // the records, their facts merged into each record's (read before any further engine call)
  if (!open) for (let i = 0; i < n; i++) records[i]!.value = valueOutput(i) ?? values[i]!;
  const keys = open && plan ? records.map((rec) => rec.key) : null;
  let facts = plan ? foldKeyHeaders(records, plan, r, (j) => outputOf(r, j, plan.payloads[j]!)) : r;
  let problems: ValueProblemReport[] = [];
  if (open) {
    const closed = closeValues(engine, open, facts, valueOutput, task.values!);
    facts = closed.facts;
    problems = closed.problems;
    for (let i = 0; i < n; i++) if (closed.outputs[i]) records[i]!.value = closed.outputs[i]!;
    if (keys) {
      for (let i = 0; i < n; i++) {
        if ((facts.flags[i]! & FLAG_KEY_CHANGED) === 0 || (facts.flags[i]! & FLAG_BLOCKED) !== 0 || !framedKey(keys[i]!, records[i]!.headers, task.values!.framing)) continue;
        facts.flags[i] = facts.flags[i]! | FLAG_BLOCKED;
        facts.stopRule[i] = STOP_VALUE;
        problems.push({ record: i, rule: 'schema.key', message: `record ${i}: ${FRAMED_KEY_CHANGED}` });
      }
    }
  }
  for (let i = 0; i < n; i++) masked[i] = records[i]!.value !== values[i] && records[i]!.value !== null ? hash('sha256', records[i]!.value!, 'hex') : UNCHANGED_HASH;
  let blocked = false;
  for (let i = 0; i < n; i++) if ((facts.flags[i]! & FLAG_BLOCKED) !== 0) blocked = true;
  // a blocked record refuses the whole operation: nothing to re-encode
  let at = 0;
  const parts = decoded.map((d, k) => {
    const from = at;
    at += counts[k]!;
    if (blocked) return null;
    // a part that holds more than records (a partial batch at the end of a Fetch): never forwarded as it was once anything changed
    let changed = container.partial(d);
    for (let i = from; i < at; i++) if ((facts.flags[i]! & FLAG_CHANGED) !== 0) changed = true;
    return changed ? container.rebuild(d, records, from) : null;
  });
  return {
    parts, counts, sizes,
    hashes: hashes.join(''),
    maskedHashes: masked.join(''),
    flags: facts.flags, stopRule: facts.stopRule, hitStart: facts.hitStart, hitCount: facts.hitCount, hits: facts.hits,
    problems,
    schemaIds: open?.schemaIds ?? [],
  };
}
