import type { LimitsConfig } from '../limits/schema.ts';
import { GatewayError, type Control, type Next, type Operation, type UpstreamResult } from '../operation.ts';

interface Bucket {
  requests: number;
  bytes: number;
  at: number;
}

/** Over the rate: listeners that refuse (HTTP, Kinesis) tell the client when to retry. */
export class Throttled extends GatewayError {
  constructor(subject: string, retryAfterMs: number) {
    super('throttled', `${subject} is over its rate limit; retry in ${retryAfterMs} ms`, { rule: 'limits.rate', retryAfterMs });
  }
}

/** Buckets of identities idle this long are forgotten (memory stays bounded by active identities). */
const IDLE_MS = 60_000;

/**
 * Per-identity request and byte rates (token buckets), and how many sessions (connections)
 * one identity may hold. A session that can be throttled (Kafka: KIP-219 muting) is
 * throttled for the deficit and the operation proceeds; any other is refused with
 * `throttled` and told when to retry.
 */
export class Quota implements Control {
  readonly name = 'quota';
  readonly #limits: () => LimitsConfig;
  readonly #buckets = new Map<string, Bucket>();
  /** identity -> its open sessions; session -> its identity (to forget it when it ends) */
  readonly #sessionsOf = new Map<string, Set<string>>();
  readonly #ownerOf = new Map<string, string>();
  #swept = Date.now();

  constructor(limits: () => LimitsConfig) {
    this.#limits = limits;
  }

  /** The session closed: it no longer counts against its identity. */
  sessionEnded(sessionId: string): void {
    const key = this.#ownerOf.get(sessionId);
    if (key === undefined) return;
    this.#ownerOf.delete(sessionId);
    const set = this.#sessionsOf.get(key);
    set?.delete(sessionId);
    if (set?.size === 0) this.#sessionsOf.delete(key);
  }

  /**
   * A session (Kafka connection, HTTP keep-alive connection, Kinesis key) belongs to the first
   * identity it authenticates as, counted per protocol, issuer and subject; over
   * limits.connections.perIdentity it is refused. Runs on a session's first operation, and at
   * login for protocols that log in first (Kafka SASL: its clients expect the refusal there).
   */
  admitSession(op: Operation): void {
    if (!op.identity || this.#ownerOf.has(op.session.id)) return;
    const key = `${op.protocol}\u0000${op.identity.issuer}\u0000${op.identity.subject}`;
    const perIdentity = this.#limits().connections.perIdentity;
    let set = this.#sessionsOf.get(key);
    if ((set?.size ?? 0) >= perIdentity) {
      throw new GatewayError('throttled', `${op.identity.subject} already holds ${perIdentity} connections (limits.connections.perIdentity)`, { rule: 'limits.connections.perIdentity' });
    }
    if (!set) this.#sessionsOf.set(key, (set = new Set()));
    set.add(op.session.id);
    this.#ownerOf.set(op.session.id, key);
  }

  handle(op: Operation, next: Next): Promise<UpstreamResult> {
    try {
      this.admitSession(op);
    } catch (err) {
      return Promise.reject(err);
    }
    const { requestsPerSecond, bytesPerSecond, burstSeconds } = this.#limits().rate;
    if ((requestsPerSecond === 0 && bytesPerSecond === 0) || !op.identity) return next(op);
    const now = Date.now();
    if (now - this.#swept > IDLE_MS) this.#sweep(now);
    const key = `${op.identity.issuer}\u0000${op.identity.subject}`;
    const maxRequests = requestsPerSecond * burstSeconds;
    const maxBytes = bytesPerSecond * burstSeconds;
    let b = this.#buckets.get(key);
    if (!b) this.#buckets.set(key, (b = { requests: maxRequests, bytes: maxBytes, at: now }));
    const elapsed = (now - b.at) / 1000;
    b.at = now;
    b.requests = Math.min(maxRequests, b.requests + elapsed * requestsPerSecond);
    b.bytes = Math.min(maxBytes, b.bytes + elapsed * bytesPerSecond);

    const bytes = op.action === 'produce' ? (op.batch?.bytes ?? sizeOf(op)) : 0;
    // the deficit after taking this operation, as time at the configured rate
    let waitMs = 0;
    if (requestsPerSecond > 0 && b.requests < 1) waitMs = Math.max(waitMs, ((1 - b.requests) / requestsPerSecond) * 1000);
    if (bytesPerSecond > 0 && bytes > 0 && b.bytes < bytes) waitMs = Math.max(waitMs, ((bytes - b.bytes) / bytesPerSecond) * 1000);
    if (waitMs > 0 && !op.session.throttle) {
      op.meta.throttle_ms = Math.ceil(waitMs);
      return Promise.reject(new Throttled(op.identity.subject, Math.ceil(waitMs)));
    }
    // taken: a throttled session pays the deficit by waiting (muted) before its next request
    if (requestsPerSecond > 0) b.requests -= 1;
    if (bytesPerSecond > 0) b.bytes -= bytes;
    if (waitMs > 0) {
      op.meta.throttle_ms = Math.ceil(waitMs);
      op.session.throttle!(Math.ceil(waitMs));
    }
    return next(op);
  }

  #sweep(now: number): void {
    this.#swept = now;
    for (const [key, b] of this.#buckets) if (now - b.at > IDLE_MS) this.#buckets.delete(key);
  }
}

function sizeOf(op: Operation): number {
  let n = 0;
  for (const r of op.records ?? []) n += (r.value?.byteLength ?? 0) + (r.key?.byteLength ?? 0);
  return n;
}
