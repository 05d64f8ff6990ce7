import { GatewayError, type Action, type Identity, type Resource, type ResourceKind, type ScopeItem } from '../operation.ts';
import { globToRegExp } from '../policy/policy.ts';

/**
 * The scope of a just-in-time credential: space-separated `action:pattern` items (OAuth
 * scope syntax). The pattern is a topic/stream glob (`produce:orders`, `consume:payments.*`);
 * other resources are named by kind: `consume:group:analytics-*`,
 * `produce:transactional-id:payments-*`, `admin:cluster`. Producing or consuming a topic
 * implies describing it (clients need its metadata). A scope only narrows: an operation must
 * be inside the scope AND allowed by the policy (or an approved grant).
 */
export type { ScopeItem };

const ACTIONS = new Set<Action>(['produce', 'consume', 'describe', 'admin']);
const KINDS = new Set(['group', 'transactional-id']);

/** Parses a scope string; throws a message naming the bad item. */
export function parseScope(scope: string): ScopeItem[] {
  const items: ScopeItem[] = [];
  for (const raw of scope.split(' ')) {
    if (raw === '') continue;
    const first = raw.indexOf(':');
    const action = raw.slice(0, first) as Action;
    if (first <= 0 || !ACTIONS.has(action)) throw new Error(`scope item "${raw}" must start with produce:, consume:, describe: or admin:`);
    const rest = raw.slice(first + 1);
    if (rest === 'cluster') {
      items.push({ action, kind: 'cluster', pattern: '*' });
      continue;
    }
    const second = rest.indexOf(':');
    const kind = second > 0 ? rest.slice(0, second) : undefined;
    if (kind !== undefined && KINDS.has(kind)) {
      const pattern = rest.slice(second + 1);
      if (pattern === '') throw new Error(`scope item "${raw}" names no ${kind}`);
      items.push({ action, kind: kind as ScopeItem['kind'], pattern });
    } else {
      if (rest === '') throw new Error(`scope item "${raw}" names no topic`);
      items.push({ action, kind: 'topic', pattern: rest });
    }
  }
  return items;
}

export function formatScope(items: readonly ScopeItem[]): string {
  return items.map(formatItem).join(' ');
}

export function formatItem(item: ScopeItem): string {
  if (item.kind === 'cluster') return `${item.action}:cluster`;
  return item.kind === 'topic' ? `${item.action}:${item.pattern}` : `${item.action}:${item.kind}:${item.pattern}`;
}

const regexCache = new Map<string, RegExp>();
function globMatches(pattern: string, name: string): boolean {
  let re = regexCache.get(pattern);
  if (!re) {
    if (regexCache.size > 10_000) regexCache.clear();
    regexCache.set(pattern, (re = globToRegExp(pattern)));
  }
  return re.test(name);
}

function scopeKind(kind: ResourceKind): ScopeItem['kind'] {
  return kind === 'stream' ? 'topic' : kind;
}

/** Whether `action` on `resource` is inside `items`. */
export function inScope(items: readonly ScopeItem[], action: Action, resource: Pick<Resource, 'kind' | 'name'>): boolean {
  const kind = scopeKind(resource.kind);
  for (const item of items) {
    if (item.kind !== kind) continue;
    const actionOk = item.action === action || (action === 'describe' && kind === 'topic' && (item.action === 'produce' || item.action === 'consume'));
    if (!actionOk) continue;
    if (kind === 'cluster' || globMatches(item.pattern, resource.name)) return true;
  }
  return false;
}

/** The refusal for an operation outside the identity's credential scope, or undefined when inside (or not a scoped credential). */
export function scopeRefusal(identity: Identity, action: Action, resource: Pick<Resource, 'kind' | 'name'>): GatewayError | undefined {
  const scope = identity.credentialScope;
  if (scope === undefined || inScope(scope, action, resource)) return undefined;
  return new GatewayError('forbidden', `${action} on ${resource.kind} "${resource.name}" is outside the credential's scope "${formatScope(scope)}"`, { rule: 'credential-scope' });
}
