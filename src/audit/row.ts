import { v7 as uuidv7 } from 'uuid';
import { GatewayError, type Operation, type UpstreamResult } from '../operation.ts';

/**
 * One audit row per operation. Column names are the ClickHouse column names: rows are
 * spooled as JSONEachRow and shipped to ClickHouse unchanged.
 */
export interface AuditRow {
  event_id: string;
  /** UTC, `YYYY-MM-DD hh:mm:ss.mmm` (parses as DateTime64(3)) */
  ts: string;
  instance: string;
  policy_version: string;
  session_id: string;
  protocol: string;
  client_address: string;
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
  decision: 'allow' | 'deny' | 'block' | 'error';
  /** failure kind for denials and errors ('' when allowed) */
  reason: string;
  /** the policy grant or inspection rule that decided */
  rule: string;
  message: string;
  record_count: number;
  bytes: number;
  /** SHA-256 over the record hashes in order: one value that identifies the whole batch */
  batch_hash: string;
  /** SHA-256 hex of each original record value */
  record_hashes: string[];
  /** SHA-256 hex of each value as forwarded where masking changed it, '' where unchanged */
  masked_hashes: string[];
  masking: Record<string, number>;
  inspected: string;
  inspection_notes: string[];
  /** `partition:offset` of each record the upstream accepted */
  offsets: string[];
  latency_us: number;
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
        : failure.kind === 'blocked' || failure.kind === 'too-large'
          ? 'block'
          : 'error';
  let bytes = 0;
  for (const r of op.records ?? []) bytes += (r.value?.byteLength ?? 0) + (r.key?.byteLength ?? 0);
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(op.meta)) meta[k] = String(v);
  return {
    event_id: op.id,
    ts: auditTimestamp(op.receivedAt),
    instance: ctx.instance,
    policy_version: ctx.policyVersion,
    session_id: op.session.id,
    protocol: op.protocol,
    client_address: op.session.client.address,
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
    record_count: op.records?.length ?? 0,
    bytes,
    batch_hash: batchHash,
    record_hashes: op.inspection?.hashes ?? [],
    masked_hashes: op.inspection?.maskedHashes.map((h) => h ?? '') ?? [],
    masking: op.inspection?.masking ?? {},
    inspected: op.inspection?.where ?? 'none',
    inspection_notes: op.inspection?.notes ?? [],
    offsets: result?.records?.map((r) => `${r.partition}:${r.offset}`) ?? [],
    latency_us: Math.round((performance.now() - op.startedAt) * 1000),
    meta,
  };
}
