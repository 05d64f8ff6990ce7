import type { Action, Identity, Resource } from '../operation.ts';
import { globToRegExp } from '../policy/policy.ts';
import type { ApprovalRule } from './schema.ts';

interface CompiledRule {
  rule: ApprovalRule;
  actions: Set<Action>;
  topics: RegExp[];
  groups: RegExp[];
  transactionalIds: RegExp[];
  requesters: Set<string> | undefined;
}

/**
 * policy.approvals compiled: which operations wait for a human. The first rule whose
 * action, resource glob and requester roles match decides.
 */
export class ApprovalRules {
  readonly #rules: CompiledRule[];

  constructor(rules: readonly ApprovalRule[]) {
    this.#rules = rules.map((rule) => ({
      rule,
      actions: new Set(rule.actions),
      topics: (rule.topics ?? []).map(globToRegExp),
      groups: (rule.groups ?? []).map(globToRegExp),
      transactionalIds: (rule.transactionalIds ?? []).map(globToRegExp),
      requesters: rule.requesters ? new Set(rule.requesters) : undefined,
    }));
  }

  get size(): number {
    return this.#rules.length;
  }

  byId(id: string): ApprovalRule | undefined {
    return this.#rules.find((r) => r.rule.id === id)?.rule;
  }

  match(identity: Identity, action: Action, resource: Pick<Resource, 'kind' | 'name'>): ApprovalRule | undefined {
    for (const c of this.#rules) {
      if (!c.actions.has(action)) continue;
      if (c.requesters && !identity.roles.some((r) => c.requesters!.has(r))) continue;
      const patterns = resource.kind === 'cluster' ? undefined : resource.kind === 'group' ? c.groups : resource.kind === 'transactional-id' ? c.transactionalIds : c.topics;
      if (patterns ? patterns.some((p) => p.test(resource.name)) : c.rule.cluster === true) return c.rule;
    }
    return undefined;
  }
}
