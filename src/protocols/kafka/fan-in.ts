// The fan-in barrier of a Kafka request that names several resources: every operation runs
// through the controls chain on its own (its own audit row), and the request is decided once,
// when each has either reached the end of the chain (allowed) or been refused.

import { GatewayError, Refusals, type Operation, type UpstreamResult } from '../../operation.ts';
import type { Decide } from './context.ts';

/** The controls chain for one operation, ending in `terminal` when it is allowed. */
export type RunThroughChain = (op: Operation, terminal: (op: Operation) => Promise<UpstreamResult>) => Promise<UpstreamResult>;

/**
 * Runs every operation through the controls chain. When each has either reached the
 * end of the chain (allowed) or been refused, `decide` runs once with both sets: it
 * forwards what may be forwarded and returns the per-operation results, which flow
 * back through the chain (audit writes each row). Resolves `forwarded` as soon as the
 * request has left for the broker, `settled` when every row is written.
 */
export function fanIn(run: RunThroughChain, ops: Operation[], decide: Decide): { forwarded: Promise<void>; settled: Promise<unknown> } {
  const arrived: Array<{ op: Operation; resolve: (r: UpstreamResult) => void; reject: (e: unknown) => void }> = [];
  const denied = new Refusals<Operation>();
  let fired = false;
  let markForwarded!: () => void;
  const forwarded = new Promise<void>((r) => (markForwarded = r));
  const fire = () => {
    if (fired || arrived.length + denied.size < ops.length) return;
    fired = true;
    let results: Promise<Map<Operation, UpstreamResult | Error>> | undefined;
    try {
      results = decide(
        arrived.map((a) => a.op),
        denied,
      );
    } catch (err) {
      results = Promise.reject(err);
    }
    markForwarded();
    if (!results) {
      for (const a of arrived) a.resolve({});
      return;
    }
    results.then(
      (map) => {
        for (const a of arrived) {
          const r = map.get(a.op);
          if (r instanceof Error) a.reject(r);
          else a.resolve(r ?? {});
        }
      },
      (err: unknown) => {
        for (const a of arrived) a.reject(err);
      },
    );
  };
  const runs = ops.map((op) =>
    run(op, (o) =>
      new Promise<UpstreamResult>((resolve, reject) => {
        arrived.push({ op: o, resolve, reject });
        fire();
      }),
    ).catch((err: unknown) => {
      if (!fired) {
        denied.refuse(op, err instanceof GatewayError ? err : new GatewayError('internal', 'internal error'));
        fire();
      }
      throw err;
    }),
  );
  if (ops.length === 0) fire();
  return { forwarded, settled: Promise.allSettled(runs) };
}
