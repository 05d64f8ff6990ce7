import type { InspectionConfig } from '../config/schema.ts';
import { globToRegExp } from '../policy/policy.ts';

/** What inspection a topic needs on the produce side; `null` means passthrough. */
export interface TopicRules {
  /** rule id that masks payment cards, when one applies */
  cardRule: string | null;
}

/**
 * Resolves topic names to the rules that apply, first matching entry wins, cached per
 * topic so the data path pays one Map lookup.
 */
export class RuleBook {
  readonly #entries: Array<{ patterns: RegExp[]; rules: TopicRules }>;
  readonly #cache = new Map<string, TopicRules | null>();

  constructor(config: InspectionConfig) {
    const byId = new Map(config.rules.map((r) => [r.id, r]));
    this.#entries = config.topics.map((t) => {
      let cardRule: string | null = null;
      for (const id of t.produce) if (byId.get(id)?.detector === 'payment-card') cardRule = id;
      return { patterns: t.topics.map(globToRegExp), rules: { cardRule } };
    });
  }

  produceRules(topic: string): TopicRules | null {
    let rules = this.#cache.get(topic);
    if (rules === undefined) {
      rules = this.#entries.find((e) => e.patterns.some((p) => p.test(topic)))?.rules ?? null;
      if (rules && rules.cardRule === null) rules = null;
      if (this.#cache.size > 100_000) this.#cache.clear();
      this.#cache.set(topic, rules);
    }
    return rules;
  }
}
