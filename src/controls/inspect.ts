import type { InspectionConfig } from '../config/schema.ts';
import type { Inspector } from '../inspect/inspector.ts';
import type { RuleBook } from '../inspect/rules.ts';
import { GatewayError, type Control, type Next, type Operation, type UpstreamResult } from '../operation.ts';

/**
 * Enforces size limits and masks record values before they reach the upstream. Topics
 * without rules take the passthrough path: no engine call at all (the audit control
 * still hashes the originals).
 */
export class Inspect implements Control {
  readonly name = 'inspect';
  readonly #inspector: Inspector;
  readonly #rules: () => RuleBook;
  readonly #limits: () => InspectionConfig['limits'];

  constructor(inspector: Inspector, rules: () => RuleBook, limits: () => InspectionConfig['limits']) {
    this.#inspector = inspector;
    this.#rules = rules;
    this.#limits = limits;
  }

  async handle(op: Operation, next: Next): Promise<UpstreamResult> {
    const records = op.records;
    if (op.action !== 'produce' || !records || records.length === 0) return next(op);

    const { maxRecordBytes, maxBatchBytes } = this.#limits();
    let total = 0;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const size = (r.value?.byteLength ?? 0) + (r.key?.byteLength ?? 0);
      if (size > maxRecordBytes) {
        throw new GatewayError('too-large', `record ${i} is ${size} bytes; the limit is ${maxRecordBytes}`, { rule: 'limits.maxRecordBytes' });
      }
      total += size;
    }
    if (total > maxBatchBytes) {
      throw new GatewayError('too-large', `the batch is ${total} bytes; the limit is ${maxBatchBytes}`, { rule: 'limits.maxBatchBytes' });
    }

    const rules = this.#rules().produceRules(op.resource.name);
    if (!rules || !rules.cardRule) return next(op);

    const { result, where } = await this.#inspector.inspect(
      records.map((r) => r.value),
      true,
    );
    let masked = 0;
    for (let i = 0; i < records.length; i++) {
      records[i]!.value = result.values[i] ?? null;
      masked += result.hits[i]!;
    }
    op.inspection = {
      hashes: result.hashes,
      maskedHashes: result.maskedHashes,
      masking: masked > 0 ? { [rules.cardRule]: masked } : {},
      where,
      notes: [],
    };
    return next(op);
  }
}
