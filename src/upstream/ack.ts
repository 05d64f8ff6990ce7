import type { Operation, Upstream, UpstreamResult } from '../operation.ts';

/**
 * Acknowledges every write at once without a broker. Benchmarks use it to measure what
 * the gateway itself costs, separated from the broker's latency.
 */
export class AckUpstream implements Upstream {
  #offset = 0n;

  async execute(op: Operation): Promise<UpstreamResult> {
    const now = Date.now();
    return {
      // a record refused alone (op.refusals) is not stored: no position
      records: (op.records ?? []).map((r, i) => (op.refusals?.has(i) ? { partition: -1, offset: '', timestamp: now } : { partition: r.partition ?? 0, offset: String(this.#offset++), timestamp: r.timestamp ?? now })),
    };
  }

  async ready(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {}
}
