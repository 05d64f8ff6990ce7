import { createHash } from 'node:crypto';
import type { ApprovalRules } from '../approvals/rules.ts';
import type { ApprovalRequest, ApprovalService, ApprovalStatus } from '../approvals/service.ts';
import { GatewayError, type Control, type Intent, type Next, type Operation, type RecordNeeds, type UpstreamResult } from '../operation.ts';

const VERB = { produce: 'produce to', consume: 'consume from', describe: 'describe', admin: 'administer' } as const;

/**
 * A held operation that was not released: refused as `forbidden` with the approval (id, URL,
 * status) as a typed field and its URL in the message; each listener renders it its own way.
 */
export class ApprovalRefusal extends GatewayError {
  constructor(message: string, rule: string, approval: { id: string; url: string; status: ApprovalStatus }) {
    super('forbidden', message, { rule: `approval:${rule}`, approval });
  }
}

/**
 * The approve control: an operation an approval rule covers runs only under an active
 * grant. Without one it opens (or joins) an approval request and is held until a
 * decision or the hold bound: the rule's maxWait, below how long the client waits for its
 * answer where the listener knows (`Operation.answerWithinMs`). Released operations
 * carry the approval (= grant) id into their audit row.
 */
export class Approve implements Control {
  readonly name = 'approve';
  readonly #rules: () => ApprovalRules;
  readonly #service: ApprovalService;

  constructor(rules: () => ApprovalRules, service: ApprovalService) {
    this.#rules = rules;
    this.#service = service;
  }

  handle(op: Operation, next: Next): Promise<UpstreamResult> {
    // the common case costs nothing: no approval rules at all
    if (this.#rules().size === 0 && !op.beyondGrants) return next(op);
    return this.#gate(op, next);
  }

  needs(intent: Intent, needs: RecordNeeds): void {
    if (this.#rules().size > 0 && this.#rules().match(intent.identity, intent.action, intent.resource)) needs.mayHold = true;
  }

  async #gate(op: Operation, next: Next): Promise<UpstreamResult> {
    try {
      await this.#admit(op);
    } catch (err) {
      // fail closed, and say why: an unreachable state store (Redis) refuses with 503, never lets the operation through
      if (err instanceof GatewayError) throw err;
      throw new GatewayError('upstream-unavailable', `approval state is unavailable: ${(err as Error).message}`, { cause: err });
    }
    return next(op);
  }

  /** Resolves when the operation may go on (no rule, an active grant, or released by an approval); throws a refusal otherwise. */
  async #admit(op: Operation): Promise<void> {
    const identity = op.identity;
    if (!identity) throw new GatewayError('unauthenticated', 'no identity: authenticate must run before approve');
    const beyond = op.beyondGrants === true;
    const rule = this.#rules().match(identity, op.action, op.resource);
    if (!rule) {
      // fail closed: authorize let it through for an approval rule that is gone (policy reloaded in between)
      if (beyond) throw new GatewayError('forbidden', `${identity.subject} may not ${VERB[op.action]} ${op.resource.kind} "${op.resource.name}"`, { rule: 'default-deny' });
      return;
    }
    const what = `${VERB[op.action]} ${op.resource.kind} "${op.resource.name}"`;
    const grant = await this.#service.activeGrant(identity, op.action, op.resource, rule);
    if (grant) {
      op.meta.approval = grant.id;
      op.meta.grant = `approval:${grant.rule}`;
      op.meta.grant_expires_at = new Date(grant.expiresAt).toISOString();
      return;
    }
    const { request } = await this.#service.open(op, rule, sampleHash(op));
    op.meta.approval = request.id;
    const hold = holdMs(op, rule.maxWait);
    const started = performance.now();
    const decided = hold > 0 && !op.signal?.aborted ? await this.#service.waitForDecision(request.id, hold, op.signal) : request;
    op.meta.held_ms = Math.round(performance.now() - started);
    const url = this.#service.url(request.id);
    const status = decided?.status ?? 'expired';
    if (op.signal?.aborted) {
      // nobody waits for the answer any more: a late release would write what the client may already retry
      op.meta.approval_outcome = 'client-gone';
      throw new ApprovalRefusal(`${identity.subject} closed the connection while the operation waited for approval ${request.id}; it was not performed`, rule.id, { id: request.id, url, status });
    }
    if (status === 'approved' && decided!.grantExpiresAt! > Date.now()) {
      op.meta.approval_outcome = 'released';
      op.meta.grant = `approval:${rule.id}`;
      op.meta.grant_expires_at = new Date(decided!.grantExpiresAt!).toISOString();
      return;
    }
    op.meta.approval_outcome = status;
    throw new ApprovalRefusal(refusalMessage(identity.subject, what, rule.id, decided ?? request, status, url), rule.id, { id: request.id, url, status });
  }
}

function refusalMessage(subject: string, what: string, rule: string, request: ApprovalRequest, status: ApprovalStatus, url: string): string {
  switch (status) {
    case 'denied':
      return `${subject} may not ${what}: approval ${request.id} was denied by ${request.decidedBy ?? 'an approver'}${request.reason ? ` (${request.reason})` : ''}`;
    case 'expired':
      return `${subject} may not ${what}: approval ${request.id} expired without a decision`;
    case 'approved':
      return `${subject} may not ${what}: the grant of approval ${request.id} has expired`;
    default:
      return `${subject} needs an approval to ${what} (rule ${rule}): approval ${request.id} is pending at ${url}; retry once it is approved`;
  }
}

/** How long to hold: the rule's maxWait, bounded by how long the client waits for its answer (the listener says). */
function holdMs(op: Operation, maxWait: number): number {
  return op.answerWithinMs === undefined ? maxWait : Math.max(0, Math.min(maxWait, op.answerWithinMs));
}

/** SHA-256 of the first record's value, or the listener's hash of the record batches it forwards undecoded. */
function sampleHash(op: Operation): string {
  const first = op.records?.[0];
  if (first) return createHash('sha256').update(first.value ?? new Uint8Array(0)).digest('hex');
  return op.batch?.hash ?? '';
}
