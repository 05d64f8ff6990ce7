import type { Logger } from 'pino';
import type { GatewayMetrics } from '../ops/metrics.ts';
import { recordBytes } from '../ops/metrics.ts';
import { GatewayError, type Control, type Next, type Operation, type UpstreamResult } from '../operation.ts';

/**
 * Outermost control: counts every operation by outcome and times it, so every protocol
 * gets the same series. It wraps audit, so the latency includes the spool write the
 * client waits for. Bytes in are measured before inspection rewrites the records.
 * At log level debug it also writes one line per operation with its ids (never credentials).
 */
export class Metrics implements Control {
  readonly name = 'metrics';
  readonly #metrics: GatewayMetrics;
  readonly #log: Logger | undefined;

  constructor(metrics: GatewayMetrics, log?: Logger) {
    this.#metrics = metrics;
    this.#log = log;
  }

  async handle(op: Operation, next: Next): Promise<UpstreamResult> {
    const start = performance.now();
    const inBytes = op.action === 'consume' ? 0 : recordBytes(op);
    let error: unknown;
    try {
      return await next(op);
    } catch (err) {
      error = err;
      throw err;
    } finally {
      const seconds = (performance.now() - start) / 1000;
      this.#metrics.observe(op, op.protocol, error, seconds, inBytes);
      if (this.#log?.isLevelEnabled('debug')) {
        this.#log.debug(
          {
            op: op.id,
            session: op.session.id,
            protocol: op.protocol,
            action: op.action,
            resource: `${op.resource.kind}:${op.resource.name}`,
            subject: op.identity?.subject,
            outcome: error === undefined ? 'ok' : error instanceof GatewayError ? error.kind : 'internal',
            ms: Math.round(seconds * 1e6) / 1e3,
          },
          'operation',
        );
      }
    }
  }
}
