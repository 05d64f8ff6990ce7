import { hash } from 'node:crypto';
import type { Logger } from '../log.ts';
import type { ClickHouseConfig } from '../audit/schema.ts';
import { RecordingShipper } from './clickhouse.ts';
import type { AuditRow } from '../audit/row.ts';
import { auditTimestamp } from '../audit/row.ts';
import { globToRegExp } from '../policy/policy.ts';
import type { Identity, Operation, Session, StreamRecord, UpstreamResult } from '../operation.ts';
import { RawSealer, RAW_ENC } from './crypto.ts';
import type { RecordingConfig, RecordingSelector } from './schema.ts';
import { SegmentWriter } from './segments.ts';

import type { RecordingRow } from './ddl.ts';
export type { RecordingRow };

interface SessionState {
  seq: number;
  bytes: number;
  stopped: boolean;
}

interface Copied {
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: Array<[string, Uint8Array]>;
  partition: number | undefined;
  offset: string | undefined;
  timestamp: number | undefined;
}

/** What the record control took before the rest of the chain ran. */
export interface Capture {
  op: Operation;
  seq: number;
  bytes: number;
  records: Copied[];
}

interface Completed {
  capture: Capture;
  /** copies of values masking changed (index -> value as forwarded / delivered) */
  masked: Map<number, Uint8Array | null>;
  offsets: string[];
}

const EMPTY = new Uint8Array(0);
/** a write is due once this many payload bytes wait (or after flushIntervalMs) */
const WRITE_BATCH_BYTES = 512 * 1024;
const b64 = (b: Uint8Array | null): string | null => (b === null ? null : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64'));

interface CompiledSelector {
  topics: RegExp[] | undefined;
  subjects: Set<string> | undefined;
  roles: Set<string> | undefined;
  actions: Set<string> | undefined;
}

/** Which records are recorded: `all`, or any selector matching topic, identity and action. */
export class RecordingPolicy {
  readonly #all: boolean;
  readonly #selectors: CompiledSelector[];

  constructor(sessions: RecordingConfig['sessions']) {
    this.#all = sessions === 'all';
    this.#selectors = sessions === 'all' ? [] : sessions.map((s: RecordingSelector) => ({
      topics: s.topics?.map(globToRegExp),
      subjects: s.subjects ? new Set(s.subjects) : undefined,
      roles: s.roles ? new Set(s.roles) : undefined,
      actions: s.actions ? new Set(s.actions) : undefined,
    }));
  }

  applies(topic: string, action: 'produce' | 'consume', identity: Identity | undefined): boolean {
    if (this.#all) return true;
    for (const s of this.#selectors) {
      if (s.actions && !s.actions.has(action)) continue;
      if (s.topics && !s.topics.some((re) => re.test(topic))) continue;
      if (s.subjects && !(identity && s.subjects.has(identity.subject))) continue;
      if (s.roles && !(identity && identity.roles.some((r) => s.roles!.has(r)))) continue;
      return true;
    }
    return false;
  }
}

export interface RecorderOptions {
  instance: string;
  log: Logger;
  /** audits a note (a session's recording stopped at a bound, a write failed) */
  note: (fields: Partial<AuditRow>) => void;
  /** audit.clickhouse: recordings are copied to its database too (unless recording.clickhouse.enabled is false) */
  clickhouse?: ClickHouseConfig;
}

/**
 * Keeps the payloads of recorded sessions. The data path pays for one copy of each
 * recorded payload (taken before the request is forwarded: Kafka frames' memory is reused
 * once written) and a queue push; hashing (reused from the audit row), base64, JSON,
 * encryption and gzip happen after the client was answered, batched per event-loop turn,
 * with gzip on libuv's thread pool. Nothing waits for the recording: at a bound (bytes per
 * session, total disk, write queue) recording of that session (or all) stops and an audit
 * row says so; the data path goes on.
 */
export class Recorder {
  readonly #config: RecordingConfig;
  #policy: RecordingPolicy;
  readonly #writer: SegmentWriter;
  readonly #sealer: RawSealer | undefined;
  readonly #options: RecorderOptions;
  readonly #sessions = new Map<string, SessionState>();
  readonly #shipper: RecordingShipper | undefined;
  #pending: Completed[] = [];
  #scheduled = false;
  #queuedBytes = 0;
  #tail: Promise<void> = Promise.resolve();
  /** rows waiting for the next write (serialized in #out already unless raw payloads are still to be sealed) */
  #out = '';
  #outRows: RecordingRow[] = [];
  #outSeal: Array<[RecordingRow, Uint8Array]> = [];
  #outBytes = 0;
  #writeTimer: NodeJS.Timeout | undefined;
  #full = false;
  #recorded = 0;
  #dropped = 0;
  #writeFailures = 0;

  constructor(config: RecordingConfig, options: RecorderOptions) {
    this.#config = config;
    this.#options = options;
    this.#policy = new RecordingPolicy(config.sessions);
    this.#sealer = config.raw ? new RawSealer(config.raw) : undefined;
    this.#shipper = options.clickhouse && config.clickhouse.enabled ? new RecordingShipper(options.clickhouse, config.clickhouse.table, config.clickhouse.ttlDays, options.log) : undefined;
    this.#writer = new SegmentWriter(config.dir, {
      segmentBytes: config.segmentBytes,
      gzipLevel: config.gzipLevel,
      head: { instance: options.instance, format: 'streamgate-recording/1', raw: config.raw ? { alg: config.raw.alg, enc: RAW_ENC, kid: config.raw.kid } : null },
    });
  }

  async warmUp(): Promise<void> {
    await this.#sealer?.warmUp();
  }

  get dir(): string {
    return this.#config.dir;
  }

  get stats(): { recorded: number; dropped: number; writeFailures: number; queuedBytes: number; totalBytes: number; clickhouse?: RecordingShipper['stats'] } {
    return { recorded: this.#recorded, dropped: this.#dropped, writeFailures: this.#writeFailures, queuedBytes: this.#queuedBytes, totalBytes: this.#writer.totalBytes, ...(this.#shipper ? { clickhouse: this.#shipper.stats } : {}) };
  }

  /** Hot reload: which sessions are recorded from the next operation on (sessions already stopped at a bound stay stopped). */
  setSessions(sessions: RecordingConfig['sessions']): void {
    this.#policy = new RecordingPolicy(sessions);
  }

  /** Whether records of `topic` on `side` by `identity` are recorded (listeners decode such records). */
  applies(topic: string, side: 'produce' | 'consume', identity: Identity | undefined): boolean {
    return this.#policy.applies(topic, side, identity);
  }

  /** Copies what will be recorded, before the rest of the chain runs; undefined when this operation is not recorded. */
  capture(op: Operation): Capture | undefined {
    const records = op.records;
    if (!records || records.length === 0 || (op.action !== 'produce' && op.action !== 'consume')) return undefined;
    if (!this.#policy.applies(op.resource.name, op.action, op.identity)) return undefined;
    let state = this.#sessions.get(op.session.id);
    if (!state) {
      state = { seq: 0, bytes: 0, stopped: false };
      this.#sessions.set(op.session.id, state);
    }
    if (state.stopped) return undefined;
    if (this.#writer.totalBytes >= this.#config.maxTotalBytes) {
      if (!this.#full) {
        this.#full = true;
        this.#stop(op, state, 'recording-disk-full', `recording stopped for every session: the recordings hold ${this.#writer.totalBytes} bytes (limit recording.maxTotalBytes ${this.#config.maxTotalBytes})`);
      }
      state.stopped = true;
      return undefined;
    }
    let bytes = 0;
    for (const r of records) bytes += recordBytes(r);
    if (state.bytes + bytes > this.#config.maxSessionBytes) {
      this.#stop(op, state, 'recording-session-bound', `recording of session ${op.session.id} stopped after ${state.bytes} bytes (limit recording.maxSessionBytes ${this.#config.maxSessionBytes})`);
      return undefined;
    }
    if (this.#queuedBytes + bytes > this.#config.maxQueueBytes) {
      this.#stop(op, state, 'recording-queue-full', `recording of session ${op.session.id} stopped: ${this.#queuedBytes} bytes wait to be written (limit recording.maxQueueBytes ${this.#config.maxQueueBytes})`);
      return undefined;
    }
    // one allocation per operation (Node's pool serves small ones), views into it per field:
    // one ArrayBuffer per record value showed up as GC pauses at a few thousand records/s
    const arena = Buffer.allocUnsafe(bytes);
    let at = 0;
    const take = (b: Uint8Array | null): Uint8Array | null => {
      if (b === null) return null;
      arena.set(b, at);
      at += b.byteLength;
      return arena.subarray(at - b.byteLength, at);
    };
    const copies: Copied[] = records.map((r) => ({
      key: take(r.key),
      value: take(r.value),
      headers: r.headers.map(([k, v]) => [k, take(v) ?? EMPTY]),
      partition: r.partition,
      offset: r.offset,
      timestamp: r.timestamp,
    }));
    const capture: Capture = { op, seq: state.seq, bytes, records: copies };
    state.seq += records.length;
    state.bytes += bytes;
    this.#queuedBytes += bytes;
    return capture;
  }

  /** The operation succeeded: queue its records with what masking changed and where the upstream stored them. */
  complete(capture: Capture, op: Operation, result: UpstreamResult): void {
    const masked = new Map<number, Uint8Array | null>();
    const inspection = op.inspection;
    if (inspection && op.records) {
      const records = op.records;
      let size = 0;
      inspection.maskedHashes.forEach((h, i) => {
        if (h !== null) size += records[i]?.value?.byteLength ?? 0;
      });
      const arena = Buffer.allocUnsafe(size);
      let at = 0;
      inspection.maskedHashes.forEach((h, i) => {
        if (h === null) return;
        const v = records[i]?.value ?? null;
        if (v === null) return void masked.set(i, null);
        arena.set(v, at);
        masked.set(i, arena.subarray(at, at + v.byteLength));
        at += v.byteLength;
      });
    }
    this.#pending.push({ capture, masked, offsets: offsetsOf(capture.records, result) });
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  /** The operation failed or was refused after capture: nothing is recorded for it. */
  abandon(capture: Capture): void {
    this.#queuedBytes -= capture.bytes;
  }

  endSession(session: Session): void {
    this.#sessions.delete(session.id);
  }

  #stop(op: Operation, state: SessionState, reason: string, message: string): void {
    state.stopped = true;
    this.#dropped++;
    this.#options.log.warn({ session: op.session.id, reason }, message);
    this.#options.note({
      session_id: op.session.id,
      protocol: op.protocol,
      subject: op.identity?.subject ?? '',
      action: op.action,
      resource_kind: op.resource.kind,
      resource: op.resource.name,
      decision: 'error',
      reason,
      message,
      meta: { component: 'recording', recorded_bytes: String(state.bytes) },
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#pending;
    this.#pending = [];
    // read the hashes now: the audit control filled op.inspection in the same turn the operation finished
    const rows: RecordingRow[] = [];
    const seal: Array<[number, Uint8Array]> = [];
    let bytes = 0;
    for (const { capture, masked, offsets } of batch) {
      bytes += capture.bytes;
      const { op } = capture;
      const hashes = op.inspection?.hashes;
      const maskedHashes = op.inspection?.maskedHashes;
      const ts = auditTimestamp(op.receivedAt);
      const revealed = op.inspection?.revealed;
      capture.records.forEach((r, i) => {
        const original = hashes?.[i] ?? hash('sha256', r.value ?? EMPTY, 'hex');
        const changed = masked.has(i);
        // a value a decrypt rule revealed is never recorded in clear: withheld (masked: 2), its
        // stored form (the ciphertext) kept as the raw payload where raw recording is on
        const withheld = changed && revealed?.[i] === 1;
        const value = withheld ? null : changed ? masked.get(i)! : r.value;
        if (changed && this.#sealer && r.value) seal.push([rows.length, r.value]);
        rows.push({
          session_id: op.session.id,
          op_id: op.id,
          seq: capture.seq + i,
          ts,
          record_ts: r.timestamp ?? 0,
          instance: this.#options.instance,
          protocol: op.protocol,
          subject: op.identity?.subject ?? '',
          action: op.action as 'produce' | 'consume',
          topic: op.resource.name,
          partition: r.partition ?? -1,
          offset: offsets[i] ?? '',
          key: b64(r.key),
          value: b64(value),
          headers: r.headers.map(([k, v]) => [k, b64(v) ?? '']),
          hash: changed ? (maskedHashes?.[i] ?? hash('sha256', value ?? EMPTY, 'hex')) : original,
          original_hash: original,
          masked: withheld ? 2 : changed ? 1 : 0,
          raw: '',
          kid: '',
        });
      });
      // the operation's views are not needed any more
      capture.records.length = 0;
    }
    for (const row of rows) this.#outRows.push(row);
    for (const [at, value] of seal) this.#outSeal.push([rows[at]!, value]);
    // without raw payloads the rows are final now: serialize them a turn at a time
    if (!this.#sealer) for (const row of rows) this.#out += JSON.stringify(row) + '\n';
    this.#outBytes += bytes;
    if (this.#outBytes >= WRITE_BATCH_BYTES) this.#queueWrite();
    else this.#writeTimer ??= setTimeout(() => this.#queueWrite(), this.#config.flushIntervalMs);
  }

  #queueWrite(): void {
    clearTimeout(this.#writeTimer);
    this.#writeTimer = undefined;
    this.#tail = this.#tail.then(() => this.#writeOut()).catch((err: unknown) => this.#options.log.error({ err }, 'recording: a batch could not be written'));
  }

  /**
   * One gzip member per write: each costs a zlib stream set-up and a write(2), so writes are
   * batched per flushIntervalMs (or WRITE_BATCH_BYTES), not per event-loop turn.
   */
  async #writeOut(): Promise<void> {
    let text = this.#out;
    const rows = this.#outRows;
    const seals = this.#outSeal;
    const bytes = this.#outBytes;
    this.#out = '';
    this.#outRows = [];
    this.#outSeal = [];
    this.#outBytes = 0;
    if (rows.length === 0) return;
    try {
      const sealer = this.#sealer;
      if (sealer) {
        // a batch of seals at once: WebCrypto calls in parallel cost about half as much each
        try {
          const sealed = await Promise.all(seals.map(([, v]) => sealer.seal(v)));
          seals.forEach(([row], k) => {
            row.raw = sealed[k]!;
            row.kid = sealer.kid;
          });
        } catch (err) {
          // never a raw payload in plaintext: without its JWE a row keeps only the masked value
          this.#options.log.error({ err }, 'recording: raw payloads could not be encrypted; recorded without them');
        }
        for (const row of rows) text += JSON.stringify(row) + '\n';
      }
      await this.#writer.append(text);
      this.#recorded += rows.length;
      this.#shipper?.push(rows);
    } catch (err) {
      this.#writeFailures++;
      this.#options.log.error({ err, rows: rows.length }, 'recording write failed; these records are not recorded');
      this.#options.note({ decision: 'error', reason: 'recording-write-failed', record_count: rows.length, message: `${rows.length} recorded records were not written: ${(err as Error).message}`, meta: { component: 'recording' } });
    } finally {
      this.#queuedBytes -= bytes;
    }
  }

  /** Writes what is queued, then closes the segment. */
  async close(): Promise<void> {
    if (this.#pending.length > 0) this.#flush();
    clearTimeout(this.#writeTimer);
    await this.#tail;
    await this.#writeOut();
    await this.#writer.close();
    await this.#shipper?.close();
  }
}

function recordBytes(r: StreamRecord): number {
  let n = (r.key?.byteLength ?? 0) + (r.value?.byteLength ?? 0);
  for (const [k, v] of r.headers) n += k.length + v.byteLength;
  return n;
}

/**
 * Where each record was stored. Consume: the record's own offset. Produce: the upstream's
 * outcomes, one per record (HTTP) or one base offset per partition (Kafka: a partition's
 * records of one request get consecutive offsets from its base).
 */
function offsetsOf(records: Copied[], result: UpstreamResult): string[] {
  const outcomes = result.records ?? [];
  if (records.every((r) => r.offset !== undefined)) return records.map((r) => r.offset!);
  if (outcomes.length === records.length) {
    // the upstream chose the partitions (HTTP without partition_id)
    records.forEach((r, i) => (r.partition ??= outcomes[i]!.partition));
    return outcomes.map((o) => o.offset);
  }
  const base = new Map<number, bigint>();
  for (const o of outcomes) if (!base.has(o.partition) && /^\d+$/.test(o.offset)) base.set(o.partition, BigInt(o.offset));
  const position = new Map<number, number>();
  return records.map((r) => {
    const p = r.partition ?? -1;
    const b = base.get(p);
    const k = position.get(p) ?? 0;
    position.set(p, k + 1);
    return b === undefined ? '' : String(b + BigInt(k));
  });
}
