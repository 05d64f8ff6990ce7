import { Piscina } from 'piscina';
import { WasmEngine } from './engine.ts';
import { inspectValues } from './batch.ts';

/**
 * Piscina worker: one WASM instance per thread, loaded once. A task is a whole packed
 * batch (possibly the coalesced records of many requests); results travel back as
 * transferred buffers, not per-record messages.
 */
export interface PoolTask {
  /** all values back to back */
  data: Uint8Array;
  /** per record: [offset, length] in data; length 0xffffffff means null */
  index: Uint32Array;
  /** per record: 1 when masking applies */
  mask: Uint8Array;
}

export interface PoolResult {
  data: Uint8Array;
  index: Uint32Array;
  hashes: string[];
  maskedHashes: Array<string | null>;
  hits: Uint32Array;
}

const NULL_LENGTH = 0xffffffff;
const engine = WasmEngine.load();

export default function inspectTask(task: PoolTask): PoolResult {
  const n = task.mask.length;
  const values: Array<Uint8Array | null> = new Array(n);
  for (let i = 0; i < n; i++) {
    const len = task.index[2 * i + 1]!;
    const off = task.index[2 * i]!;
    values[i] = len === NULL_LENGTH ? null : task.data.subarray(off, off + len);
  }
  const r = inspectValues(engine, values, (i) => task.mask[i] === 1);

  // repack the forwarded values: unchanged ones are copied from the input once
  let total = 0;
  for (const v of r.values) total += v?.byteLength ?? 0;
  const data = new Uint8Array(total);
  const index = new Uint32Array(2 * n);
  let off = 0;
  for (let i = 0; i < n; i++) {
    const v = r.values[i] ?? null;
    index[2 * i] = off;
    index[2 * i + 1] = v === null ? NULL_LENGTH : v.byteLength;
    if (v) {
      data.set(v, off);
      off += v.byteLength;
    }
  }
  const result: PoolResult = { data, index, hashes: r.hashes, maskedHashes: r.maskedHashes, hits: Uint32Array.from(r.hits) };
  // transfer the buffers back instead of cloning them
  return Piscina.move({
    [Piscina.transferableSymbol]: [data.buffer, index.buffer, result.hits.buffer],
    [Piscina.valueSymbol]: result,
  } as never) as unknown as PoolResult;
}
