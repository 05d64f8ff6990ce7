import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { GatewayError, type Operation } from '../operation.ts';

/**
 * The gateway's Prometheus series (prom-client). Label sets are bounded: listener,
 * action, outcome (ok or a FailureKind), inspection rule id (from the config). Topics
 * become labels only with `metrics.perTopicLabels`; identities never do.
 *
 * Values that other parts already keep (spool depth, shipper position, pool queue) are
 * read at scrape time through `sources`, so the data path pays nothing for them.
 */
export interface MetricSources {
  poolQueueSize(): number;
  audit(): {
    healthy: boolean;
    unshippedBytes: number;
    rowsWritten: number;
    rowsDropped: number;
    /** with ClickHouse shipping */
    shipper?: { rowsShipped: number; retries: number; lastShippedAt: number };
  };
  policyVersion(): string;
}

const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #perTopic: boolean;
  readonly #operations: Counter;
  readonly #duration: Histogram;
  readonly #gatewayDuration: Histogram;
  readonly #upstreamDuration: Histogram;
  readonly #bytes: Counter;
  readonly #records: Counter;
  readonly #maskingHits: Counter;
  readonly #blocked: Counter;
  readonly #connections: Gauge;
  readonly #connectionsTotal: Counter;
  readonly #sessions: Gauge;
  readonly #reloads: Counter;
  /** seconds spent in the upstream call, per operation (set by the chain's terminal) */
  readonly #upstreamTime = new WeakMap<Operation, number>();
  readonly #startedAt = Date.now();

  constructor(options: { perTopicLabels: boolean }, sources: MetricSources) {
    this.#perTopic = options.perTopicLabels;
    const registers = [this.registry];
    const opLabels = this.#perTopic ? ['listener', 'action', 'topic'] : ['listener', 'action'];
    collectDefaultMetrics({ register: this.registry, prefix: 'streamgate_' });

    this.#operations = new Counter({ name: 'streamgate_operations_total', help: 'Operations by listener, action and outcome (ok or the failure kind: forbidden, blocked, unauthenticated, ...)', labelNames: [...opLabels, 'outcome'], registers });
    this.#duration = new Histogram({ name: 'streamgate_operation_duration_seconds', help: 'Time from entering the controls chain to the answer (audit row written), gateway plus upstream', labelNames: opLabels, buckets: LATENCY_BUCKETS, registers });
    this.#gatewayDuration = new Histogram({ name: 'streamgate_gateway_duration_seconds', help: "The gateway's own share of an operation: chain time minus upstream time", labelNames: opLabels, buckets: LATENCY_BUCKETS, registers });
    this.#upstreamDuration = new Histogram({ name: 'streamgate_upstream_duration_seconds', help: 'Time spent in the upstream call (broker round trip) of operations that reached it', labelNames: opLabels, buckets: LATENCY_BUCKETS, registers });
    this.#bytes = new Counter({ name: 'streamgate_bytes_total', help: 'Record bytes (keys + values, or Kafka batch bytes) by direction: in = produced by clients, out = delivered to clients', labelNames: [...opLabels, 'direction'], registers });
    this.#records = new Counter({ name: 'streamgate_records_total', help: 'Records in operations by listener and action', labelNames: opLabels, registers });
    this.#maskingHits = new Counter({ name: 'streamgate_masking_hits_total', help: 'Inspection matches acted on (masked, redacted, tokenized, ...) per rule id', labelNames: this.#perTopic ? ['rule', 'topic'] : ['rule'], registers });
    this.#blocked = new Counter({ name: 'streamgate_blocked_total', help: 'Operations refused by an inspection block rule, per rule id', labelNames: this.#perTopic ? ['rule', 'topic'] : ['rule'], registers });
    this.#connections = new Gauge({ name: 'streamgate_connections_open', help: 'Open client connections per listener', labelNames: ['listener'], registers });
    this.#connectionsTotal = new Counter({ name: 'streamgate_connections_total', help: 'Client connections accepted per listener', labelNames: ['listener'], registers });
    this.#sessions = new Gauge({ name: 'streamgate_sessions_open', help: 'Client sessions (Kafka connections, HTTP keep-alive connections that sent a request) per protocol', labelNames: ['protocol'], registers });
    this.#reloads = new Counter({ name: 'streamgate_config_reloads_total', help: 'Configuration reloads by result (applied, rejected)', labelNames: ['result'], registers });

    new Gauge({ name: 'streamgate_inspection_pool_queue_depth', help: 'Tasks waiting for an inspection pool worker', registers, collect() { this.set(sources.poolQueueSize()); } });
    new Gauge({ name: 'streamgate_policy_info', help: 'The active policy version (label); value 1 (with --processes: the number of processes running that version)', labelNames: ['version'], registers, collect() { this.reset(); this.set({ version: sources.policyVersion() }, 1); } });
    new Gauge({ name: 'streamgate_audit_spool_healthy', help: '1 when the audit spool accepts rows, 0 when it is failing or full (fail-closed)', registers, aggregator: 'min', collect() { this.set(sources.audit().healthy ? 1 : 0); } });
    new Gauge({ name: 'streamgate_audit_unshipped_bytes', help: 'Spool bytes not yet shipped to ClickHouse (0 without shipping)', registers, collect() { this.set(sources.audit().unshippedBytes); } });
    const startedAt = this.#startedAt;
    new Gauge({
      name: 'streamgate_audit_shipping_lag_seconds',
      help: 'Seconds since the last batch reached ClickHouse while rows are waiting; 0 when caught up or not shipping',
      registers,
      aggregator: 'max',
      collect() {
        const a = sources.audit();
        const since = a.shipper && a.shipper.lastShippedAt > 0 ? a.shipper.lastShippedAt : startedAt;
        this.set(a.shipper && a.unshippedBytes > 0 ? (Date.now() - since) / 1000 : 0);
      },
    });
    monotonic(this.registry, 'streamgate_audit_rows_written_total', 'Audit rows written to the spool since start', () => sources.audit().rowsWritten);
    monotonic(this.registry, 'streamgate_audit_rows_dropped_total', 'Audit rows dropped because the spool was full (fail-open) since start', () => sources.audit().rowsDropped);
    monotonic(this.registry, 'streamgate_audit_rows_shipped_total', 'Audit rows shipped to ClickHouse since start', () => sources.audit().shipper?.rowsShipped ?? 0);
    monotonic(this.registry, 'streamgate_audit_ship_retries_total', 'Failed ClickHouse insert attempts since start', () => sources.audit().shipper?.retries ?? 0);
  }

  /** Runs the upstream call, timing it for this operation. */
  async timeUpstream<T>(op: Operation, call: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await call();
    } finally {
      this.#upstreamTime.set(op, (this.#upstreamTime.get(op) ?? 0) + (performance.now() - start) / 1000);
    }
  }

  /** One finished operation: `seconds` is its time in the chain, `inBytes` its record bytes as received. */
  observe(op: Operation, listener: string, error: unknown, seconds: number, inBytes: number): void {
    const labels: Record<string, string> = { listener, action: op.action };
    if (this.#perTopic) labels.topic = op.resource.kind === 'topic' || op.resource.kind === 'stream' ? op.resource.name : '';
    const outcome = error === undefined ? 'ok' : error instanceof GatewayError ? error.kind : 'internal';
    this.#operations.inc({ ...labels, outcome });
    this.#duration.observe(labels, seconds);
    const upstream = this.#upstreamTime.get(op);
    if (upstream !== undefined) this.#upstreamDuration.observe(labels, upstream);
    this.#gatewayDuration.observe(labels, Math.max(0, seconds - (upstream ?? 0)));

    const count = op.records?.length ?? op.batch?.records ?? 0;
    if (count > 0) this.#records.inc(labels, count);
    const bytes = op.action === 'consume' ? recordBytes(op) : inBytes;
    if (bytes > 0) this.#bytes.inc({ ...labels, direction: op.action === 'consume' ? 'out' : 'in' }, bytes);

    const ruleLabels = (rule: string) => (this.#perTopic ? { rule, topic: labels.topic! } : { rule });
    if (op.inspection) for (const [rule, n] of Object.entries(op.inspection.masking)) if (n > 0) this.#maskingHits.inc(ruleLabels(rule), n);
    if (error instanceof GatewayError && error.kind === 'blocked') this.#blocked.inc(ruleLabels(error.rule ?? ''));
  }

  connectionOpened(listener: string): void {
    this.#connections.inc({ listener });
    this.#connectionsTotal.inc({ listener });
  }

  connectionClosed(listener: string): void {
    this.#connections.dec({ listener });
  }

  sessionOpened(protocol: string): void {
    this.#sessions.inc({ protocol });
  }

  sessionClosed(protocol: string): void {
    this.#sessions.dec({ protocol });
  }

  reloaded(result: 'applied' | 'rejected'): void {
    this.#reloads.inc({ result });
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}

/** A counter whose value another part keeps (monotonic since start), read at scrape time. */
function monotonic(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** Record bytes of an operation: keys + values of decoded records, or the opaque batch's bytes. */
export function recordBytes(op: Operation): number {
  if (op.records) {
    let n = 0;
    for (const r of op.records) n += (r.key?.byteLength ?? 0) + (r.value?.byteLength ?? 0);
    return n;
  }
  return op.batch?.bytes ?? 0;
}
