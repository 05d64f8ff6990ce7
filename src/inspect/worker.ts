import { hash } from 'node:crypto';
import { Piscina, workerData } from 'piscina';
import type { RecordFormat } from '../operation.ts';
import { inspectEncoded, packParts, unpackParts, type EncodedResult, type EncodedTask } from './encoded.ts';
import type { SchemaNeeds } from './values.ts';
import { inspectSchemaValues, type SchemaValuesTask } from './batch.ts';
import { FLAG_CHANGED, WasmEngine } from './engine.ts';
import type { KeyHeaderRulesets } from './rules.ts';
import { SharedAllowance } from '../protect/envelope.ts';
import { Keyring } from '../protect/keyring.ts';
import { Protector } from '../protect/protector.ts';
import { NeedSubjectKeys, SubjectIds, SubjectKeyCache, type SubjectKeyEntry, type SubjectKeyNeed } from '../protect/subjects.ts';
import type { WorkerProtection } from './protection.ts';

/**
 * Piscina worker: one WASM instance per thread, loaded once with the compiled rules that
 * arrive as workerData (a SharedArrayBuffer: every worker reads the same bytes). A task
 * is a whole packed batch (possibly the coalesced records of many requests); results
 * travel back as transferred buffers, not per-record messages.
 */
export interface PoolTask {
  /** the rules version the host compiled; a worker with other rules refuses the task */
  version: string;
  /** all values back to back */
  data: Uint8Array;
  /** per record: [offset, length] in data; length 0xffffffff means null */
  index: Uint32Array;
  /** per record: compiled ruleset */
  rulesets: Uint32Array;
  /** data subjects' keys the accept thread fetched for this task (a first run asked for them) */
  subjectKeys?: SubjectKeyEntry[];
}

export interface PoolResult {
  /** every value as forwarded, back to back */
  data: Uint8Array;
  /** per record: [offset, length] in data; length 0xffffffff means null */
  index: Uint32Array;
  hashes: string[];
  maskedHashes: Array<string | null>;
  flags: Uint32Array;
  stopRule: Uint32Array;
  hitStart: Uint32Array;
  hitCount: Uint32Array;
  hits: Uint32Array;
}

/** Records in their wire encoding, inspected, hashed and re-encoded in one go (inspect/encoded.ts). */
export interface EncodedPoolTask {
  kind: 'encoded';
  version: string;
  format: RecordFormat;
  /** the parts, packed (encoded.ts packParts) */
  data: Uint8Array;
  lengths: Uint32Array;
  ruleset: number;
  keyHeaders: KeyHeaderRulesets | null;
  /** schema-registry values: see EncodedTask */
  values: EncodedTask['values'];
  schemaEpoch: EncodedTask['schemaEpoch'];
  schemas: EncodedTask['schemas'];
  schemaFailures: EncodedTask['schemaFailures'];
  subjectKeys?: SubjectKeyEntry[];
}

/** EncodedResult with the re-encoded parts packed (encoded.ts packParts), or why the records could not be decoded. */
export type EncodedPoolResult =
  | (Omit<EncodedResult, 'parts'> & { data: Uint8Array; lengths: Uint32Array })
  | { invalid: string }
  | SchemaNeeds;

/** Schema-registry values on the records path (batch.ts inspectSchemaValues), one request per task. */
export interface ValuesPoolTask {
  kind: 'values';
  version: string;
  task: SchemaValuesTask;
  subjectKeys?: SubjectKeyEntry[];
}
export type ValuesPoolResult = ReturnType<typeof inspectSchemaValues>;

export interface PoolWorkerData {
  program: SharedArrayBuffer;
  version: string;
  /** the encrypt / decrypt rules, the derived keys and the shared allowance of envelope encryptions (null: no such rules) */
  protection: WorkerProtection;
}

const NULL_LENGTH = 0xffffffff;
const EMPTY = new Uint8Array(0);
const { program, version, protection } = workerData as PoolWorkerData;
const subjectKeys = protection?.subjects ? new SubjectKeyCache(protection.subjects.epoch) : null;
const protector = protection
  ? new Protector(
      protection.rules,
      Keyring.fromTransfer(protection.keyring),
      protection.allowance ? new SharedAllowance(protection.allowance) : null,
      protection.subjects ? { ids: new SubjectIds(protection.subjects.secret), cache: subjectKeys! } : null,
    )
  : null;
const engine = WasmEngine.load(new Uint8Array(program), undefined, protector);

/** A task whose values need data subjects' keys this thread does not hold: the accept thread gets them and sends the task again. */
export interface SubjectKeysNeeded {
  needSubjectKeys: SubjectKeyNeed[];
}

export default function inspectTask(task: PoolTask | EncodedPoolTask | ValuesPoolTask): PoolResult | EncodedPoolResult | ValuesPoolResult | SubjectKeysNeeded {
  if (task.version !== version) throw new Error(`inspection worker has rules ${version}, the task needs ${task.version}`);
  if (task.subjectKeys) subjectKeys?.put(task.subjectKeys);
  try {
    if ('kind' in task) return task.kind === 'values' ? inspectSchemaValues(engine, task.task) : encodedTask(task);
    return plainTask(task);
  } catch (err) {
    if (err instanceof NeedSubjectKeys) return { needSubjectKeys: err.needs };
    throw err;
  }
}

function plainTask(task: PoolTask): PoolResult {
  const n = task.rulesets.length;
  const values: Array<Uint8Array | null> = new Array(n);
  const hashes = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const len = task.index[2 * i + 1]!;
    const off = task.index[2 * i]!;
    values[i] = len === NULL_LENGTH ? null : task.data.subarray(off, off + len);
    hashes[i] = hash('sha256', values[i] ?? EMPTY, 'hex');
  }
  // emitAll: the engine writes every value to one output buffer, which is transferred as is
  const r = engine.inspect(values, task.rulesets, true);
  const maskedHashes = new Array<string | null>(n);
  const index = r.outIndex;
  for (let i = 0; i < n; i++) {
    if (values[i] === null) {
      index[2 * i + 1] = NULL_LENGTH;
      maskedHashes[i] = null;
    } else if ((r.flags[i]! & FLAG_CHANGED) !== 0) {
      maskedHashes[i] = hash('sha256', r.out.subarray(index[2 * i]!, index[2 * i]! + index[2 * i + 1]!), 'hex');
    } else maskedHashes[i] = null;
  }
  const result: PoolResult = {
    data: r.out, index, hashes, maskedHashes,
    flags: r.flags, stopRule: r.stopRule, hitStart: r.hitStart, hitCount: r.hitCount, hits: r.hits,
  };
  // transfer the buffers back instead of cloning them
  return Piscina.move({
    [Piscina.transferableSymbol]: [r.out.buffer, index.buffer, r.flags.buffer, r.stopRule.buffer, r.hitStart.buffer, r.hitCount.buffer, r.hits.buffer],
    [Piscina.valueSymbol]: result,
  } as never) as unknown as PoolResult;
}

function encodedTask(task: EncodedPoolTask): EncodedPoolResult {
  // the input parts are never null (packed from Uint8Arrays)
  const parts = unpackParts(task.data, task.lengths) as Uint8Array[];
  const r = inspectEncoded(engine, {
    format: task.format, parts, ruleset: task.ruleset, keyHeaders: task.keyHeaders,
    values: task.values, schemaEpoch: task.schemaEpoch, schemas: task.schemas, schemaFailures: task.schemaFailures,
  });
  if ('invalid' in r || 'needSchemas' in r) return r;
  const { parts: out, ...rest } = r;
  const { data, lengths } = packParts(out);
  return Piscina.move({
    [Piscina.transferableSymbol]: [data.buffer, lengths.buffer, r.sizes.buffer, r.flags.buffer, r.stopRule.buffer, r.hitStart.buffer, r.hitCount.buffer, r.hits.buffer],
    [Piscina.valueSymbol]: { ...rest, data, lengths },
  } as never) as unknown as EncodedPoolResult;
}
