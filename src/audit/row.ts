import { v7 as uuidv7 } from 'uuid';
import { GatewayError, type Operation, type Session, type UpstreamResult } from '../operation.ts';

/** What a row records: an operation, a session boundary, an approval step, or a gap in the trail. */
export type AuditEvent = 'operation' | 'session-start' | 'session-end' | 'approval-request' | 'approval-decision' | 'spool-gap' | 'credential-issue' | 'credential-revoke' | 'subject-erase';

/**
 * One audit row per operation (and per session start/end, approval step, spool gap).
 * Column names are the ClickHouse column names: rows are spooled as JSONEachRow and
 * shipped to ClickHouse unchanged. Key order is part of the format: `masking` and `meta`
 * (free-form keys) come last, and the spool appends `seq`, `prev_hash` and `hash` (the
 * hash chain, see chain.ts) after them.
 */
export interface AuditRow {
  /** UUIDv7: unique and time-ordered; the dedup key in ClickHouse */
  event_id: string;
  event: AuditEvent;
  /** UTC, `YYYY-MM-DD hh:mm:ss.mmm` (parses as DateTime64(3)) */
  ts: string;
  instance: string;
  policy_version: string;
  session_id: string;
  protocol: string;
  client_address: string;
  /** Kafka client.id, SDK client id; '' where the protocol has none */
  client_id: string;
  client_software: string;
  subject: string;
  issuer: string;
  groups: string[];
  roles: string[];
  action: string;
  resource_kind: string;
  resource: string;
  /** -1 when the operation was not bound to one partition */
  partition: number;
  /** pending: an approval request waiting for a human */
  decision: 'allow' | 'deny' | 'block' | 'error' | 'pending';
  /** failure kind for denials and errors ('' when allowed) */
  reason: string;
  /** the policy grant or inspection rule that decided */
  rule: string;
  message: string;
  /** the approval this row requests or decides, or the one the operation ran under */
  approval_id: string;
  /** the just-in-time credential (src/jit) the operation ran under, or the one issued/revoked */
  credential_id: string;
  record_count: number;
  bytes: number;
  /** SHA-256 over the record hashes in order: one value that identifies the whole batch */
  batch_hash: string;
  /** SHA-256 hex of each original record value */
  record_hashes: string[];
  /** SHA-256 hex of each value as forwarded where masking changed it, '' where unchanged */
  masked_hashes: string[];
  inspected: string;
  inspection_notes: string[];
  /** `partition:offset` of each record the upstream accepted */
  offsets: string[];
  /** operation latency; for session-end rows the session's duration */
  latency_us: number;
  /** rule id -> matches masked across the batch */
  masking: Record<string, number>;
  meta: Record<string, string>;
}

export function auditTimestamp(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

export interface RowContext {
  instance: string;
  policyVersion: string;
}

export function newEventId(): string {
  return uuidv7();
}

export function buildRow(ctx: RowContext, op: Operation, result: UpstreamResult | undefined, error: unknown, batchHash: string): AuditRow {
  const failure = error === undefined ? undefined : error instanceof GatewayError ? error : new GatewayError('internal', 'internal error');
  const decision: AuditRow['decision'] =
    failure === undefined
      ? 'allow'
      : failure.kind === 'unauthenticated' || failure.kind === 'forbidden'
        ? 'deny'
        : failure.kind === 'blocked' || failure.kind === 'too-large' || (failure.kind === 'invalid' && failure.rule?.startsWith('schema.') === true)
          ? 'block'
          : 'error';
  let bytes = 0;
  for (const r of op.records ?? []) bytes += (r.value?.byteLength ?? 0) + (r.key?.byteLength ?? 0);
  const meta: Record<string, string> = {};
  // credential_id has its own column
  for (const [k, v] of Object.entries(op.meta)) if (k !== 'credential_id') meta[k] = String(v);
  // records refused alone (the rest went on): which, and by what rule, unless the listener said more
  if (op.refusals?.size && meta.record_errors === undefined) {
    meta.failed_records = String(op.refusals.size);
    meta.record_errors = [...op.refusals].map(([i, e]) => `${i}:${e.rule ?? e.kind}`).join(',').slice(0, 2000);
  }
  return {
    event_id: op.id,
    event: 'operation',
    ts: auditTimestamp(op.receivedAt),
    instance: ctx.instance,
    policy_version: ctx.policyVersion,
    session_id: op.session.id,
    protocol: op.protocol,
    client_address: op.session.client.address,
    client_id: op.session.client.clientId ?? '',
    client_software: op.session.client.software ?? '',
    subject: op.identity?.subject ?? '',
    issuer: op.identity?.issuer ?? '',
    groups: op.identity?.groups ?? [],
    roles: op.identity?.roles ?? [],
    action: op.action,
    resource_kind: op.resource.kind,
    resource: op.resource.name,
    partition: op.resource.partition ?? -1,
    decision,
    reason: failure?.kind ?? '',
    rule: failure?.rule ?? (op.meta.grant !== undefined ? String(op.meta.grant) : ''),
    message: failure?.message ?? '',
    approval_id: op.meta.approval !== undefined ? String(op.meta.approval) : '',
    // a refused credential has no identity yet; authenticate notes its (signature-checked) id in meta
    credential_id: op.identity?.credentialId ?? (op.meta.credential_id !== undefined ? String(op.meta.credential_id) : ''),
    record_count: op.records?.length ?? op.batch?.records ?? 0,
    bytes: op.records ? bytes : (op.batch?.bytes ?? 0),
    batch_hash: batchHash,
    record_hashes: op.inspection?.hashes ?? [],
    masked_hashes: op.inspection?.maskedHashes.map((h) => h ?? '') ?? [],
    inspected: op.inspection?.where ?? 'none',
    inspection_notes: op.inspection?.notes ?? [],
    offsets: result?.records?.map((r) => `${r.partition}:${r.offset}`) ?? [],
    latency_us: Math.round((performance.now() - op.startedAt) * 1000),
    masking: op.inspection?.masking ?? {},
    meta,
  };
}

/** A row that is not an operation: every column present, empty where it does not apply. */
export function eventRow(ctx: RowContext, event: AuditEvent, fields: Partial<AuditRow>): AuditRow {
  return {
    event_id: newEventId(),
    event,
    ts: auditTimestamp(Date.now()),
    instance: ctx.instance,
    policy_version: ctx.policyVersion,
    session_id: '',
    protocol: '',
    client_address: '',
    client_id: '',
    client_software: '',
    subject: '',
    issuer: '',
    groups: [],
    roles: [],
    action: '',
    resource_kind: '',
    resource: '',
    partition: -1,
    decision: 'allow',
    reason: '',
    rule: '',
    message: '',
    approval_id: '',
    credential_id: '',
    record_count: 0,
    bytes: 0,
    batch_hash: '',
    record_hashes: [],
    masked_hashes: [],
    inspected: 'none',
    inspection_notes: [],
    offsets: [],
    latency_us: 0,
    masking: {},
    meta: {},
    ...fields,
  };
}

/** session-start / session-end rows; a session's identity is per operation, so these carry none. */
export function sessionRow(ctx: RowContext, session: Session, event: 'session-start' | 'session-end'): AuditRow {
  const now = Date.now();
  return eventRow(ctx, event, {
    ts: auditTimestamp(event === 'session-start' ? session.startedAt : now),
    session_id: session.id,
    protocol: session.protocol,
    client_address: session.client.address,
    client_id: session.client.clientId ?? '',
    client_software: session.client.software ?? '',
    latency_us: event === 'session-end' ? (now - session.startedAt) * 1000 : 0,
  });
}
