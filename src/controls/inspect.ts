import type { InspectionConfig } from '../config/schema.ts';
import type { BatchResult } from '../inspect/batch.ts';
import {
  FLAG_BLOCKED, FLAG_HEADERS_CHANGED, FLAG_JSON_FALLBACK, FLAG_JSON_TOO_DEEP, FLAG_JSON_TRAILING, FLAG_KEY_CHANGED, FLAG_NDJSON,
} from '../inspect/engine.ts';
import { UNCHANGED_HASH } from '../inspect/encoded.ts';
import type { Inspector } from '../inspect/inspector.ts';
import { foldKeyHeaders, planKeyHeaders } from '../inspect/key-headers.ts';
import { NO_RULES, type RuleBook, type Side } from '../inspect/rules.ts';
import { FRAMED_KEY_CHANGED, framedKey, STOP_VALUE } from '../inspect/values.ts';
import { GatewayError, type Control, type EncodedRecords, type Inspection, type Intent, type Next, type Operation, type RecordNeeds, type UpstreamResult } from '../operation.ts';

/**
 * Applies the inspection rules to whole records (values, and keys and headers where rules
 * apply to them): produce-side rules before the upstream receives them, consume-side rules
 * (chosen by the reader's roles) to records a listener put into a consume operation.
 * Enforces the size limits of produced records first. Topics without rules take the
 * passthrough path: no engine call at all (the audit control still hashes the originals).
 * Any inspection failure refuses the operation.
 */
export class Inspect implements Control {
  readonly name = 'inspect';
  // the gateway passes a view of its inspector that follows reloads
  readonly #inspector: Pick<Inspector, 'inspect' | 'inspectEncoded' | 'inspectSchemaValues'>;
  readonly #rules: () => RuleBook;
  readonly #limits: () => InspectionConfig['limits'];

  constructor(inspector: Pick<Inspector, 'inspect' | 'inspectEncoded' | 'inspectSchemaValues'>, rules: () => RuleBook, limits: () => InspectionConfig['limits']) {
    this.#inspector = inspector;
    this.#rules = rules;
    this.#limits = limits;
  }

  /** topics without rules pass through as bytes; with rules the values are read, in their wire encoding where they can be */
  needs(intent: Intent, needs: RecordNeeds): void {
    const side = intent.action;
    if ((side !== 'produce' && side !== 'consume') || needs.records !== 'none') return;
    if (this.#rules().rulesFor(intent.resource.name, side, intent.identity.roles) !== null) needs.records = 'encoded';
  }

  async handle(op: Operation, next: Next): Promise<UpstreamResult> {
    if (op.encoded && !op.records && (op.action === 'produce' || op.action === 'consume')) return this.#encoded(op, op.encoded, next);
    const records = op.records;
    if (!records || records.length === 0 || (op.action !== 'produce' && op.action !== 'consume')) return next(op);
    const book = this.#rules();
    const side: Side = op.action;
    if (side === 'produce') this.#checkLimits(op, book);

    const rules = book.rulesFor(op.resource.name, side, op.identity?.roles ?? []);
    if (!rules) {
      refuseWhenNoneLeft(op);
      return next(op);
    }
    // keys and headers ride in the same engine call as the values when rules apply to them
    const plan = rules.keyHeaders ? planKeyHeaders(records, rules.ruleset, rules.keyHeaders) : null;
    const payloads = plan ? plan.payloads : records.map((r) => r.value);
    const { result, where, problems } = rules.values
      ? await this.#inspector.inspectSchemaValues({
          payloads, count: records.length, rulesets: plan ? plan.rulesets : new Uint32Array(payloads.length).fill(rules.ruleset), spec: rules.values, topic: op.resource.name,
          ...(rules.values.framing === 'apicurio-header' ? { headers: records.map((r) => r.headers) } : {}),
        })
      : { ...(await this.#inspector.inspect(payloads, plan ? plan.rulesets : rules.ruleset)), problems: [] };
    const n = records.length;
    const keys = rules.values && plan ? records.map((r) => r.key) : null;
    const facts = plan ? foldKeyHeaders(records, plan, result, (j) => result.values[j] ?? null) : result;
    // a framed key a rule rewrote (keys are not decoded): refused, never forwarded broken
    if (keys) {
      for (let i = 0; i < n; i++) {
        if ((facts.flags[i]! & FLAG_KEY_CHANGED) !== 0 && framedKey(keys[i]!, records[i]!.headers, rules.values!.framing)) problems.push({ record: i, rule: 'schema.key', message: `record ${i}: ${FRAMED_KEY_CHANGED}` });
      }
    }
    op.inspection = summarize({ ...facts, hashes: result.hashes.slice(0, n), maskedHashes: result.maskedHashes.slice(0, n) }, where, book);
    for (const p of problems) refuseRecord(op, p.record, new GatewayError('invalid', p.message, { rule: p.rule, record: p.record }));
    for (let i = 0; i < n; i++) {
      if ((facts.flags[i]! & FLAG_BLOCKED) !== 0 && facts.stopRule[i] !== STOP_VALUE) {
        const rule = facts.stopRule[i]!;
        const id = book.ruleId(rule);
        refuseRecord(op, i, new GatewayError('blocked', `record ${i} was blocked by inspection rule "${id}": ${book.blockReason(rule)}`, { rule: id, record: i }));
      }
    }
    refuseWhenNoneLeft(op);
    for (let i = 0; i < n; i++) records[i]!.value = result.values[i] ?? null;
    return next(op);
  }

  /** Records in their wire encoding: decoded, inspected and re-encoded by the engine in one task. */
  async #encoded(op: Operation, encoded: EncodedRecords, next: Next): Promise<UpstreamResult> {
    const book = this.#rules();
    const side: Side = op.action === 'produce' ? 'produce' : 'consume';
    const rules = book.rulesFor(op.resource.name, side, op.identity?.roles ?? []);
    const { result, where } = await this.#inspector.inspectEncoded(
      { format: encoded.format, parts: encoded.parts, ruleset: rules?.ruleset ?? NO_RULES, keyHeaders: rules?.keyHeaders ?? null, values: rules?.values ?? null, topic: op.resource.name },
      encoded.decodedBytes,
    );
    encoded.counts = result.counts;
    // counted like decoded records: how many, and their key and value bytes
    let bytes = 0;
    for (const size of result.sizes) bytes += size;
    op.batch = { records: result.sizes.length, bytes, hash: op.batch?.hash ?? '' };
    if (side === 'produce') this.#checkLimits(op, book, result.sizes);
    const n = result.flags.length;
    const hashes = new Array<string>(n);
    const maskedHashes = new Array<string | null>(n);
    for (let i = 0; i < n; i++) {
      hashes[i] = result.hashes.slice(64 * i, 64 * i + 64);
      const m = result.maskedHashes.slice(64 * i, 64 * i + 64);
      maskedHashes[i] = m === UNCHANGED_HASH ? null : m;
    }
    op.inspection = summarize({ ...result, hashes, maskedHashes }, where, book);
    for (const p of result.problems) {
      // a value the schema step refused: the record is invalid, not blocked by a rule
      throw new GatewayError('invalid', p.message, { rule: p.rule, record: p.record });
    }
    for (let i = 0; i < n; i++) {
      if ((result.flags[i]! & FLAG_BLOCKED) !== 0) {
        const rule = result.stopRule[i]!;
        const id = book.ruleId(rule);
        throw new GatewayError('blocked', `record ${i} was blocked by inspection rule "${id}": ${book.blockReason(rule)}`, { rule: id, record: i });
      }
    }
    encoded.changed = result.parts.map((p) => p !== null);
    result.parts.forEach((p, k) => {
      if (p !== null) encoded.parts[k] = p;
    });
    return next(op);
  }

  /** Refuses records over the size limits; `sizes` (key + value bytes per record) when the records are not decoded here. */
  #checkLimits(op: Operation, book: RuleBook, sizes?: Uint32Array): void {
    const { maxRecordBytes, maxBatchBytes } = { ...this.#limits(), ...book.limitsFor(op.resource.name) };
    let total = 0;
    const records = op.records;
    const n = sizes?.length ?? records!.length;
    for (let i = 0; i < n; i++) {
      const r = records?.[i];
      const size = sizes ? sizes[i]! : (r!.value?.byteLength ?? 0) + (r!.key?.byteLength ?? 0);
      if (size > maxRecordBytes) {
        refuseRecord(op, i, new GatewayError('too-large', `record ${i} is ${size} bytes; the limit is ${maxRecordBytes}`, { rule: 'limits.maxRecordBytes', record: i }));
      }
      total += size;
    }
    if (total > maxBatchBytes) {
      throw new GatewayError('too-large', `the batch is ${total} bytes; the limit is ${maxBatchBytes}`, { rule: 'limits.maxBatchBytes' });
    }
  }
}

/** Where the protocol answers per record (`op.refusals`) the record is refused alone; elsewhere the operation is. */
function refuseRecord(op: Operation, i: number, error: GatewayError): void {
  if (!op.refusals) throw error;
  op.refusals.refuse(i, error);
}

/** Per-record mode: when every record was refused there is nothing to forward, so the operation is refused (with the first record's refusal). */
function refuseWhenNoneLeft(op: Operation): void {
  const refusals = op.refusals;
  if (!refusals || !op.records || op.records.length === 0 || refusals.size < op.records.length) return;
  throw refusals.get(0)!;
}

/** Audit notes: how many records had each of these facts (`json-fallback:3`). */
const NOTES: Array<[number, string]> = [
  [FLAG_JSON_FALLBACK, 'json-fallback'],
  [FLAG_JSON_TOO_DEEP, 'json-too-deep'],
  [FLAG_JSON_TRAILING, 'json-trailing'],
  [FLAG_NDJSON, 'ndjson'],
  [FLAG_KEY_CHANGED, 'keys-changed'],
  [FLAG_HEADERS_CHANGED, 'headers-changed'],
];

/** The audit facts of an inspected batch: hashes (of values), rule id -> actions applied (values, keys and headers), notes. */
function summarize(result: Pick<BatchResult, 'hashes' | 'maskedHashes' | 'flags' | 'hitStart' | 'hitCount' | 'hits'>, where: 'inline' | 'pool', book: RuleBook): Inspection {
  const counts = new Map<number, number>();
  const noted = new Array<number>(NOTES.length).fill(0);
  let revealed: Uint8Array | undefined;
  for (let i = 0; i < result.flags.length; i++) {
    const f = result.flags[i]!;
    for (let k = 0; k < NOTES.length; k++) if ((f & NOTES[k]![0]) !== 0) noted[k]!++;
    const start = result.hitStart[i]!;
    const end = start + result.hitCount[i]!;
    for (let k = start; k < end; k++) {
      const rule = result.hits[k]!;
      counts.set(rule, (counts.get(rule) ?? 0) + 1);
      if (book.isReveal(rule)) (revealed ??= new Uint8Array(result.flags.length))[i] = 1;
    }
  }
  const masking: Record<string, number> = {};
  for (const [rule, n] of counts) masking[book.ruleId(rule)] = n;
  return {
    hashes: result.hashes,
    maskedHashes: result.maskedHashes,
    masking,
    where,
    notes: NOTES.flatMap(([, name], k) => (noted[k]! > 0 ? [`${name}:${noted[k]}`] : [])),
    ...(revealed ? { revealed } : {}),
  };
}
