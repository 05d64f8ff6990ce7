import { createHash } from 'node:crypto';
import type { PolicyConfig } from '../config/schema.ts';
import type { Action, Identity, ResourceKind } from '../operation.ts';
import type { VerifiedToken } from '../identity/oidc.ts';

export interface Decision {
  allowed: boolean;
  /** which grant decided (`grants[2]`) or `default-deny` */
  rule: string;
}

interface CompiledGrant {
  index: number;
  roles: Set<string>;
  actions: Set<Action>;
  effect: 'allow' | 'deny';
  patterns: string[];
  groups: string[];
  transactionalIds: string[];
  cluster: boolean;
}

const TEMPLATE = /\{(sub|claim:([A-Za-z0-9_.-]+))\}/g;

/**
 * Claims -> roles -> per-topic actions. Default deny; an explicit deny grant beats any
 * allow. Topic patterns are globs (`*` matches any run of characters) and may name token
 * claims (`tenant-{claim:tenant}.*`, `{sub}.inbox`) for per-tenant isolation.
 */
export class Policy {
  readonly version: string;
  readonly #config: PolicyConfig;
  readonly #grants: CompiledGrant[];
  readonly #regexCache = new Map<string, RegExp>();

  constructor(config: PolicyConfig) {
    this.#config = config;
    this.version = createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 12);
    this.#grants = config.grants.map((g, index) => ({
      index,
      roles: new Set(g.roles),
      actions: new Set(g.actions),
      effect: g.effect,
      patterns: g.topics ?? [],
      groups: g.groups ?? [],
      transactionalIds: g.transactionalIds ?? [],
      cluster: g.cluster ?? false,
    }));
  }

  rolesFor(token: VerifiedToken): string[] {
    const roles: string[] = [];
    for (const [name, { when }] of Object.entries(this.#config.roles)) {
      if (when.groups && !when.groups.some((g) => token.groups.includes(g))) continue;
      if (when.subjects && !when.subjects.includes(token.subject)) continue;
      if (when.scopes && !when.scopes.some((s) => token.scopes.includes(s))) continue;
      if (when.issuers && !when.issuers.includes(token.issuer)) continue;
      if (when.claims && !Object.entries(when.claims).every(([claim, values]) => claimMatches(token.claims[claim], values))) continue;
      roles.push(name);
    }
    return roles;
  }

  /** `kind` picks the grant's pattern list: topics (and streams), groups, transactionalIds, or `cluster: true`. */
  decide(identity: Identity, action: Action, topic: string, kind: ResourceKind = 'topic'): Decision {
    let allowedBy: CompiledGrant | undefined;
    for (const grant of this.#grants) {
      if (!grant.actions.has(action) || !identity.roles.some((r) => grant.roles.has(r))) continue;
      if (kind === 'cluster') {
        if (!grant.cluster) continue;
      } else {
        const patterns = kind === 'group' ? grant.groups : kind === 'transactional-id' ? grant.transactionalIds : grant.patterns;
        if (!patterns.some((p) => this.#matches(p, topic, identity))) continue;
      }
      if (grant.effect === 'deny') return { allowed: false, rule: `grants[${grant.index}]` };
      allowedBy ??= grant;
    }
    return allowedBy ? { allowed: true, rule: `grants[${allowedBy.index}]` } : { allowed: false, rule: 'default-deny' };
  }

  /**
   * Whether `action` is allowed on every name of `kind`: an allow grant of the identity's
   * roles whose pattern is `*`, and no deny grant of its roles for the action on that kind.
   */
  unrestricted(identity: Identity, action: Action, kind: ResourceKind = 'topic'): boolean {
    let all = false;
    for (const grant of this.#grants) {
      if (!grant.actions.has(action) || !identity.roles.some((r) => grant.roles.has(r))) continue;
      const patterns = kind === 'group' ? grant.groups : kind === 'transactional-id' ? grant.transactionalIds : grant.patterns;
      if (kind === 'cluster' ? !grant.cluster : patterns.length === 0) continue;
      if (grant.effect === 'deny') return false;
      if (kind === 'cluster' || patterns.includes('*')) all = true;
    }
    return all;
  }

  #matches(pattern: string, topic: string, identity: Identity): boolean {
    let glob = pattern;
    if (pattern.includes('{')) {
      let unresolved = false;
      glob = pattern.replace(TEMPLATE, (_m, what: string, claim?: string) => {
        const value = claim === undefined ? identity.subject : identity.claims[claim];
        if (typeof value !== 'string' && typeof value !== 'number') {
          unresolved = true;
          return '';
        }
        // a claim value is a literal, never a pattern: escape glob characters
        return String(value).replace(/[*\\]/g, '\\$&');
      });
      if (unresolved) return false; // a template that cannot be filled never matches
    }
    let re = this.#regexCache.get(glob);
    if (!re) {
      re = globToRegExp(glob);
      if (this.#regexCache.size > 10_000) this.#regexCache.clear();
      this.#regexCache.set(glob, re);
    }
    return re.test(topic);
  }
}

function claimMatches(value: unknown, accepted: ReadonlyArray<string | number | boolean>): boolean {
  if (Array.isArray(value)) return value.some((v) => accepted.includes(v as string));
  return accepted.includes(value as string);
}

export function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '\\' && i + 1 < glob.length) source += escapeRegExp(glob[++i]!);
    else if (c === '*') source += '.*';
    else source += escapeRegExp(c);
  }
  return new RegExp(`^${source}$`, 's');
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}
