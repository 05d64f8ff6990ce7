import { hash } from 'node:crypto';
import type { Logger } from 'pino';
import { buildRow, type RowContext } from '../audit/row.ts';
import type { AuditSpool } from '../audit/spool.ts';
import { GatewayError, type Control, type Next, type Operation, type UpstreamResult } from '../operation.ts';

const EMPTY = new Uint8Array(0);

/**
 * Outermost control: every operation, allowed or refused, leaves one row in the spool,
 * and the client is answered only after its row is durable (see AuditSpool). The one
 * exception is an allowed read that returned no records.
 */
export class Audit implements Control {
  readonly name = 'audit';
  readonly #spool: AuditSpool;
  readonly #context: () => RowContext;
  readonly #log: Logger;

  constructor(spool: AuditSpool, context: () => RowContext, log: Logger) {
    this.#spool = spool;
    this.#context = context;
    this.#log = log;
  }

  async handle(op: Operation, next: Next): Promise<UpstreamResult> {
    let result: UpstreamResult | undefined;
    let error: unknown;
    try {
      // fail closed before anything is forwarded: a write the trail cannot record is refused
      if (!this.#spool.healthy) throw new GatewayError('upstream-unavailable', `the audit trail is unavailable (${this.#spool.problem ?? 'spool error'}); operations are refused until it recovers`);
      result = await next(op);
    } catch (err) {
      error = err;
    }
    // An allowed read that returned nothing (a consumer's idle poll, every few hundred ms)
    // says nothing an analyst needs; denials and reads with records are always recorded.
    if (error === undefined && op.action === 'consume' && (op.resource.kind === 'topic' || op.resource.kind === 'stream') && !op.records?.length && op.batch?.records === 0) return result!;
    // refused operations were never inspected: hash the originals here so every row has them
    if (op.records && !op.inspection) {
      op.inspection = {
        hashes: op.records.map((r) => hash('sha256', r.value ?? EMPTY, 'hex')),
        maskedHashes: op.records.map(() => null),
        masking: {},
        where: 'none',
        notes: [],
      };
    }
    const batchHash = op.inspection && op.inspection.hashes.length > 0 ? hash('sha256', op.inspection.hashes.join(''), 'hex') : (op.batch?.hash ?? '');
    try {
      await this.#spool.append(buildRow(this.#context(), op, result, error, batchHash));
    } catch (err) {
      this.#log.error({ err, op: op.id }, 'audit spool append failed');
      // fail closed: an operation without its audit row is not acknowledged as a success
      if (error === undefined) error = new GatewayError('upstream-unavailable', 'the audit trail is unavailable', { cause: err });
    }
    if (error !== undefined) {
      if (!(error instanceof GatewayError)) this.#log.error({ err: error, op: op.id }, 'operation failed');
      throw error;
    }
    return result!;
  }
}
