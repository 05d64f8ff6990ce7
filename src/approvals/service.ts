import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { v7 as uuidv7 } from 'uuid';
import type { AuditEvent, AuditRow } from '../audit/row.ts';
import type { Action, Identity, Operation, ResourceKind } from '../operation.ts';
import type { StateStore } from '../state/store.ts';
import type { ApprovalRules } from './rules.ts';
import type { ApprovalRule, ApprovalsConfig } from './schema.ts';
import { Webhook } from './webhook.ts';

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired';

/** One request for a human decision, as stored (JSON) and as the API shows it. */
export interface ApprovalRequest {
  id: string;
  rule: string;
  status: ApprovalStatus;
  subject: string;
  issuer: string;
  roles: string[];
  action: Action;
  resource: { kind: ResourceKind; name: string };
  protocol: string;
  clientId: string;
  clientAddress: string;
  /** HTTP X-Streamgate-Justification; Kafka: none (the client id is shown instead) */
  justification: string;
  /** SHA-256 hex of the first record's value (Kafka passthrough: of the record batches); '' without records */
  sampleHash: string;
  records: number;
  /** roles that may decide, as the rule said when the request was made */
  approvers: string[];
  grantTtlMs: number;
  /** `rule`: the grant covers every resource of the rule, not only this one */
  grantScope: 'resource' | 'rule';
  instance: string;
  createdAt: number;
  expiresAt: number;
  decidedBy?: string;
  decidedAt?: number;
  reason?: string;
  grantExpiresAt?: number;
}

/** An approved, time-boxed permission for one subject, action and resource; its id is the approval's. */
export interface Grant {
  id: string;
  rule: string;
  subject: string;
  approvedBy: string;
  expiresAt: number;
}

/** A refusal of an approver's call, with the HTTP status the API answers. */
export class ApprovalApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'ApprovalApiError';
    this.status = status;
  }
}

type Recorder = (event: Exclude<AuditEvent, 'operation' | 'session-start' | 'session-end'>, fields: Partial<AuditRow>) => Promise<void>;

export interface ApprovalServiceOptions {
  store: StateStore;
  rules: () => ApprovalRules;
  config: () => ApprovalsConfig;
  /** where approvers reach the admin listener (publicUrl, else the admin address once known) */
  baseUrl: () => string;
  instance: string;
  record: Recorder;
  log: Logger;
}

const REQUEST = 'approvals:request:';
const DECISION = 'approvals:decision:';
const PENDING = 'approvals:pending:';
const GRANT = 'approvals:grant:';
const CHANNEL = 'approvals';
/** decided requests stay listable this long after their grant would have ended */
const HISTORY_MS = 3_600_000;
/** a held operation re-reads its request this often, in case a pub/sub message was lost (Redis reconnect) */
const RECHECK_MS = 2000;

const fingerprint = (...parts: string[]) => createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 32);
/** a grant for one resource, or (a rule id) for every resource of that rule */
const grantKey = (issuer: string, subject: string, action: Action, scope: { kind: ResourceKind; name: string } | string) =>
  GRANT + (typeof scope === 'string' ? fingerprint(issuer, subject, action, 'rule', scope) : fingerprint(issuer, subject, action, scope.kind, scope.name));

/**
 * The approval workflow on top of a StateStore, so every instance sharing the store sees
 * the same requests, decisions and grants:
 *
 * - `approvals:pending:<who+what>` -> request id (setIfAbsent: concurrent identical
 *   operations share one request; deleted once it is decided)
 * - `approvals:request:<id>` -> the request (JSON; status updated after a decision)
 * - `approvals:decision:<id>` -> the decision (setIfAbsent: the first of approve, deny
 *   and expiry wins, on whichever instance)
 * - `approvals:grant:<who+what>` -> the grant, with TTL = the rule's grantTtl
 *
 * Every decision is published on the `approvals` channel; held operations on every
 * instance re-read their request when one names it.
 */
export class ApprovalService {
  readonly #o: ApprovalServiceOptions;
  readonly #webhook: Webhook;
  /** request id -> held operations' re-check callbacks */
  readonly #waiters = new Map<string, Set<() => void>>();
  #unsubscribe: (() => Promise<void>) | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #sweeping = false;
  #steps: Counter<'step'> | undefined;
  #held: Gauge | undefined;

  constructor(options: ApprovalServiceOptions) {
    this.#o = options;
    this.#webhook = new Webhook(() => options.config().webhook, options.log);
  }

  /** `registry`: where the approval metrics go (the gateway's Prometheus registry) */
  async start(registry?: Registry): Promise<void> {
    if (registry) {
      this.#steps = new Counter({ name: 'streamgate_approval_steps_total', help: 'Approval steps recorded by this instance: requested, approved, denied, expired, self-approval and not-approver refusals', labelNames: ['step'], registers: [registry] });
      this.#held = new Gauge({ name: 'streamgate_approval_held_operations', help: 'Operations this instance holds waiting for an approval decision', registers: [registry] });
    }
    this.#unsubscribe = await this.#o.store.subscribe(CHANNEL, (message) => {
      let id: string | undefined;
      try {
        id = (JSON.parse(message) as { id?: string }).id;
      } catch {
        return;
      }
      if (id) for (const recheck of this.#waiters.get(id) ?? []) recheck();
    });
    this.#sweeper = setInterval(() => void this.#sweep(), this.#o.config().sweepIntervalMs);
    this.#sweeper.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    await this.#unsubscribe?.().catch(() => {});
    this.#webhook.close();
  }

  url(id: string): string {
    return `${this.#o.baseUrl().replace(/\/+$/, '')}/v1/approvals/${id}`;
  }

  /** The grant that lets this identity do `action` on `resource`: one for the resource itself or, with grantScope rule, one for the whole rule. */
  async activeGrant(identity: Identity, action: Action, resource: { kind: ResourceKind; name: string }, rule?: Pick<ApprovalRule, 'id' | 'grantScope'>): Promise<Grant | undefined> {
    const keys = [grantKey(identity.issuer, identity.subject, action, resource)];
    if (rule?.grantScope === 'rule') keys.push(grantKey(identity.issuer, identity.subject, action, rule.id));
    for (const key of keys) {
      const text = await this.#o.store.get(key);
      if (!text) continue;
      const grant = JSON.parse(text) as Grant;
      if (grant.expiresAt > Date.now()) return grant;
    }
    return undefined;
  }

  /** The pending request for this operation: an existing identical one, or a new one (audited, webhook sent). */
  async open(op: Operation, rule: ApprovalRule, sampleHash: string): Promise<{ request: ApprovalRequest; created: boolean }> {
    const identity = op.identity!;
    const store = this.#o.store;
    const pendingKey = PENDING + fingerprint(rule.id, identity.issuer, identity.subject, op.action, op.resource.kind, op.resource.name);
    // a pending marker whose request vanished (or is already decided) is replaced, so the loop ends
    for (let attempt = 0; attempt < 3; attempt++) {
      const now = Date.now();
      const id = uuidv7();
      if (await store.setIfAbsent(pendingKey, id, rule.expiresAfter)) {
        const request: ApprovalRequest = {
          id,
          rule: rule.id,
          status: 'pending',
          subject: identity.subject,
          issuer: identity.issuer,
          roles: identity.roles,
          action: op.action,
          resource: { kind: op.resource.kind, name: op.resource.name },
          protocol: op.protocol,
          clientId: op.session.client.clientId ?? '',
          clientAddress: op.session.client.address,
          justification: typeof op.meta.justification === 'string' ? op.meta.justification : '',
          sampleHash,
          records: op.records?.length ?? op.batch?.records ?? 0,
          approvers: rule.approvers,
          grantTtlMs: rule.grantTtl,
          grantScope: rule.grantScope,
          instance: this.#o.instance,
          createdAt: now,
          expiresAt: now + rule.expiresAfter,
        };
        await store.set(REQUEST + id, JSON.stringify(request), this.#retention(request));
        this.#steps?.inc({ step: 'requested' });
        await this.#o.record('approval-request', {
          ...this.#opFields(op),
          decision: 'pending',
          rule: rule.id,
          message: request.justification,
          approval_id: id,
          meta: { step: 'requested', justification: request.justification, sample_hash: sampleHash, expires_at: new Date(request.expiresAt).toISOString(), approvers: rule.approvers.join(',') },
        });
        this.#webhook.notify({ type: 'approval.requested', approval: { ...request, url: this.url(id) } });
        return { request, created: true };
      }
      const existing = await store.get(pendingKey);
      const request = existing ? await this.get(existing) : undefined;
      if (request && request.status === 'pending') return { request, created: false };
      if (existing) await store.delete(pendingKey);
    }
    throw new Error('could not open an approval request (the store keeps changing)');
  }

  async get(id: string): Promise<ApprovalRequest | undefined> {
    const [text, decision] = await Promise.all([this.#o.store.get(REQUEST + id), this.#o.store.get(DECISION + id)]);
    if (!text) return undefined;
    const request = JSON.parse(text) as ApprovalRequest;
    // the decision key is written first: a reader between the two writes still sees the outcome
    if (decision && request.status === 'pending') Object.assign(request, JSON.parse(decision) as Partial<ApprovalRequest>);
    if (request.status === 'pending' && request.expiresAt <= Date.now()) request.status = 'expired';
    return request;
  }

  async list(status?: ApprovalStatus): Promise<ApprovalRequest[]> {
    const out: ApprovalRequest[] = [];
    const now = Date.now();
    for (const [, text] of await this.#o.store.list(REQUEST)) {
      const request = JSON.parse(text) as ApprovalRequest;
      if (request.status === 'pending' && request.expiresAt <= now) request.status = 'expired';
      if (!status || request.status === status) out.push(request);
    }
    return out.sort((a, b) => a.createdAt - b.createdAt);
  }

  /**
   * Resolves with the request once it is decided or expired, or as it stands after `ms` or
   * when `signal` aborts (the client is gone).
   * Woken by the store's channel (decisions on any instance), re-checked every few seconds.
   */
  waitForDecision(id: string, ms: number, signal?: AbortSignal): Promise<ApprovalRequest | undefined> {
    this.#held?.inc();
    return new Promise((resolve) => {
      let done = false;
      let waiters = this.#waiters.get(id);
      if (!waiters) this.#waiters.set(id, (waiters = new Set()));
      const set = waiters;
      const finish = (request: ApprovalRequest | undefined) => {
        if (done) return;
        done = true;
        this.#held?.dec();
        clearTimeout(timer);
        clearInterval(poll);
        signal?.removeEventListener('abort', onAbort);
        set.delete(recheck);
        if (set.size === 0 && this.#waiters.get(id) === set) this.#waiters.delete(id);
        resolve(request);
      };
      const read = () => this.get(id).catch((err: unknown) => {
        this.#o.log.warn({ err: (err as Error).message, approval: id }, 'approval state not readable');
        return undefined;
      });
      const recheck = () => {
        void read().then((r) => {
          if (!r || r.status !== 'pending') finish(r);
        });
      };
      set.add(recheck);
      const onAbort = () => void read().then(finish);
      signal?.addEventListener('abort', onAbort, { once: true });
      const timer = setTimeout(() => void read().then(finish), ms);
      const poll = setInterval(recheck, RECHECK_MS);
      recheck(); // decided between open() and now
    });
  }

  /** An approver's approve or deny. Refusals (not an approver, own request, already decided) are audited when they concern a real request. */
  async decide(id: string, approver: Identity, verdict: 'approve' | 'deny', reason: string): Promise<ApprovalRequest> {
    const request = await this.get(id);
    if (!request) throw new ApprovalApiError(404, `no approval request ${id}`);
    const refuse = async (status: number, step: string, why: string): Promise<never> => {
      await this.#record('approval-decision', request, approver, { decision: 'deny', reason: step, message: why, meta: { step } });
      throw new ApprovalApiError(status, why);
    };
    if (!approver.roles.some((r) => request.approvers.includes(r))) {
      await refuse(403, 'not-approver', `${approver.subject} holds none of the approver roles of rule ${request.rule} (${request.approvers.join(', ')})`);
    }
    if (verdict === 'approve' && approver.subject === request.subject && approver.issuer === request.issuer) {
      await refuse(403, 'self-approval', `${approver.subject} may not approve their own request`);
    }
    if (request.status !== 'pending') throw new ApprovalApiError(409, `approval ${id} is already ${request.status}`);
    const now = Date.now();
    const decided: Partial<ApprovalRequest> = {
      status: verdict === 'approve' ? 'approved' : 'denied',
      decidedBy: approver.subject,
      decidedAt: now,
      reason,
      ...(verdict === 'approve' ? { grantExpiresAt: now + request.grantTtlMs } : {}),
    };
    if (!(await this.#o.store.setIfAbsent(DECISION + id, JSON.stringify(decided), this.#retention(request)))) {
      const current = await this.get(id);
      throw new ApprovalApiError(409, `approval ${id} is already ${current?.status ?? 'decided'}`);
    }
    const result = { ...request, ...decided };
    if (verdict === 'approve') {
      const grant: Grant = { id, rule: request.rule, subject: request.subject, approvedBy: approver.subject, expiresAt: result.grantExpiresAt! };
      const key = grantKey(request.issuer, request.subject, request.action, request.grantScope === 'rule' ? request.rule : request.resource);
      await this.#o.store.set(key, JSON.stringify(grant), request.grantTtlMs);
    }
    await this.#settle(result);
    await this.#record('approval-decision', result, approver, {
      decision: verdict === 'approve' ? 'allow' : 'deny',
      reason: verdict === 'approve' ? '' : 'denied',
      message: reason,
      meta: { step: verdict === 'approve' ? 'approved' : 'denied', ...(result.grantExpiresAt ? { grant_expires_at: new Date(result.grantExpiresAt).toISOString() } : {}) },
    });
    return result;
  }

  /** Stores a decided request, frees its pending marker and tells every instance. */
  async #settle(request: ApprovalRequest): Promise<void> {
    const store = this.#o.store;
    await store.set(REQUEST + request.id, JSON.stringify(request), this.#retention(request));
    const pendingKey = PENDING + fingerprint(request.rule, request.issuer, request.subject, request.action, request.resource.kind, request.resource.name);
    if ((await store.get(pendingKey)) === request.id) await store.delete(pendingKey);
    await store.publish(CHANNEL, JSON.stringify({ id: request.id, status: request.status }));
  }

  /** Pending requests past their expiry become `expired`, audited once (the instance whose decision key wins). */
  async #sweep(): Promise<void> {
    if (this.#sweeping) return;
    this.#sweeping = true;
    try {
      const now = Date.now();
      for (const [, text] of await this.#o.store.list(REQUEST)) {
        const request = JSON.parse(text) as ApprovalRequest;
        if (request.status !== 'pending' || request.expiresAt > now) continue;
        const decided = { status: 'expired' as const, decidedAt: now, reason: 'no decision before the request expired' };
        if (!(await this.#o.store.setIfAbsent(DECISION + request.id, JSON.stringify(decided), this.#retention(request)))) continue;
        const result = { ...request, ...decided };
        await this.#settle(result);
        await this.#record('approval-decision', result, undefined, { decision: 'deny', reason: 'expired', message: decided.reason, meta: { step: 'expired' } });
      }
    } catch (err) {
      this.#o.log.warn({ err: (err as Error).message }, 'approval expiry sweep failed');
    } finally {
      this.#sweeping = false;
    }
  }

  #retention(request: ApprovalRequest): number {
    return Math.max(1000, request.expiresAt + request.grantTtlMs + HISTORY_MS - Date.now());
  }

  #opFields(op: Operation): Partial<AuditRow> {
    const identity = op.identity!;
    return {
      session_id: op.session.id,
      protocol: op.protocol,
      client_address: op.session.client.address,
      client_id: op.session.client.clientId ?? '',
      client_software: op.session.client.software ?? '',
      subject: identity.subject,
      issuer: identity.issuer,
      groups: identity.groups,
      roles: identity.roles,
      action: op.action,
      resource_kind: op.resource.kind,
      resource: op.resource.name,
      partition: op.resource.partition ?? -1,
      record_count: op.records?.length ?? op.batch?.records ?? 0,
    };
  }

  /** A decision row: the decider as subject (none for an expiry), the request's action and resource, the requester in meta. */
  #record(event: 'approval-decision', request: ApprovalRequest, decider: Identity | undefined, fields: Partial<AuditRow> & { meta: Record<string, string> }): Promise<void> {
    if (fields.meta.step) this.#steps?.inc({ step: fields.meta.step });
    return this.#o.record(event, {
      subject: decider?.subject ?? '',
      issuer: decider?.issuer ?? '',
      groups: decider?.groups ?? [],
      roles: decider?.roles ?? [],
      protocol: request.protocol,
      action: request.action,
      resource_kind: request.resource.kind,
      resource: request.resource.name,
      rule: request.rule,
      approval_id: request.id,
      ...fields,
      meta: { requester: request.subject, requester_issuer: request.issuer, ...fields.meta },
    });
  }
}
