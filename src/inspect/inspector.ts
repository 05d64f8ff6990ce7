import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import type { InspectionConfig } from '../config/schema.ts';
import { GatewayError } from '../operation.ts';
import { inspectSchemaValues, inspectValues, type BatchResult, type SchemaValuesTask } from './batch.ts';
import { inspectEncoded, packParts, unpackParts, type EncodedResult, type EncodedTask } from './encoded.ts';
import type { CompiledProgram } from './compile/program.ts';
import { WasmEngine } from './engine.ts';
import { SchemaError, type SchemaErrorCode, type SchemaSource } from '../schemas/source.ts';
import type { SchemaNeeds, ValueProblemReport } from './values.ts';
import type { ValuesPoolResult, ValuesPoolTask, EncodedPoolResult, EncodedPoolTask, PoolResult, PoolTask, PoolWorkerData } from './worker.ts';
import type { Protection } from './protection.ts';
import { NeedSubjectKeys, type SubjectKeyEntry } from '../protect/subjects.ts';
import { StoreUnavailable } from '../state/store.ts';
import type { SubjectKeysNeeded } from './worker.ts';

const NULL_LENGTH = 0xffffffff;

/** Where the schemas of schema-registry values come from; `epoch` names the source (ids of another mean other schemas). */
export interface SchemaSourceRef {
  source: SchemaSource;
  epoch: string;
}

interface Pending {
  values: ReadonlyArray<Uint8Array | null>;
  /** one ruleset for all values, or one per value */
  rulesets: number | Uint32Array;
  resolve: (r: BatchResult) => void;
  reject: (e: unknown) => void;
}

export interface InspectOutcome {
  result: BatchResult;
  where: 'inline' | 'pool';
}

export interface EncodedOutcome {
  result: EncodedResult;
  where: 'inline' | 'pool';
}

/**
 * Runs the WASM engine either inline on the accept thread or in the piscina pool.
 * A pool round trip costs more than a whole small request (DESIGN.md), so small batches
 * stay inline and large ones go to the pool; everything sent to the pool during one
 * event-loop turn is coalesced into a single task (micro-batching). The compiled rules
 * reach each worker once, as workerData.
 */
export class Inspector {
  readonly #config: InspectionConfig;
  readonly #program: CompiledProgram;
  readonly #engine: WasmEngine;
  #pool: Piscina | undefined;
  readonly #schemas: SchemaSourceRef | undefined;
  #pending: Pending[] = [];
  #scheduled = false;

  readonly #protection: Protection | undefined;

  /** `protection`: the encrypt and decrypt rules' keys (without it, rules that encrypt fail closed) */
  constructor(config: InspectionConfig, program: CompiledProgram, schemas?: SchemaSourceRef, protection?: Protection) {
    this.#config = config;
    this.#schemas = schemas;
    this.#program = program;
    this.#protection = protection;
    // loaded eagerly: a gateway whose engine cannot load must refuse to start, not fail later
    this.#engine = WasmEngine.load(program.bytes, undefined, protection?.protector ?? null);
    if (config.mode !== 'inline') {
      const shared = new SharedArrayBuffer(program.bytes.byteLength);
      new Uint8Array(shared).set(program.bytes);
      const workerData: PoolWorkerData = { program: shared, version: program.version, protection: protection?.worker ?? null };
      this.#pool = new Piscina({
        filename: new URL('./worker.ts', import.meta.url).href,
        workerData,
        minThreads: config.poolThreads ?? Math.max(1, availableParallelism() - 1),
        maxThreads: config.poolThreads ?? Math.max(1, availableParallelism() - 1),
        // bounded: past this the gateway answers "overloaded" instead of buffering without limit
        maxQueue: 1024,
        concurrentTasksPerWorker: 4,
        idleTimeout: 60_000,
      });
    }
  }

  /** Workers load the WASM engine and the rules at start; wait for them so the first request is not slow. */
  async warmUp(): Promise<void> {
    if (!this.#pool) return;
    const empty: PoolTask = { version: this.#program.version, data: new Uint8Array(0), index: new Uint32Array(0), rulesets: new Uint32Array(0) };
    await Promise.all(Array.from({ length: this.#pool.threads.length || 1 }, () => this.#pool!.run(empty)));
  }

  #reserve(records: number): Promise<void> | undefined {
    return this.#protection?.reserve(records);
  }

  /** Crypto-shredding of one data subject (see Protection.eraseSubject); null when no rule names data subjects. */
  eraseSubject(subject: string): Promise<{ sid: string; existed: boolean } | null> {
    return this.#protection?.eraseSubject(subject) ?? Promise.resolve(null);
  }

  get poolQueueSize(): number {
    return this.#pool?.queueSize ?? 0;
  }

  /** Whether a batch of `bytes` is inspected on the accept thread rather than in the pool. */
  #inline(bytes: number): boolean {
    return !this.#pool || this.#config.mode === 'inline' || (this.#config.mode === 'auto' && bytes <= this.#config.inlineMaxBytes);
  }

  /** Inspects `values` under one compiled ruleset (0 = hash only) or one per value. */
  async inspect(values: ReadonlyArray<Uint8Array | null>, rulesets: number | Uint32Array): Promise<InspectOutcome> {
    let bytes = 0;
    for (const v of values) bytes += v?.byteLength ?? 0;
    const inline = this.#inline(bytes);
    try {
      const reserving = this.#reserve(values.length);
      if (reserving) await reserving;
      if (inline) return { result: await this.#withSubjectKeys(() => inspectValues(this.#engine, values, rulesets)), where: 'inline' };
      return { result: await this.#enqueue(values, rulesets), where: 'pool' };
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      // fail closed: the caller must never forward values that were not inspected
      throw new GatewayError('internal', 'inspection failed; the records were not forwarded', { cause: err });
    }
  }

  /**
   * Inspects records still in their wire encoding (one task: decode, scan, mask, hash,
   * re-encode). `decodedBytes` (an estimate from the batch headers) picks inline or pool.
   * Records that cannot be decoded are refused as 'invalid'.
   */
  async inspectEncoded(task: EncodedTask, decodedBytes: number): Promise<EncodedOutcome> {
    const inline = this.#inline(decodedBytes);
    let result: EncodedResult | { invalid: string } | SchemaNeeds;
    try {
      const reserving = this.#reserve(task.parts.length);
      if (reserving) await reserving;
      let attempt: EncodedTask = task.values ? { ...task, schemaEpoch: this.#schemas?.epoch ?? '' } : task;
      for (let round = 0; ; round++) {
        const current = attempt;
        result = await this.#withSubjectKeys((keys) => (inline ? inspectEncoded(this.#engine, current) : this.#runEncoded(current, keys)));
        if (!('needSchemas' in result)) break;
        // another worker may have compiled what this one lacks: a few rounds, then fail closed
        if (round === 3) throw new GatewayError('internal', 'the inspection threads could not be given the schemas of these records');
        attempt = { ...attempt, ...(await this.#fetchSchemas(result.needSchemas, attempt)) };
      }
    } catch (err) {
      const e = poolError(err);
      if (e instanceof GatewayError) throw e;
      // fail closed: the caller must never forward records that were not inspected
      throw new GatewayError('internal', 'inspection failed; the records were not forwarded', { cause: e });
    }
    if ('invalid' in result) throw new GatewayError('invalid', `the record batch cannot be read: ${result.invalid}`, { rule: 'records.format' });
    if (task.values?.subjects) result.problems.push(...(await this.#checkSubjects(task.values.subjects, task.topic ?? '', result.schemaIds)));
    return { result, where: inline ? 'inline' : 'pool' };
  }

  /**
   * Values whose schema is not registered under one of `subjects` (`{topic}` = the topic): a
   * producer must not pick any registered schema, e.g. one without the tags a rule relies on.
   * The subjects of an id come from the schema source (cached briefly); when they cannot be
   * had the values are refused, fail closed.
   */
  async #checkSubjects(subjects: readonly string[], topic: string, schemaIds: readonly number[]): Promise<ValueProblemReport[]> {
    const allowed = new Set(subjects.map((s) => s.replaceAll('{topic}', topic)));
    const source = this.#schemas?.source;
    const verdicts = new Map<number, string | null>();
    await Promise.all(
      [...new Set(schemaIds.filter((id) => id >= 0))].map(async (id) => {
        try {
          const list = source ? await source.subjectsOf(id) : [];
          verdicts.set(id, list.some((v) => allowed.has(v.subject)) ? null : `schema ${id} is not registered under ${[...allowed].join(' or ')}`);
        } catch (err) {
          verdicts.set(id, `the subjects of schema ${id} cannot be had: ${err instanceof SchemaError ? err.message : (err as Error).message}`);
        }
      }),
    );
    const problems: ValueProblemReport[] = [];
    schemaIds.forEach((id, record) => {
      const why = id >= 0 ? verdicts.get(id) : null;
      if (why) problems.push({ record, rule: 'schema.subject', message: `record ${record}: ${why}` });
    });
    return problems;
  }

  /**
   * Inspects the values of a topic with schema-registry values (the records path: HTTP,
   * Kinesis); `payloads` are the values, then key and header payloads, each with a ruleset.
   */
  async inspectSchemaValues(task: Omit<SchemaValuesTask, 'schemaEpoch' | 'schemas' | 'schemaFailures'>): Promise<InspectOutcome & { problems: ValueProblemReport[] }> {
    let bytes = 0;
    for (const v of task.payloads) bytes += v?.byteLength ?? 0;
    const inline = this.#inline(bytes);
    try {
      const reserving = this.#reserve(task.count);
      if (reserving) await reserving;
      let attempt: SchemaValuesTask = { ...task, schemaEpoch: this.#schemas?.epoch ?? '' };
      for (let round = 0; ; round++) {
        const current = attempt;
        const r = await this.#withSubjectKeys((keys) =>
          inline ? inspectSchemaValues(this.#engine, current) : (this.#pool!.run({ kind: 'values', version: this.#program.version, task: current, subjectKeys: keys } satisfies ValuesPoolTask) as Promise<ValuesPoolResult | SubjectKeysNeeded>),
        );
        if (!('needSchemas' in r)) {
          const problems = task.spec.subjects ? [...r.problems, ...(await this.#checkSubjects(task.spec.subjects, task.topic ?? '', r.schemaIds))] : r.problems;
          return { result: r, problems, where: inline ? 'inline' : 'pool' };
        }
        if (round === 3) throw new GatewayError('internal', 'the inspection threads could not be given the schemas of these records');
        attempt = { ...attempt, ...(await this.#fetchSchemas(r.needSchemas, attempt)) };
      }
    } catch (err) {
      const e = poolError(err);
      if (e instanceof GatewayError) throw e;
      throw new GatewayError('internal', 'inspection failed; the records were not forwarded', { cause: e });
    }
  }

  /** Gets the schemas a thread asked for (the source caches them); the ones it cannot get are failures the thread acts on. */
  async #fetchSchemas(ids: number[], sofar: Pick<EncodedTask, 'schemas' | 'schemaFailures'>): Promise<Pick<EncodedTask, 'schemas' | 'schemaFailures'>> {
    const schemas = [...(sofar.schemas ?? [])];
    const schemaFailures = [...(sofar.schemaFailures ?? [])];
    const source = this.#schemas?.source;
    await Promise.all(
      ids.map(async (id) => {
        if (!source) return void schemaFailures.push({ id, code: 'SCHEMA_NOT_FOUND', message: 'no schema registry or catalog is configured' });
        try {
          schemas.push(await source.byId(id));
        } catch (err) {
          const code: SchemaErrorCode = err instanceof SchemaError ? err.code : 'REGISTRY_UNAVAILABLE';
          schemaFailures.push({ id, code, message: err instanceof SchemaError ? err.message : `the schema source failed: ${(err as Error).message}` });
        }
      }),
    );
    return { schemas, schemaFailures };
  }

  /**
   * Runs an engine task until the threads have the data subjects' keys its values need: inline,
   * the engine call throws NeedSubjectKeys; in the pool, the worker answers needSubjectKeys.
   * The keys are fetched (or made, for new subjects) on this thread and the task runs again
   * with them (`keys`, for a worker; this thread's engine keeps its own).
   */
  async #withSubjectKeys<T extends object>(run: (keys: SubjectKeyEntry[] | undefined) => T | Promise<T | SubjectKeysNeeded>): Promise<T> {
    let keys: SubjectKeyEntry[] | undefined;
    for (let round = 0; ; round++) {
      let r: T | SubjectKeysNeeded;
      try {
        r = await run(keys);
      } catch (err) {
        if (!(err instanceof NeedSubjectKeys)) throw err;
        r = { needSubjectKeys: err.needs };
      }
      if (!('needSubjectKeys' in r)) return r;
      if (round === 3 || !this.#protection) throw new GatewayError('internal', "the inspection threads could not be given the data subjects' keys");
      try {
        keys = [...(keys ?? []), ...(await this.#protection.resolveSubjects(r.needSubjectKeys))];
      } catch (err) {
        if (err instanceof StoreUnavailable) throw new GatewayError('upstream-unavailable', "the data subjects' keys cannot be had (the state store is unavailable); retry", { cause: err });
        throw err;
      }
    }
  }

  async #runEncoded(task: EncodedTask, subjectKeys?: SubjectKeyEntry[]): Promise<EncodedResult | { invalid: string } | SchemaNeeds | SubjectKeysNeeded> {
    // one copy of the (usually compressed) wire bytes, transferred: the parts are views of a
    // request frame whose memory is reused
    const { data, lengths } = packParts(task.parts);
    const poolTask: EncodedPoolTask = {
      kind: 'encoded', version: this.#program.version, format: task.format, data, lengths, ruleset: task.ruleset, keyHeaders: task.keyHeaders ?? null,
      values: task.values ?? null, schemaEpoch: task.schemaEpoch, schemas: task.schemas, schemaFailures: task.schemaFailures,
      ...(subjectKeys ? { subjectKeys } : {}),
    };
    const r = (await this.#pool!.run(poolTask, { transferList: [data.buffer, lengths.buffer] })) as EncodedPoolResult | SubjectKeysNeeded;
    if ('invalid' in r || 'needSchemas' in r || 'needSubjectKeys' in r) return r;
    const { data: out, lengths: outLengths, ...rest } = r;
    return { ...rest, parts: unpackParts(out, outLengths) };
  }

  #enqueue(values: ReadonlyArray<Uint8Array | null>, rulesets: number | Uint32Array): Promise<BatchResult> {
    const { promise, resolve, reject } = Promise.withResolvers<BatchResult>();
    this.#pending.push({ values, rulesets, resolve, reject });
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
    return promise;
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#pending;
    this.#pending = [];
    let n = 0;
    let bytes = 0;
    for (const p of batch) {
      n += p.values.length;
      for (const v of p.values) bytes += v?.byteLength ?? 0;
    }
    // packed again for each run: the buffers are transferred to the worker
    const run = (subjectKeys: SubjectKeyEntry[] | undefined): Promise<PoolResult | SubjectKeysNeeded> => {
      const data = new Uint8Array(bytes);
      const index = new Uint32Array(2 * n);
      const rulesets = new Uint32Array(n);
      let i = 0;
      let off = 0;
      for (const p of batch) {
        const one = typeof p.rulesets === 'number' ? p.rulesets : -1;
        p.values.forEach((v, k) => {
          index[2 * i] = off;
          index[2 * i + 1] = v === null ? NULL_LENGTH : v.byteLength;
          if (v) {
            data.set(v, off);
            off += v.byteLength;
          }
          rulesets[i++] = one >= 0 ? one : (p.rulesets as Uint32Array)[k]!;
        });
      }
      const task: PoolTask = { version: this.#program.version, data, index, rulesets, ...(subjectKeys ? { subjectKeys } : {}) };
      return this.#pool!.run(task, { transferList: [data.buffer, index.buffer, rulesets.buffer] }) as Promise<PoolResult | SubjectKeysNeeded>;
    };
    this.#withSubjectKeys(run).then(
      (r: PoolResult) => {
        let at = 0;
        for (const p of batch) {
          const count = p.values.length;
          const values: Array<Uint8Array | null> = new Array(count);
          const hitStart = r.hitStart.slice(at, at + count);
          const firstHit = count > 0 ? hitStart[0]! : 0;
          let hitEnd = firstHit;
          for (let k = 0; k < count; k++) {
            const len = r.index[2 * (at + k) + 1]!;
            const o = r.index[2 * (at + k)]!;
            values[k] = len === NULL_LENGTH ? null : r.data.subarray(o, o + len);
            hitEnd = Math.max(hitEnd, r.hitStart[at + k]! + r.hitCount[at + k]!);
          }
          // hit positions relative to this request's slice of the hits
          for (let k = 0; k < count; k++) hitStart[k] = hitStart[k]! - firstHit;
          p.resolve({
            values,
            hashes: r.hashes.slice(at, at + count),
            maskedHashes: r.maskedHashes.slice(at, at + count),
            flags: r.flags.slice(at, at + count),
            stopRule: r.stopRule.slice(at, at + count),
            hitStart,
            hitCount: r.hitCount.slice(at, at + count),
            hits: r.hits.slice(firstHit, hitEnd),
          });
          at += count;
        }
      },
      (err: unknown) => {
        const e = poolError(err);
        for (const p of batch) p.reject(e);
      },
    );
  }

  async close(): Promise<void> {
    await this.#pool?.destroy();
    await this.#protection?.close();
  }
}

/** A full pool queue is overload (retry later), not an inspection failure. */
function poolError(err: unknown): unknown {
  return err instanceof Error && /queue is full/i.test(err.message) ? new GatewayError('upstream-unavailable', 'the inspection pool is overloaded; retry later') : err;
}
