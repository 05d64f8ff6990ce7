import { compileProgram, type ActionSpec, type KeySpec, type RuleSpec, type RulesetSpec } from '../../src/inspect/compile/program.ts';
import { toJsSource } from '../../src/inspect/compile/regex.ts';
import { maxLength } from '../../src/inspect/compile/automaton.ts';
import { DETECTORS } from '../../src/inspect/detectors.ts';
import { FLAG_CHANGED, outputOf, WasmEngine, type EngineResult } from '../../src/inspect/engine.ts';
import { Reference } from '../../bench/engine-reference.ts';

export const te = new TextEncoder();
export const td = new TextDecoder();
export const enc = (s: string): Uint8Array => te.encode(s);

export const mask4: ActionSpec = { type: 'mask', keepLast: 4, keepFirst: 0, char: '*' };
export const redact = (r: string): ActionSpec => ({ type: 'redact', replacement: r });

export function detectorRule(id: string, action: ActionSpec = redact(`[${id}]`), fields: string[] | null = null): RuleSpec {
  return { id, match: { detector: id }, fields, action };
}

/** One engine with the given rules; ruleset 0 = every rule in `format`, then the extra rulesets. */
export function setup(rules: RuleSpec[], format: RulesetSpec['format'] = 'text', opts: { keys?: KeySpec[]; active?: number; rulesets?: RulesetSpec[] } = {}) {
  const program = compileProgram({
    rules,
    rulesets: [{ rules: rules.map((_, i) => i), format }, ...(opts.rulesets ?? [])],
    keys: opts.keys ?? [],
    activeKey: opts.active ?? null,
  });
  const engine = WasmEngine.load(program.bytes);
  const reference = new Reference(program.patterns.map((p) => ({ source: toJsSource(p.ast), validator: p.validator, maxLength: maxLength(p.ast) })));
  return {
    program,
    engine,
    reference,
    /** runs strings through ruleset `rs`; outputs as strings */
    run(inputs: string[], rs = 0): { out: string[]; r: EngineResult; hits: number[][] } {
      const bufs = inputs.map(enc);
      const r = engine.inspect(bufs, rs);
      return {
        r,
        out: bufs.map((b, i) => td.decode(outputOf(r, i, b)!)),
        hits: bufs.map((_, i) => Array.from(r.hits.subarray(r.hitStart[i]!, r.hitStart[i]! + r.hitCount[i]!))),
      };
    },
    one(input: string, rs = 0): string {
      return this.run([input], rs).out[0]!;
    },
  };
}

export const ALL_DETECTORS = DETECTORS.map((d) => d.id);
export const changed = (r: EngineResult, i: number) => (r.flags[i]! & FLAG_CHANGED) !== 0;
