import type { InspectionConfig } from '../config/schema.ts';
import { globToRegExp } from '../policy/policy.ts';
import { compileProgram, type CompiledProgram, type RuleSpec, type RulesetSpec } from './compile/program.ts';
import { STOP_MALFORMED_JSON } from './engine.ts';
import { factName, factReason, isFact, MAX_PROTECT_RULE_INDEX, readFact, type ProtectRule } from '../protect/protector.ts';
import type { InspectionRuleConfig, TopicEntryConfig } from './schema.ts';
import type { ValueSpec } from './values.ts';

export type Side = 'produce' | 'consume';

/**
 * The compiled rulesets for the parts of a record besides its value (applied by
 * inspect/key-headers.ts in the same engine call as the values). NO_RULES where none apply.
 */
export interface KeyHeaderRulesets {
  key: number;
  headerName: number;
  /** values of headers that no rule names */
  headerValue: number;
  /** values of headers that a rule names (`headers.<name>`), by exact name */
  headerValueByName: Map<string, number>;
}

/** The inspection a topic, side and reader needs; `null` from rulesFor means passthrough. */
export interface ResolvedRules {
  /** compiled ruleset index for the values, passed to the engine per record (NO_RULES when only keys or headers have rules) */
  ruleset: number;
  /** rule ids in order (also what the audit row's masking summary is keyed by) */
  rules: string[];
  /** null: no rule applies to keys or headers, only the values go to the engine */
  keyHeaders: KeyHeaderRulesets | null;
  /** the topic's values are schema-registry values (inspect/values.ts); null: JSON or text */
  values: ValueSpec | null;
}

/** The rule id an audit row and an error name for a value refused because it does not parse (no config rule can have it: rule ids are lowercase). */
export const MALFORMED_JSON_RULE = 'inspection.malformedJson';

const hasMatch = (r: InspectionRuleConfig): boolean => r.detector !== undefined || r.pattern !== undefined;
/** what an envelope looks like (src/protect/envelope.ts): a decrypt rule of an envelope rule with nothing else to go by finds them by it */
const ENVELOPE_PATTERN = 'sge1\\.[0-9]{1,5}\\.[A-Za-z0-9_-]{38,}';
/** the same for envelopes under a data subject's key (src/protect/subjects.ts) */
const SUBJECT_ENVELOPE_PATTERN = 'sgs1\\.[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{8}\\.[A-Za-z0-9_-]{38,}';
/** rules that select schema fields by tag act on nothing else */
const byTags = (r: InspectionRuleConfig): boolean => r.tags !== undefined;
/** at most this many tag rules per topic entry and side: every subset of them is a compiled ruleset */
export const MAX_TAG_RULES = 4;
/** what a tag rule without a detector or pattern matches in a tagged field: all of it */
const WHOLE_FIELD = { pattern: '.+', flags: 's' } as const;
// Without targets a rule acts on values as configured, and its detector or pattern also
// applies to keys, header names and header values; a whole-value field rule stays with values.
const forValue = (r: InspectionRuleConfig): boolean => !byTags(r) && (!r.targets || r.targets.includes('value'));
const forKey = (r: InspectionRuleConfig): boolean => !byTags(r) && (r.targets ? r.targets.includes('key') : hasMatch(r));
const forHeaderName = (r: InspectionRuleConfig): boolean => !byTags(r) && !r.targets && hasMatch(r);
const forHeaderValue = (r: InspectionRuleConfig, name: string | null): boolean =>
  !byTags(r) && (r.targets ? r.targets.includes('headers.*') || (name !== null && r.targets.includes(`headers.${name}`)) : hasMatch(r));

export interface Limits {
  maxRecordBytes: number;
  maxBatchBytes: number;
}

interface Entry {
  patterns: RegExp[];
  limits: Limits;
  produce: ResolvedRules | null;
  consume: Array<{ roles: Set<string> | null; rules: ResolvedRules | null }>;
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
  /** per program rule index (config rules, then the text forms of tag rules): id and action */
  readonly #ids: string[];
  readonly #actions: InspectionRuleConfig['action'][];
  readonly #entries: Entry[];
  readonly #defaultLimits: Limits;
  readonly #cache = new Map<string, ResolvedRules | null>();
  /** per program rule index: the encrypt / decrypt rule the protector applies, null for others */
  readonly protectRules: Array<ProtectRule | null>;

  constructor(given: InspectionConfig) {
    const config = withEnvelopePatterns(given);
    this.#defaultLimits = config.limits;
    const index = new Map(config.rules.map((r, i) => [r.id, i]));
    // a tag rule also compiles as a text rule over one tagged field (its detector or pattern,
    // or the whole field): program rule config.rules.length + k, named by the same id
    const tagRules = config.rules.filter(byTags);
    const tagIndex = new Map(tagRules.map((r, k) => [r.id, config.rules.length + k]));
    this.#ids = [...config.rules.map((r) => r.id), ...tagRules.map((r) => r.id)];
    this.#actions = [...config.rules.map((r) => r.action), ...tagRules.map((r) => r.action)];
    const rulesets: RulesetSpec[] = [{ rules: [], format: 'text' }];
    const seen = new Map<string, number>();
    const rulesetOfIndexes = (indexes: number[], format: RulesetSpec['format'], malformedJson: 'scan' | 'block'): number => {
      if (indexes.length === 0) return NO_RULES;
      const key = `${format}|${malformedJson}|${indexes.join(',')}`;
      let k = seen.get(key);
      if (k === undefined) {
        k = rulesets.length;
        rulesets.push({ rules: indexes, format, malformedJson });
        seen.set(key, k);
      }
      return k;
    };
    const rulesetOf = (ids: string[], format: RulesetSpec['format'], malformedJson: 'scan' | 'block'): number => rulesetOfIndexes(ids.map((id) => index.get(id)!), format, malformedJson);
    const valueSpec = (t: TopicEntryConfig, listed: InspectionRuleConfig[], side: Side): ValueSpec | null => {
      if (!t.schema) return null;
      const tagged = listed.filter(byTags);
      const tagRulesets = [NO_RULES];
      for (let mask = 1; mask < 1 << tagged.length; mask++) {
        tagRulesets.push(rulesetOfIndexes(tagged.filter((_, b) => (mask & (1 << b)) !== 0).map((r) => tagIndex.get(r.id)!), 'text', 'scan'));
      }
      return {
        framing: t.schema.framing,
        // validation is of what is written; stored records are read as they are
        required: side === 'produce' && t.schema.required,
        undecodable: t.schema.undecodable,
        numbers: t.schema.numbers,
        subjects: side === 'produce' ? (t.schema.subjects ?? null) : null,
        typedRules: listed
          .filter((r) => ['hash', 'tokenize', 'encrypt', 'decrypt'].includes(r.action.type) && !hasMatch(r) && (r.fields !== undefined || r.tags !== undefined) && (r.tags !== undefined || forValue(r)))
          .map((r) => ({ id: r.id, action: r.action.type, fields: r.fields ?? null, tags: r.tags ?? null })),
        viewRuleset: rulesetOf(listed.filter(forValue).map((r) => r.id), 'json', 'block'),
        tagRules: tagged.map((r) => r.tags!),
        tagRulesets,
      };
    };
    const resolve = (t: TopicEntryConfig, ids: string[], side: Side): ResolvedRules | null => {
      const format = t.format ?? config.format;
      const malformedJson = t.malformedJson ?? config.malformedJson;
      const listed = ids.map((id) => config.rules[index.get(id)!]!);
      const pick = (keep: (r: InspectionRuleConfig) => boolean) => listed.filter(keep).map((r) => r.id);
      // a key or header value may be JSON while another is not: auto unless the topic says text
      const partFormat = format === 'text' ? 'text' : 'auto';
      const named = new Set(listed.flatMap((r) => (r.targets ?? []).filter((t) => t.startsWith('headers.') && t !== 'headers.*').map((t) => t.slice('headers.'.length))));
      const keyHeaders: KeyHeaderRulesets = {
        key: rulesetOf(pick(forKey), partFormat, malformedJson),
        headerName: rulesetOf(pick(forHeaderName), 'text', malformedJson),
        headerValue: rulesetOf(pick((r) => forHeaderValue(r, null)), partFormat, malformedJson),
        headerValueByName: new Map([...named].map((name) => [name, rulesetOf(pick((r) => forHeaderValue(r, name)), partFormat, malformedJson)])),
      };
      const ruleset = rulesetOf(pick(forValue), format, malformedJson);
      const anyKeyHeader = keyHeaders.key !== NO_RULES || keyHeaders.headerName !== NO_RULES || keyHeaders.headerValue !== NO_RULES || keyHeaders.headerValueByName.size > 0;
      const values = valueSpec(t, listed, side);
      // a topic that requires registered schemas decodes its values even with no rule to apply
      if (ruleset === NO_RULES && !anyKeyHeader && !values?.required && !(values && values.tagRules.length > 0)) return null;
      return { ruleset, rules: ids, keyHeaders: anyKeyHeader ? keyHeaders : null, values };
    };
    this.#entries = config.topics.map((t) => ({
      patterns: t.topics.map(globToRegExp),
      limits: { ...config.limits, ...t.limits },
      produce: resolve(t, t.produce, 'produce'),
      consume: t.consume.map((c) => ({ roles: c.roles ? new Set(c.roles) : null, rules: resolve(t, c.rules, 'consume') })),
    }));
    const programRules = [...config.rules, ...tagRules];
    if (programRules.length > MAX_PROTECT_RULE_INDEX + 1 && programRules.some(isProtect)) throw new Error(`at most ${MAX_PROTECT_RULE_INDEX + 1} inspection rules when some encrypt or decrypt`);
    this.protectRules = programRules.map((r) => protectRule(r, config));
    const tk = config.tokenization;
    this.program = compileProgram({
      rules: [...config.rules.map(toSpec), ...tagRules.map((r) => ({ ...toSpec(r), match: toSpec(r).match ?? WHOLE_FIELD, fields: null }))],
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
    if (side === 'produce') return entry.produce;
    const chosen = entry.consume.find((c) => c.roles && roles.some((r) => c.roles!.has(r))) ?? entry.consume.find((c) => c.roles === null);
    return chosen?.rules ?? null;
  }

  /** Every schema section's spec with the topic globs it serves (for checks at start). */
  valueSpecs(): Array<{ patterns: RegExp[]; spec: ValueSpec }> {
    return this.#entries.flatMap((e) => [e.produce, ...e.consume.map((c) => c.rules)].flatMap((r) => (r?.values ? [{ patterns: e.patterns, spec: r.values }] : [])));
  }

  /** Size limits for records produced to `topic`. */
  limitsFor(topic: string): Limits {
    return this.#entry(topic)?.limits ?? this.#defaultLimits;
  }

  #entry(topic: string): Entry | undefined {
    return this.#entries.find((e) => e.patterns.some((p) => p.test(topic)));
  }

  /**
   * Rule id of a compiled rule index (engine results name rules by index); an encrypt or decrypt
   * rule's facts read as `<id>@v<key version>` when done and `<id>!<why not>` when not.
   */
  ruleId(index: number): string {
    if (index === STOP_MALFORMED_JSON) return MALFORMED_JSON_RULE;
    if (isFact(index)) return factName(this.#ids[readFact(index).rule] ?? '#', index);
    return this.#ids[index] ?? `#${index}`;
  }

  /** Whether a hit word is a value a decrypt rule revealed in clear. */
  isReveal(word: number): boolean {
    if (!isFact(word)) return false;
    const f = readFact(word);
    return f.outcome === 'ok' && this.protectRules[f.rule]?.mode === 'decrypt';
  }

  /** The block reason of a rule, for the error returned to the client. */
  blockReason(index: number): string {
    if (index === STOP_MALFORMED_JSON) return 'the value is not valid JSON (malformed, nested deeper than 512 levels, or followed by other data) and this topic\'s rules need it parsed';
    if (isFact(index)) return factReason(index);
    const a = this.#actions[index];
    return a?.type === 'block' ? a.reason : 'blocked by an inspection rule';
  }
}

/** Decrypt rules of envelope rules that say nothing about where to look get the envelope's pattern. */
function withEnvelopePatterns(config: InspectionConfig): InspectionConfig {
  const envelope = new Map(config.rules.flatMap((r) => (r.action.type === 'encrypt' && r.action.format === 'envelope' ? [[r.id, r.action.subject ? SUBJECT_ENVELOPE_PATTERN : ENVELOPE_PATTERN] as const] : [])));
  const rules = config.rules.map((r) =>
    r.action.type === 'decrypt' && envelope.has(r.action.rule) && !r.detector && !r.pattern && !r.fields && !r.tags ? { ...r, pattern: envelope.get(r.action.rule)! } : r,
  );
  return { ...config, rules };
}

const isProtect = (r: InspectionRuleConfig): boolean => r.action.type === 'encrypt' || r.action.type === 'decrypt';

function protectRule(r: InspectionRuleConfig, config: InspectionConfig): ProtectRule | null {
  const a = r.action;
  if (a.type !== 'encrypt' && a.type !== 'decrypt') return null;
  const enc = a.type === 'encrypt' ? a : config.rules.find((x) => x.id === a.rule)!.action;
  if (enc.type !== 'encrypt') throw new Error(`rule "${r.id}": "${a.type === 'decrypt' ? a.rule : r.id}" is not an encrypt rule`);
  return {
    id: r.id,
    mode: a.type,
    format: enc.format,
    binding: a.type === 'encrypt' ? r.id : a.rule,
    keepFirst: enc.keepFirst,
    keepLast: enc.keepLast,
    luhn: enc.luhn,
    keyVersion: enc.format === 'preserve' ? (enc.keyVersion ?? null) : null,
    onFailure: a.type === 'decrypt' ? a.onFailure : '',
    subject: enc.format === 'envelope' ? (enc.subject ?? null) : null,
  };
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
      : a.type === 'encrypt' || a.type === 'decrypt' ? { type: 'protect' }
      : { type: 'block', reason: a.reason },
  };
}
