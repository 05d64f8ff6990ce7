import type { MessageCodec, Struct } from '../../src/protocols/kafka/codec.ts';

/**
 * Number of cases for a property: the bounded budget `npm test` runs, times FUZZ_SCALE
 * (`npm run fuzz` sets it) for longer campaigns.
 */
export function fuzzRuns(base: number): number {
  const scale = Number(process.env.FUZZ_SCALE ?? 1);
  return Math.max(1, Math.round(base * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}

/** A deterministic generator in [0, 1) (Park-Miller), so a failing seed replays. */
export function seeded(seed: number): () => number {
  let state = seed % 2147483647 || 1;
  return () => (state = (state * 48271) % 2147483647) / 2147483647;
}

type Plan = ReturnType<MessageCodec['plan']>;

/** A random but well-formed request body for `codec` at `version`: arrays of 0-3 elements, nested. */
export function sampleRequest(codec: MessageCodec, version: number, rnd: () => number): Struct {
  return sample(codec.plan(version), rnd, 0);
}

function sample(plan: Plan, rnd: () => number, depth: number): Struct {
  const s: Struct = {};
  for (const f of [...plan.fields, ...plan.tagged]) {
    const one = (): unknown => {
      if (f.struct) return sample(f.struct, rnd, depth + 1);
      const n = Math.floor(rnd() * 1000);
      switch (f.type) {
        case 'bool': return rnd() < 0.5;
        case 'int8': return n % 128;
        case 'int16': case 'uint16': return n;
        case 'int32': case 'uint32': return n * 1000;
        case 'int64': return BigInt(n) * 1000n;
        case 'float64': return n / 7;
        case 'uuid': return Uint8Array.from({ length: 16 }, (_, i) => (i === 15 ? n % 256 : 0));
        case 'string': return `s${n}`;
        case 'bytes': return new Uint8Array(n % 17);
        default: return null; // records: none (the record-batch properties cover those)
      }
    };
    if (f.array) s[f.name] = depth > 3 ? [] : Array.from({ length: Math.floor(rnd() * 4) }, one);
    else s[f.name] = f.type === 'records' && !f.nullable ? new Uint8Array(0) : one();
  }
  return s;
}
