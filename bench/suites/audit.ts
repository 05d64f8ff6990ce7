// Audit benchmark, one run:
//  (a) spool write latency on the produce path: append() -> resolved, i.e. what the audit
//      control adds to an operation (group commit: setImmediate hop + chain hash + one
//      write(2) per turn), sequential and with 64 concurrent operations, for durability
//      `write` (default) and `fsync`;
//  (b) shipping: a spool of --rows realistic rows shipped by one ClickHouseShipper (one
//      process, default batch settings) to a real ClickHouse server on loopback (Debian's
//      clickhouse-server, installed and started like the tests do), rows/s until drained.
// Usage: npm run bench -- audit [--quick]
// Results: { settings, spool_write: {write, fsync}, ship, metrics: { "audit.*": number } }
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventRow, type AuditRow, type RowContext } from '../../src/audit/row.ts';
import { AuditSpool, listSegments } from '../../src/audit/spool.ts';
import { ClickHouseShipper } from '../../src/audit/shipper.ts';
import { clickhouseSchema } from '../../src/audit/schema.ts';
import { ensureClickHouseInstalled, startClickHouse } from '../../src/dev/clickhouse.ts';
import { createLogger } from '../../src/log.ts';

const ctx: RowContext = { instance: 'bench-gw', policyVersion: 'a1b2c3d4' };
const log = createLogger('silent');

let n = 0;
/** A one-record produce as the HTTP listener audits it: hashes, masking, offsets. */
function row(): AuditRow {
  const i = n++;
  const h = createHash('sha256').update(String(i)).digest('hex');
  return eventRow(ctx, 'operation', {
    session_id: '0199aa00-0000-7000-8000-000000000000',
    protocol: 'http',
    client_address: '127.0.0.1',
    client_software: 'undici',
    subject: `user-${i % 50}`,
    issuer: 'http://127.0.0.1:9400',
    groups: ['payments-writers', 'analysts'],
    roles: ['payments-writer', 'analyst'],
    action: 'produce',
    resource_kind: 'topic',
    resource: `payments.t${i % 8}`,
    rule: 'grants[0]',
    record_count: 1,
    bytes: 1024,
    batch_hash: h,
    record_hashes: [h],
    masked_hashes: [h],
    inspected: 'inline',
    offsets: [`${i % 3}:${i}`],
    latency_us: 400 + (i % 300),
    masking: { 'pci.card-number': 1 },
    meta: { path: 'records' },
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Latency {
  ops_per_s: number;
  mean_us: number;
  p50_us: number;
  p99_us: number;
  max_us: number;
}

/** append() latency: `concurrency` operations in a closed loop, each awaiting its row. */
async function spoolLatency(durability: 'write' | 'fsync', concurrency: number, ops: number): Promise<Latency> {
  const dir = mkdtempSync(join(tmpdir(), 'sg-bench-spool-'));
  const spool = new AuditSpool({ dir, durability, fsyncIntervalMs: 200 }, { context: () => ctx });
  const samples: number[] = [];
  const started = performance.now();
  let left = ops;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) {
        const r = row();
        const t0 = performance.now();
        await spool.append(r);
        samples.push((performance.now() - t0) * 1000);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await spool.close();
  rmSync(dir, { recursive: true, force: true });
  samples.sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 10) / 10;
  return {
    ops_per_s: Math.round(samples.length / seconds),
    mean_us: round(samples.reduce((a, b) => a + b, 0) / samples.length),
    p50_us: round(percentile(samples, 50)),
    p99_us: round(percentile(samples, 99)),
    max_us: round(samples.at(-1)!),
  };
}

export async function runAuditSuite(opts: { quick: boolean }): Promise<Record<string, unknown>> {
  const ROWS = opts.quick ? 100_000 : 300_000;
  const LATENCY_OPS = opts.quick ? 5_000 : 20_000;
  const measure = async (durability: 'write' | 'fsync') => {
    const m = { sequential: await spoolLatency(durability, 1, LATENCY_OPS), concurrent64: await spoolLatency(durability, 64, LATENCY_OPS) };
    console.log(`spool ${durability}: sequential p50 ${m.sequential.p50_us} us p99 ${m.sequential.p99_us} us; 64 concurrent p50 ${m.concurrent64.p50_us} us p99 ${m.concurrent64.p99_us} us at ${m.concurrent64.ops_per_s} ops/s`);
    return m;
  };
  const spoolWrite = { write: await measure('write'), fsync: await measure('fsync') };

  // a spool to ship, written the way the gateway writes it
  const dir = mkdtempSync(join(tmpdir(), 'sg-bench-ship-'));
  const spool = new AuditSpool({ dir }, { context: () => ctx });
  const t0 = performance.now();
  for (let i = 0; i < ROWS; i += 1000) await Promise.all(Array.from({ length: Math.min(1000, ROWS - i) }, () => spool.append(row())));
  const writeSeconds = (performance.now() - t0) / 1000;
  const spoolBytes = listSegments(dir).reduce((n, f) => n + statSync(f).size, 0);
  console.log(`spool: ${ROWS} rows, ${(spoolBytes / 1e6).toFixed(1)} MB written in ${writeSeconds.toFixed(2)} s (${Math.round(ROWS / writeSeconds)} rows/s)`);

  const installStart = performance.now();
  await ensureClickHouseInstalled();
  const installSeconds = (performance.now() - installStart) / 1000;
  const server = await startClickHouse();
  let ship;
  try {
    const config = clickhouseSchema.parse({ url: server.url, database: 'bench_audit', autoMigrate: true, flushIntervalMs: 200 });
    const shipper = new ClickHouseShipper(spool, config, log);
    const s0 = performance.now();
    shipper.start();
    await shipper.drain(300_000);
    const seconds = (performance.now() - s0) / 1000;
    await shipper.stop();
    ship = {
      server_version: server.version,
      variant: shipper.stats.variant,
      rows: shipper.stats.rowsShipped,
      batches: shipper.stats.batches,
      retries: shipper.stats.retries,
      seconds: Math.round(seconds * 100) / 100,
      rows_per_s: Math.round(shipper.stats.rowsShipped / seconds),
      mb_per_s: Math.round((spoolBytes / 1e6 / seconds) * 10) / 10,
      row_bytes: Math.round(spoolBytes / ROWS),
      batch_rows: config.batchRows,
      batch_bytes: config.batchBytes,
    };
    const res = await fetch(`${server.url}/?query=${encodeURIComponent('SELECT count() FROM bench_audit.audit_events')}`);
    const count = Number((await res.text()).trim());
    if (count !== ROWS) throw new Error(`ClickHouse has ${count} rows, expected ${ROWS}`);
    console.log(`ship: ${ship.rows} rows to ClickHouse ${ship.server_version} (${ship.variant}) in ${ship.seconds} s = ${ship.rows_per_s} rows/s (${ship.mb_per_s} MB/s, ${ship.batches} inserts)`);
  } finally {
    await spool.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const out = {
    settings: { rows: ROWS, latency_ops: LATENCY_OPS, clickhouse_install_s: Math.round(installSeconds * 10) / 10 },
    spool_write: spoolWrite,
    ship,
    metrics: {
      'audit.ship.rows_per_s': ship.rows_per_s,
      'audit.ship.mb_per_s': ship.mb_per_s,
      'audit.spool.write.p50_us': spoolWrite.write.sequential.p50_us,
      'audit.spool.write.p99_us': spoolWrite.write.sequential.p99_us,
      'audit.spool.write.concurrent64.p99_us': spoolWrite.write.concurrent64.p99_us,
      'audit.spool.write.concurrent64.ops_per_s': spoolWrite.write.concurrent64.ops_per_s,
      'audit.spool.fsync.p50_us': spoolWrite.fsync.sequential.p50_us,
      'audit.spool.fsync.p99_us': spoolWrite.fsync.sequential.p99_us,
    },
  };
  return out;
}
