import type { InspectionConfig } from '../config/schema.ts';
import { globToRegExp } from '../policy/policy.ts';
import { compileProgram, type CompiledProgram, type RuleSpec, type RulesetSpec } from './compile/program.ts';
import type { InspectionRuleConfig } from './schema.ts';

export type Side = 'produce' | 'consume';

/** The inspection a topic, side and reader needs; `null` from rulesFor means passthrough. */
export interface ResolvedRules {
  /** compiled ruleset index, passed to the engine per record */
  ruleset: number;
  /** rule ids in order (also what the audit row's masking summary is keyed by) */
  rules: string[];
}

export interface Limits {
  maxRecordBytes: number;
  maxBatchBytes: number;
}

interface Entry {
  patterns: RegExp[];
  limits: Limits;
  produce: number | null;
  consume: Array<{ roles: Set<string> | null; ruleset: number | null }>;
}

/** Ruleset 0 is always "no rules": records that are only hashed. */
export const NO_RULES = 0;

/**
 * Compiles the inspection rules once (one automaton program for all of them) and
 * resolves topics to rulesets: per topic, the first matching entry wins; produce has one
 * rule list, consume one per reader role with a default. Cached per topic/side/roles so
 * the data path pays one Map lookup.
 */
export class RuleBook {
  readonly program: CompiledProgram;
  readonly #rules: InspectionRuleConfig[];
  readonly #rulesetRules: string[][];
  readonly #entries: Entry[];
  readonly #defaultLimits: Limits;
  readonly #cache = new Map<string, ResolvedRules | null>();

  constructor(config: InspectionConfig) {
    this.#rules = config.rules;
    this.#defaultLimits = config.limits;
    const index = new Map(config.rules.map((r, i) => [r.id, i]));
    const rulesets: RulesetSpec[] = [{ rules: [], format: 'text' }];
    this.#rulesetRules = [[]];
    const seen = new Map<string, number>();
    const rulesetOf = (ids: string[], format: RulesetSpec['format']): number | null => {
      if (ids.length === 0) return null;
      const key = `${format}|${ids.join(',')}`;
      let k = seen.get(key);
      if (k === undefined) {
        k = rulesets.length;
        rulesets.push({ rules: ids.map((id) => index.get(id)!), format });
        this.#rulesetRules.push(ids);
        seen.set(key, k);
      }
      return k;
    };
    this.#entries = config.topics.map((t) => {
      const format = t.format ?? config.format;
      return {
        patterns: t.topics.map(globToRegExp),
        limits: { ...config.limits, ...t.limits },
        produce: rulesetOf(t.produce, format),
        consume: t.consume.map((c) => ({ roles: c.roles ? new Set(c.roles) : null, ruleset: rulesetOf(c.rules, format) })),
      };
    });
    const tk = config.tokenization;
    this.program = compileProgram({
      rules: config.rules.map(toSpec),
      rulesets,
      keys: (tk?.keys ?? []).map((k) => ({ version: k.version, secret: new TextEncoder().encode(k.secret) })),
      activeKey: tk?.active ?? null,
    });
  }

  /**
   * The rules for records of `topic` on `side`; for consume, per reader: the first
   * consume entry sharing one of `roles`, else the entry without roles.
   */
  rulesFor(topic: string, side: Side, roles: readonly string[] = []): ResolvedRules | null {
    const key = side === 'produce' ? `p\0${topic}` : `c\0${topic}\0${roles.join('\0')}`;
    let r = this.#cache.get(key);
    if (r === undefined) {
      r = this.#resolve(topic, side, roles);
      if (this.#cache.size > 100_000) this.#cache.clear();
      this.#cache.set(key, r);
    }
    return r;
  }

  #resolve(topic: string, side: Side, roles: readonly string[]): ResolvedRules | null {
    const entry = this.#entry(topic);
    if (!entry) return null;
    let ruleset: number | null = null;
    if (side === 'produce') ruleset = entry.produce;
    else {
      const chosen = entry.consume.find((c) => c.roles && roles.some((r) => c.roles!.has(r))) ?? entry.consume.find((c) => c.roles === null);
      ruleset = chosen?.ruleset ?? null;
    }
    return ruleset === null ? null : { ruleset, rules: this.#rulesetRules[ruleset]! };
  }

  /** Size limits for records produced to `topic`. */
  limitsFor(topic: string): Limits {
    return this.#entry(topic)?.limits ?? this.#defaultLimits;
  }

  #entry(topic: string): Entry | undefined {
    return this.#entries.find((e) => e.patterns.some((p) => p.test(topic)));
  }

  /** Rule id of a compiled rule index (engine results name rules by index). */
  ruleId(index: number): string {
    return this.#rules[index]?.id ?? `#${index}`;
  }

  /** The block reason of a rule, for the error returned to the client. */
  blockReason(index: number): string {
    const a = this.#rules[index]?.action;
    return a?.type === 'block' ? a.reason : 'blocked by an inspection rule';
  }
}

function toSpec(r: InspectionRuleConfig): RuleSpec {
  const a = r.action;
  return {
    id: r.id,
    match: r.detector ? { detector: r.detector } : r.pattern ? { pattern: r.pattern, ...(r.flags ? { flags: r.flags } : {}) } : null,
    fields: r.fields ?? null,
    action:
      a.type === 'mask' ? { type: 'mask', keepLast: a.keepLast, keepFirst: a.keepFirst, char: a.char }
      : a.type === 'redact' ? { type: 'redact', replacement: a.replacement }
      : a.type === 'hash' ? { type: 'hash', length: a.length }
      : a.type === 'tokenize' ? { type: 'tokenize', format: a.format, keepLast: a.keepLast, prefix: a.prefix }
      : a.type === 'drop' ? { type: 'drop' }
      : { type: 'block', reason: a.reason },
  };
}
