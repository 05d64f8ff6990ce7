import type { ClickHouseClient } from '@clickhouse/client';
import type { ClickHouseConfig } from '../audit/schema.ts';
import { variantFor, type Variant } from '../audit/ddl.ts';
import { connect, serverVersion } from '../audit/migrate.ts';
import type { Logger } from '../log.ts';
import { recordingTableStatement } from './ddl.ts';
import type { RecordingRow } from './ddl.ts';

/**
 * Copies recorded rows into ClickHouse (`audit.clickhouse`'s server and database), after
 * they are in the local segments. The segments stay the source of truth: this copy is
 * best effort (batched, a few retries with backoff, then dropped with an error log and a
 * counter), and never holds up the gateway. Modern servers (22.3+) get ZSTD codecs and a
 * TTL; legacy ones (Debian's 18.16) a plain MergeTree (LZ4 by default) whose daily
 * partitions older than ttlDays are dropped when the gateway starts.
 */
export class RecordingShipper {
  readonly #config: ClickHouseConfig;
  readonly #table: string;
  readonly #ttlDays: number;
  readonly #log: Logger;
  #client: ClickHouseClient | undefined;
  #variant: Variant | undefined;
  #ready: Promise<void> | undefined;
  #queue: RecordingRow[] = [];
  #timer: NodeJS.Timeout | undefined;
  #tail: Promise<void> = Promise.resolve();
  #closed = false;
  readonly stats = { shipped: 0, dropped: 0, failures: 0 };

  constructor(config: ClickHouseConfig, table: string, ttlDays: number, log: Logger) {
    this.#config = config;
    this.#table = `${config.database}.${table}`;
    this.#ttlDays = ttlDays;
    this.#log = log;
  }

  /** Creates the table (and expires old partitions on legacy servers); retried with the next batch when it fails. */
  #prepare(): Promise<void> {
    this.#ready ??= (async () => {
      this.#client ??= connect(this.#config);
      this.#variant = variantFor(await serverVersion(this.#client));
      await this.#client.command({ query: `CREATE DATABASE IF NOT EXISTS ${this.#config.database}` });
      if (this.#variant === 'modern') {
        const [db, name] = this.#table.split('.') as [string, string];
        await this.#client.command({ query: recordingTableStatement(db, name, this.#ttlDays) });
      } else {
        await this.#client.command({ query: legacyTableStatement(this.#table) });
        await this.#expireLegacy();
      }
    })().catch((err: unknown) => {
      this.#ready = undefined;
      throw err;
    });
    return this.#ready;
  }

  async #expireLegacy(): Promise<void> {
    const [db, name] = this.#table.split('.') as [string, string];
    const rs = await this.#client!.query({ query: `SELECT DISTINCT partition FROM system.parts WHERE database = '${db}' AND table = '${name}' AND active`, format: 'JSONEachRow' });
    const cutoff = Number(new Date(Date.now() - this.#ttlDays * 86_400_000).toISOString().slice(0, 10).replaceAll('-', ''));
    for (const { partition } of await rs.json<{ partition: string }>()) {
      if (Number(partition) < cutoff) await this.#client!.command({ query: `ALTER TABLE ${this.#table} DROP PARTITION ${partition}` });
    }
  }

  /** Queues rows; they are inserted within a second (or at 10,000 rows). */
  push(rows: RecordingRow[]): void {
    if (this.#closed) return;
    for (const r of rows) this.#queue.push(r);
    if (this.#queue.length >= 10_000) this.#flush();
    else this.#timer ??= setTimeout(() => this.#flush(), 1000);
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const rows = this.#queue;
    this.#queue = [];
    if (rows.length === 0) return;
    this.#tail = this.#tail.then(() => this.#insert(rows));
  }

  async #insert(rows: RecordingRow[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#prepare();
        await this.#client!.insert({ table: this.#table, values: this.#variant === 'modern' ? (rows as unknown as Array<Record<string, unknown>>) : rows.map(legacyRow), format: 'JSONEachRow' });
        this.stats.shipped += rows.length;
        return;
      } catch (err) {
        this.stats.failures++;
        if (attempt >= 3 || this.#closed) {
          this.stats.dropped += rows.length;
          this.#log.error({ err, rows: rows.length }, 'recordings not copied to ClickHouse (they stay in the local segments)');
          return;
        }
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt).unref());
      }
    }
  }

  async close(): Promise<void> {
    this.#flush();
    await this.#tail;
    this.#closed = true;
    await this.#client?.close();
  }
}

/** Legacy servers: no DateTime64, codecs, TTL or tuples from JSON; ts to the second plus ts_ms, headers as two arrays. */
function legacyTableStatement(table: string): string {
  return `CREATE TABLE IF NOT EXISTS ${table} (
  session_id String, op_id String, seq UInt64, ts DateTime, ts_ms UInt16, record_ts Int64, instance String, protocol String,
  subject String, action String, topic String, partition Int32, offset String, key Nullable(String), value Nullable(String),
  header_names Array(String), header_values Array(String), hash String, original_hash String, masked UInt8, raw String, kid String
) ENGINE = MergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (session_id, seq)`;
}

function legacyRow(r: RecordingRow): Record<string, unknown> {
  const { headers, ts, ...rest } = r;
  return { ...rest, ts: ts.slice(0, 19), ts_ms: Number(ts.slice(20, 23) || 0), header_names: headers.map(([k]) => k), header_values: headers.map(([, v]) => v) };
}
