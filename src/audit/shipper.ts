import type { ClickHouseClient } from '@clickhouse/client';
import { open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Logger } from '../log.ts';
import type { Variant } from './ddl.ts';
import { connect, installedSchema, migrate, serverVersion } from './migrate.ts';
import type { ClickHouseConfig } from './schema.ts';
import { listSegments, segmentName, segmentSeq, type SpoolPosition } from './spool.ts';

/** What the shipper needs from the spool (AuditSpool implements it). */
export interface ShipperSource {
  readonly dir: string;
  /** the segment being appended to; every lower one is closed */
  readonly currentSegment: number;
  readonly rowsWritten: number;
  setShipped(position: SpoolPosition): void;
  onWrite(listener: () => void): void;
}

interface BatchRange {
  segment: number;
  start: number;
  end: number;
  rows: number;
  firstEventId: string;
  lastEventId: string;
}

interface Batch extends BatchRange {
  data: Buffer;
}

interface ShipperState {
  v: 1;
  /** url + database: a new target starts from the beginning of the spool */
  target: string;
  segment: number;
  offset: number;
  rows: number;
  /** the batches being sent, oldest first; after a crash they are re-sent first, with the same ranges and dedup tokens */
  inflight: BatchRange[];
  updated: string;
}

export interface ShipperStats {
  rowsShipped: number;
  batches: number;
  retries: number;
  /** re-sent batches ClickHouse already had (found by event id, or dropped by its dedup token) */
  duplicatesSkipped: number;
  lastError: string | undefined;
  lastShippedAt: number;
  variant: Variant | undefined;
  serverVersion: string | undefined;
}

const STATE_FILE = 'shipper-state.json';
const EVENT_ID_PREFIX = Buffer.from('{"event_id":"');

/**
 * Ships spool rows to ClickHouse in large batches, off the data path: it reads the
 * segment files (not the spool's memory), so a slow or absent ClickHouse only makes the
 * spool grow (see the spool's full-spool policy).
 *
 * Position: segment + byte offset in `shipper-state.json`, written atomically after every
 * batch. Before a batch is sent its range is recorded as `inflight`, so after a crash the
 * very same bytes are re-sent first. Up to `concurrency` batches are in flight (a legacy
 * server parses each insert on one core); the position advances in order, only past
 * batches that are in ClickHouse.
 *
 * Exactly once: modern servers get an insert_deduplication_token derived from the
 * batch's first/last event id and row count (the table keeps a dedup window), so a re-sent
 * batch is dropped by the server, materialized views included. Legacy servers have no
 * tokens for plain MergeTree: before re-sending a batch whose previous attempt may have
 * landed, the shipper looks its first and last event ids up and skips it when present (a
 * batch is one insert block, so it lands whole or not at all). Both variants are also
 * ReplacingMergeTree ordered by event_id, which collapses anything that slips through.
 *
 * Retries: exponential backoff with jitter, from retryInitialMs to retryMaxMs, forever;
 * the batch is kept, the spool keeps growing.
 */
export class ClickHouseShipper {
  readonly stats: ShipperStats = { rowsShipped: 0, batches: 0, retries: 0, duplicatesSkipped: 0, lastError: undefined, lastShippedAt: 0, variant: undefined, serverVersion: undefined };
  readonly #source: ShipperSource;
  readonly #config: ClickHouseConfig;
  readonly #log: Logger;
  readonly #statePath: string;
  readonly #target: string;
  #client: ClickHouseClient | undefined;
  #state: ShipperState | undefined;
  /** where the next batch is read from: the committed position plus the batches in flight */
  #readPos: SpoolPosition = { segment: 1, offset: 0 };
  #running: Promise<void> | undefined;
  #stopping = false;
  #abort = new AbortController();
  #wake: (() => void) | undefined;
  readonly #sleepers = new Set<() => void>();
  #rowsAtRead = 0;
  #caughtUp = false;

  constructor(source: ShipperSource, config: ClickHouseConfig, log: Logger) {
    this.#source = source;
    this.#config = config;
    this.#log = log.child({ component: 'audit-shipper' });
    this.#statePath = join(source.dir, STATE_FILE);
    this.#target = `${config.url.replace(/\/+$/, '')}/${config.database}`;
    source.onWrite(() => {
      if (this.#source.rowsWritten - this.#rowsAtRead >= this.#config.batchRows) this.#wake?.();
    });
  }

  start(): void {
    this.#running ??= this.#run().catch((err: unknown) => this.#log.error({ err }, 'audit shipper stopped on an unexpected error'));
  }

  /** Stops after the current attempt (an insert in flight is aborted and re-sent on the next start). */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#abort.abort();
    for (const wake of [...this.#sleepers]) wake();
    await this.#running;
    await this.#client?.close().catch(() => {});
  }

  /** the shipped position, once the state is loaded */
  get position(): SpoolPosition | undefined {
    return this.#state ? { segment: this.#state.segment, offset: this.#state.offset } : undefined;
  }

  /** Resolves when everything written so far is shipped (tests, benchmarks, graceful drains). */
  async drain(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.#caughtUp = false;
      this.#wake?.();
      await new Promise((r) => setTimeout(r, 20));
      if (this.#caughtUp && (await this.#atEnd())) return;
      if (Date.now() > deadline) throw new Error(`audit shipper did not catch up within ${timeoutMs} ms (last error: ${this.stats.lastError ?? 'none'})`);
    }
  }

  async #atEnd(): Promise<boolean> {
    const s = this.#state;
    const last = listSegments(this.#source.dir).at(-1);
    if (!s || !last) return s !== undefined;
    return s.segment === segmentSeq(last) && s.offset >= (await stat(last)).size;
  }

  async #run(): Promise<void> {
    const state = (this.#state = await this.#loadState());
    this.#source.setShipped({ segment: state.segment, offset: state.offset });
    let attempt = 0;
    while (!this.#stopping) {
      try {
        await this.#prepare();
        break;
      } catch (err) {
        this.#fail(err, ++attempt, 'ClickHouse is not ready for audit rows');
        await this.#sleep(this.#backoff(attempt));
      }
    }
    if (this.#stopping) return;

    const pending: Array<{ range: BatchRange; sent: Promise<boolean> }> = [];
    // batches a previous run had in flight: the same bytes again, checked first
    const resend = state.inflight;
    state.inflight = [];
    for (const range of resend) {
      const data = await this.#readRange(range);
      if (!data) {
        this.#log.warn({ range }, 'a batch in flight before the restart is no longer in the spool');
        continue;
      }
      state.inflight.push(range);
      pending.push({ range, sent: this.#send({ ...range, data }, true) });
      this.#readPos = { segment: range.segment, offset: range.end };
    }
    if (pending.length === 0) this.#readPos = { segment: state.segment, offset: state.offset };
    let idle = false;
    while (!this.#stopping) {
      // fill the pipeline; a small batch means we are caught up: no more until a trigger
      while (!idle && pending.length < this.#config.concurrency && !this.#stopping) {
        this.#rowsAtRead = this.#source.rowsWritten;
        let batch: Batch | undefined;
        try {
          batch = await this.#next();
        } catch (err) {
          this.#fail(err, 1, 'reading the spool failed');
        }
        if (!batch) {
          idle = true;
          break;
        }
        const { data, ...range } = batch;
        void data;
        state.inflight.push(range);
        await this.#saveState();
        this.#readPos = { segment: batch.segment, offset: batch.end };
        pending.push({ range, sent: this.#send(batch, false) });
        if (batch.rows < this.#config.batchRows && batch.data.length < this.#config.batchBytes * 0.9) idle = true;
      }
      const head = pending.shift();
      if (head) {
        if (!(await head.sent)) break;
        await this.#commit(head.range);
        continue;
      }
      // nothing in flight and nothing to read: caught up
      if (state.segment !== this.#readPos.segment || state.offset !== this.#readPos.offset) {
        // empty segments were skipped
        state.segment = this.#readPos.segment;
        state.offset = this.#readPos.offset;
        this.#source.setShipped({ segment: state.segment, offset: state.offset });
      }
      this.#caughtUp = true;
      await this.#sleep(this.#config.flushIntervalMs, true);
      idle = false;
    }
    // stopping: let the attempts in flight settle (they were aborted); their ranges stay in the state
    await Promise.all(pending.map((p) => p.sent));
  }

  async #commit(range: BatchRange): Promise<void> {
    const s = this.#state!;
    s.segment = range.segment;
    s.offset = range.end;
    s.rows += range.rows;
    s.inflight.shift();
    await this.#saveState();
    this.stats.rowsShipped += range.rows;
    this.stats.batches++;
    this.stats.lastShippedAt = Date.now();
    this.#source.setShipped({ segment: s.segment, offset: s.offset });
  }

  async #prepare(): Promise<void> {
    this.#client ??= connect(this.#config);
    const version = await serverVersion(this.#client);
    let schema = await installedSchema(this.#client, this.#config.database);
    if (!schema && this.#config.autoMigrate) {
      await migrate(this.#client, { database: this.#config.database, ttlDays: this.#config.ttlDays });
      schema = await installedSchema(this.#client, this.#config.database);
    }
    if (!schema) throw new Error(`no audit schema in database "${this.#config.database}": run \`streamgate audit migrate\` (or set audit.clickhouse.autoMigrate)`);
    this.stats.variant = schema.variant;
    this.stats.serverVersion = version;
    this.#log.info({ serverVersion: version, variant: schema.variant, schemaVersion: schema.version }, 'audit shipper connected to ClickHouse');
  }

  /** The next run of complete lines after the read position, within the batch limits. */
  async #next(): Promise<Batch | undefined> {
    for (;;) {
      const s = this.#readPos;
      const path = join(this.#source.dir, segmentName(s.segment));
      let fh;
      try {
        fh = await open(path, 'r');
      } catch {
        if (!this.#skipTo(s.segment)) return undefined;
        continue;
      }
      try {
        const { size } = await fh.stat();
        if (s.offset >= size) {
          if (s.segment < this.#source.currentSegment && this.#skipTo(s.segment)) continue;
          return undefined;
        }
        let len = Math.min(size - s.offset, this.#config.batchBytes);
        let buf = Buffer.allocUnsafe(len);
        await fh.read(buf, 0, len, s.offset);
        let end = buf.lastIndexOf(10) + 1;
        if (end === 0 && len < size - s.offset) {
          // one row larger than batchBytes: ship it alone
          len = size - s.offset;
          buf = Buffer.allocUnsafe(len);
          await fh.read(buf, 0, len, s.offset);
          end = buf.lastIndexOf(10) + 1;
        }
        if (end === 0) {
          // a closed segment never ends mid-line (the spool moves torn tails aside); the open one may, mid-write
          if (s.segment < this.#source.currentSegment && this.#skipTo(s.segment)) continue;
          return undefined;
        }
        let rows = 0;
        let cut = end;
        for (let i = buf.indexOf(10); i !== -1 && i < end; i = buf.indexOf(10, i + 1)) {
          if (++rows === this.#config.batchRows) {
            cut = i + 1;
            break;
          }
        }
        const data = buf.subarray(0, cut);
        const lastStart = data.lastIndexOf(10, data.length - 2) + 1;
        return { segment: s.segment, start: s.offset, end: s.offset + cut, rows, firstEventId: eventIdAt(data, 0), lastEventId: eventIdAt(data, lastStart), data };
      } finally {
        await fh.close();
      }
    }
  }

  /** Moves to the next segment on disk after `segment`; false when there is none yet. */
  #skipTo(segment: number): boolean {
    const next = listSegments(this.#source.dir).map(segmentSeq).find((n) => n > segment);
    if (next === undefined) return false;
    this.#readPos = { segment: next, offset: 0 };
    return true;
  }

  async #readRange(r: BatchRange): Promise<Buffer | undefined> {
    try {
      const fh = await open(join(this.#source.dir, segmentName(r.segment)), 'r');
      try {
        const buf = Buffer.allocUnsafe(r.end - r.start);
        const { bytesRead } = await fh.read(buf, 0, buf.length, r.start);
        return bytesRead === buf.length ? buf : undefined;
      } finally {
        await fh.close();
      }
    } catch {
      return undefined;
    }
  }

  /** Sends one batch until it is in ClickHouse (true) or the shipper stops (false). */
  async #send(batch: Batch, uncertain: boolean): Promise<boolean> {
    let attempt = 0;
    for (;;) {
      try {
        if (uncertain && this.stats.variant === 'legacy' && (await this.#present(batch))) {
          this.stats.duplicatesSkipped++;
          this.#log.info({ rows: batch.rows, first: batch.firstEventId }, 'audit batch was already in ClickHouse; not sent again');
          return true;
        }
        await this.#insert(batch);
        this.stats.lastError = undefined;
        return true;
      } catch (err) {
        // from here on we cannot know whether the failed attempt landed
        uncertain = true;
        this.stats.retries++;
        this.#fail(err, ++attempt, 'audit insert failed; retrying');
        if (this.#stopping) return false;
        await this.#sleep(this.#backoff(attempt));
        if (this.#stopping) return false;
      }
    }
  }

  async #insert(batch: Batch): Promise<void> {
    const db = this.#config.database;
    const signal = this.#abort.signal;
    if (this.stats.variant === 'modern') {
      const res = await this.#client!.exec({
        query: `INSERT INTO ${db}.audit_events FORMAT JSONEachRow`,
        values: Readable.from([batch.data]),
        abort_signal: signal,
        clickhouse_settings: {
          insert_deduplicate: 1,
          insert_deduplication_token: `${batch.firstEventId}:${batch.lastEventId}:${batch.rows}`,
          deduplicate_blocks_in_dependent_materialized_views: 1,
          input_format_skip_unknown_fields: 1,
        },
      });
      await drainStream(res.stream);
    } else {
      const rows = await legacyRowsInSlices(batch.data);
      const res = await this.#client!.exec({
        query: `INSERT INTO ${db}.audit_events_ingest FORMAT JSONEachRow`,
        values: Readable.from([rows]),
        abort_signal: signal,
        clickhouse_settings: { input_format_skip_unknown_fields: 1 },
      });
      await drainStream(res.stream);
    }
  }

  /** Legacy re-send check: are the batch's first and last rows already there? */
  async #present(batch: Batch): Promise<boolean> {
    const ids = [...new Set([batch.firstEventId, batch.lastEventId])];
    const rs = await this.#client!.query({
      query: `SELECT count() AS n FROM ${this.#config.database}.audit_events WHERE event_id IN (${ids.map((id) => `toUUID('${id.replace(/[^0-9a-f-]/gi, '')}')`).join(', ')})`,
      format: 'JSONEachRow',
      abort_signal: this.#abort.signal,
    });
    const [row] = await rs.json<{ n: string | number }>();
    // a partial batch (split across monthly partitions) is sent again; ReplacingMergeTree collapses the overlap
    return Number(row!.n) >= ids.length;
  }

  async #loadState(): Promise<ShipperState> {
    const fresh = (): ShipperState => {
      const first = listSegments(this.#source.dir)[0];
      return { v: 1, target: this.#target, segment: first ? segmentSeq(first) : 1, offset: 0, rows: 0, inflight: [], updated: new Date().toISOString() };
    };
    let state: ShipperState;
    try {
      state = JSON.parse(await readFile(this.#statePath, 'utf8')) as ShipperState;
    } catch {
      return fresh();
    }
    // state files from before pipelining kept one range or null
    const inflight = state.inflight as unknown;
    state.inflight = Array.isArray(inflight) ? (inflight as BatchRange[]) : inflight ? [inflight as BatchRange] : [];
    if (state.target !== this.#target) {
      this.#log.warn({ was: state.target, now: this.#target }, 'audit shipper target changed: shipping the spool from its beginning');
      return fresh();
    }
    return state;
  }

  async #saveState(): Promise<void> {
    const s = this.#state!;
    s.updated = new Date().toISOString();
    const tmp = `${this.#statePath}.tmp`;
    await writeFile(tmp, JSON.stringify(s) + '\n');
    const fh = await open(tmp, 'r+');
    try {
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.#statePath);
  }

  #fail(err: unknown, attempt: number, msg: string): void {
    const message = (err as Error).message ?? String(err);
    this.stats.lastError = message;
    // loud on the first failure and then every 10th, so an outage does not flood the log
    if (attempt === 1 || attempt % 10 === 0) this.#log.warn({ err: message, attempt }, msg);
  }

  #backoff(attempt: number): number {
    const base = Math.min(this.#config.retryMaxMs, this.#config.retryInitialMs * 2 ** Math.min(attempt - 1, 20));
    return Math.round(base * (0.5 + Math.random() * 0.5));
  }

  /**
   * Sleeps up to `ms`; stop() wakes every sleeper, a size trigger or drain() only the main
   * loop's (`main`), so that retry backoffs stay backoffs.
   */
  #sleep(ms: number, main = false): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#sleepers.delete(done);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      // unref: a shipper nobody stopped must not keep a process alive
      const timer = setTimeout(done, ms).unref();
      this.#sleepers.add(done);
      if (main) this.#wake = done;
    });
  }
}

function eventIdAt(buf: Buffer, start: number): string {
  if (buf.compare(EVENT_ID_PREFIX, 0, EVENT_ID_PREFIX.length, start, start + EVENT_ID_PREFIX.length) !== 0) return '';
  const from = start + EVENT_ID_PREFIX.length;
  return buf.toString('latin1', from, buf.indexOf(34, from));
}

const TS_KEY = Buffer.from(',"ts":"');
const TS_TEXT_KEY = Buffer.from(',"ts_text":"');
const MASKING_KEY = Buffer.from(',"masking":{');
const META_KEY = Buffer.from(',"meta":{');
const META_TEXT_KEY = Buffer.from('","meta":"');
const SEQ_KEY = Buffer.from(',"seq":');

/** Copies src[from, to) into out at o as JSON string content (`"` and `\\` escaped; bytes, so UTF-8 safe). */
function copyEscaped(src: Buffer, from: number, to: number, out: Buffer, o: number): number {
  for (let i = from; i < to; i++) {
    const c = src[i]!;
    if (c === 34 || c === 92) out[o++] = 92;
    out[o++] = c;
  }
  return o;
}

/**
 * Spool lines as a legacy server's JSONEachRow can read them: `ts` renamed to `ts_text`
 * and the `masking` and `meta` objects as JSON text (servers before 21.x have no Map).
 * Byte surgery on the fixed key order of a row (see row.ts), no JSON parse: the first
 * `,"masking":{` of a line is the top-level key (no free text comes before it), and
 * `,"seq":` opens the chain suffix.
 */
export function legacyRows(buf: Buffer): Buffer {
  // worst case: every object byte escaped, plus the renamed key and four quotes per line
  const out = Buffer.allocUnsafe(buf.length * 2 + 64);
  let o = 0;
  for (let start = 0; start < buf.length; ) {
    let end = buf.indexOf(10, start);
    if (end === -1) end = buf.length - 1;
    const ts = buf.indexOf(TS_KEY, start);
    const masking = buf.indexOf(MASKING_KEY, start);
    const meta = masking === -1 ? -1 : buf.indexOf(META_KEY, masking);
    const seq = buf.lastIndexOf(SEQ_KEY, end);
    if (ts === -1 || ts > masking || masking > end || meta === -1 || meta > seq || seq < start) {
      o += buf.copy(out, o, start, end + 1); // not a row of this format: let the server say so
    } else {
      o += buf.copy(out, o, start, ts);
      o += TS_TEXT_KEY.copy(out, o);
      o += buf.copy(out, o, ts + TS_KEY.length, masking + MASKING_KEY.length - 1);
      out[o++] = 34;
      o = copyEscaped(buf, masking + MASKING_KEY.length - 1, meta, out, o);
      o += META_TEXT_KEY.copy(out, o);
      o = copyEscaped(buf, meta + META_KEY.length - 1, seq, out, o);
      out[o++] = 34;
      o += buf.copy(out, o, seq, end + 1);
    }
    start = end + 1;
  }
  return out.subarray(0, o);
}

/** legacyRows in slices of about 1 MiB, yielding to the event loop between them. */
async function legacyRowsInSlices(buf: Buffer): Promise<Buffer> {
  const out: Buffer[] = [];
  for (let start = 0; start < buf.length; ) {
    const nl = buf.indexOf(10, Math.min(buf.length - 1, start + (1 << 20)));
    const end = nl === -1 ? buf.length : nl + 1;
    out.push(legacyRows(buf.subarray(start, end)));
    start = end;
    if (start < buf.length) await new Promise((r) => setImmediate(r));
  }
  return out.length === 1 ? out[0]! : Buffer.concat(out);
}

async function drainStream(stream: NodeJS.ReadableStream): Promise<void> {
  for await (const _ of stream as AsyncIterable<unknown>) {
    // the INSERT answers with an empty body; reading it frees the socket for keep-alive
  }
}
