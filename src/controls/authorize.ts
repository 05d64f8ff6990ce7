import { GatewayError, type Action, type Control, type Identity, type Intent, type Next, type Operation, type RecordNeeds, type Resource, type UpstreamResult } from '../operation.ts';
import type { Policy } from '../policy/policy.ts';
import { scopeRefusal } from '../jit/scope.ts';

const VERB = { produce: 'produce to', consume: 'consume from', describe: 'describe', admin: 'administer' } as const;

/** Default-deny check of the identity's roles against the policy grants. */
export class Authorize implements Control {
  readonly name = 'authorize';
  readonly #policy: () => Policy;
  /** true when an approval rule covers the operation: a default deny then waits for a human (the approve control) */
  readonly #approvable: ((intent: Intent) => boolean) | undefined;

  constructor(policy: () => Policy, approvable?: (intent: Intent) => boolean) {
    this.#policy = policy;
    this.#approvable = approvable;
  }

  handle(op: Operation, next: Next): Promise<UpstreamResult> {
    const identity = op.identity;
    if (!identity) return Promise.reject(new GatewayError('unauthenticated', 'no identity: authenticate must run before authorize'));
    // a just-in-time credential narrows whatever the policy or a grant allows to its own scope
    const outOfScope = scopeRefusal(identity, op.action, op.resource);
    if (outOfScope) return Promise.reject(outOfScope);
    const decision = this.#policy().decide(identity, op.action, op.resource.name, op.resource.kind);
    if (!decision.allowed) {
      // beyond the baseline, not explicitly denied: the approve control holds it for a human
      if (decision.rule === 'default-deny' && this.#approvable?.(op as Intent)) {
        op.beyondGrants = true;
        op.meta.baseline = 'beyond'; // for the audit row
        return next(op);
      }
      return Promise.reject(
        new GatewayError('forbidden', `${identity.subject} may not ${VERB[op.action]} ${op.resource.kind} "${op.resource.name}"`, { rule: decision.rule }),
      );
    }
    op.meta.grant = decision.rule;
    return next(op);
  }

  needs(intent: Intent, needs: RecordNeeds): void {
    if (this.permits(intent.identity, intent.action, intent.resource)) return;
    if (scopeRefusal(intent.identity, intent.action, intent.resource) || this.#policy().decide(intent.identity, intent.action, intent.resource.name, intent.resource.kind).rule !== 'default-deny' || !this.#approvable?.(intent)) {
      needs.mayGo = false;
    }
  }

  /** The grants' answer (within a just-in-time credential's scope), without an operation: for filtering listings. */
  permits(identity: Identity, action: Action, resource: Resource): boolean {
    if (scopeRefusal(identity, action, resource)) return false;
    return this.#policy().decide(identity, action, resource.name, resource.kind).allowed;
  }
}
