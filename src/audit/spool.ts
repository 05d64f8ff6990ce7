import { closeSync, fdatasync, fdatasyncSync, mkdirSync, openSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { z } from 'zod';
import type { Logger } from '../log.ts';
import { chainFields, chainLine, GENESIS, headPath, readHead, readLastLine, repairTornTail, tornPath, writeHead, writeRetentionMarker, type Signer, type TornTail } from './chain.ts';
import { auditTimestamp, eventRow, type AuditRow, type RowContext } from './row.ts';
import { spoolSchema, type SpoolConfig } from './schema.ts';
import { filesIn } from '../files.ts';

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

const SEGMENT = /^audit-(\d{8})\.jsonl$/;

export function segmentName(seq: number): string {
  return `audit-${String(seq).padStart(8, '0')}.jsonl`;
}

/** The sequence number in a segment's file name. */
export function segmentSeq(path: string): number {
  const m = SEGMENT.exec(basename(path));
  if (!m) throw new Error(`not a spool segment: ${path}`);
  return Number(m[1]);
}

/** Segment files of a spool directory in write order. */
export function listSegments(dir: string): string[] {
  return filesIn(dir, SEGMENT);
}

export interface SpoolOptions {
  /** signs segment heads and the retention marker */
  signer?: Signer;
  /** for the rows the spool writes itself (spool-gap) */
  context?: () => RowContext;
  log?: Logger;
  /** a shipper will report positions: until it does, retention deletes nothing */
  shipping?: boolean;
}

/** Where the shipper has got to: everything before `offset` in segment `segment` is in ClickHouse. */
export interface SpoolPosition {
  segment: number;
  offset: number;
}

/**
 * Append-only local spool of audit rows, one JSONEachRow segment file after another,
 * hash-chained (see chain.ts).
 *
 * Group commit: rows appended during one event-loop turn are chained and written with one
 * write(2) in a setImmediate, and every caller's promise settles after that write. With
 * durability `write` a row is in the OS page cache (survives a gateway crash) before the
 * client is answered, and fdatasync runs every fsyncIntervalMs; with `fsync` callers
 * also wait for the fdatasync that covers their row (survives power loss).
 *
 * Each process start opens a new segment, so a row torn by a crash is always the last
 * line of a closed segment; the start moves such bytes aside and notes them in the new
 * segment's head, and continues the chain from the last complete row.
 *
 * With a shipper attached, the spool also knows how much is not yet in ClickHouse: past
 * maxUnshippedBytes it is full, and `whenFull` decides (fail-closed: `healthy` turns
 * false and the audit control refuses new operations; fail-open: rows are dropped and
 * counted, and a `spool-gap` row records the gap once there is room again).
 */
export class AuditSpool {
  readonly #config: SpoolConfig;
  readonly #signer: Signer | undefined;
  readonly #context: () => RowContext;
  readonly #log: Logger | undefined;
  readonly #shipping: boolean;
  #fd = -1;
  #segment = 0;
  #segmentBytes = 0;
  /** bytes of every segment on disk, by segment number */
  readonly #sizes = new Map<number, number>();
  #seq = 0;
  #lastHash = GENESIS;
  #pending: string[] = [];
  #waiters: Waiter[] = [];
  #syncWaiters: Waiter[] = [];
  #scheduled = false;
  #dirty = false;
  #syncing = false;
  #timer: NodeJS.Timeout | undefined;
  #retentionTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #rows = 0;
  #failure: Error | undefined;
  #shipped: SpoolPosition | undefined;
  #full = false;
  #fullSince = 0;
  #dropped = 0;
  #droppedTotal = 0;
  #droppedFirst = 0;
  #droppedLast = 0;
  #lastAlarm = 0;
  #listeners: Array<() => void> = [];

  constructor(config: z.input<typeof spoolSchema>, options: SpoolOptions = {}) {
    this.#config = spoolSchema.parse(config);
    this.#signer = options.signer;
    this.#context = options.context ?? (() => ({ instance: '', policyVersion: '' }));
    this.#log = options.log;
    this.#shipping = options.shipping ?? false;
    mkdirSync(this.#config.dir, { recursive: true });
    const segments = listSegments(this.#config.dir);
    for (const s of segments) this.#sizes.set(segmentSeq(s), statSync(s).size);
    const last = segments.at(-1);
    let torn: TornTail | null = null;
    if (last) {
      this.#segment = segmentSeq(last);
      torn = repairTornTail(last);
      if (torn) {
        this.#sizes.set(this.#segment, torn.offset);
        this.#log?.warn({ segment: torn.segment, bytes: torn.bytes }, 'audit spool: moved a torn last line (crash) aside');
      }
      this.#resumeChain(last);
    }
    this.#openNext(last ? basename(last) : null, torn);
    this.#timer = setInterval(() => this.#sync(), this.#config.fsyncIntervalMs);
    this.#timer.unref();
    this.#retentionTimer = setInterval(() => this.applyRetention(), this.#config.retention.checkIntervalMs);
    this.#retentionTimer.unref();
  }

  /** Continue the chain after the last complete row of the newest segment (or its head when empty). */
  #resumeChain(last: string): void {
    const line = readLastLine(last);
    const f = line ? chainFields(line) : undefined;
    if (f) {
      this.#seq = f.seq;
      this.#lastHash = f.hash;
      return;
    }
    const head = readHead(last);
    if (!line && head) {
      this.#seq = head.first_seq - 1;
      this.#lastHash = head.prev_hash;
    }
    // a segment from before the hash chain: start a fresh chain after it (verify reports it)
  }

  get dir(): string {
    return this.#config.dir;
  }

  /** false after a failed write or fsync (until a later write succeeds), or when full and fail-closed */
  get healthy(): boolean {
    return this.#failure === undefined && !(this.#full && this.#config.whenFull === 'fail-closed');
  }

  /** why `healthy` is false, for the client's error message */
  get problem(): string | undefined {
    if (this.#failure) return this.#failure.message;
    if (this.#full && this.#config.whenFull === 'fail-closed') {
      return `the audit spool is full (${this.unshippedBytes} bytes not yet shipped to ClickHouse, limit ${this.#config.maxUnshippedBytes})`;
    }
    return undefined;
  }

  get full(): boolean {
    return this.#full;
  }

  /** rows written since start */
  get rowsWritten(): number {
    return this.#rows;
  }

  /** rows not written because the spool was full in fail-open mode, since start */
  get rowsDropped(): number {
    return this.#droppedTotal;
  }

  /** the segment rows are appended to now; every lower one is closed */
  get currentSegment(): number {
    return this.#segment;
  }

  get lastSeq(): number {
    return this.#seq;
  }

  get unshippedBytes(): number {
    if (!this.#shipped) return 0;
    let n = 0;
    for (const [seq, size] of this.#sizes) {
      if (seq > this.#shipped.segment) n += size;
      else if (seq === this.#shipped.segment) n += Math.max(0, size - this.#shipped.offset);
    }
    return n;
  }

  /** Called by the shipper: from now on the full-spool policy and retention use this position. */
  setShipped(position: SpoolPosition): void {
    this.#shipped = { ...position };
    this.#updateFull();
  }

  /** Called after every write (the shipper's size trigger). */
  onWrite(listener: () => void): void {
    this.#listeners.push(listener);
  }

  /** Resolves once the row is as durable as the configured guarantee. */
  append(row: AuditRow): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('audit spool is closed'));
    if (this.#full && this.#config.whenFull === 'fail-open') {
      this.#drop(row);
      return Promise.resolve();
    }
    const json = JSON.stringify(row);
    this.#pending.push(json.slice(0, -1));
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#waiters.push({ resolve, reject });
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
    return promise;
  }

  #drop(row: AuditRow): void {
    const now = Date.now();
    if (this.#dropped === 0) this.#droppedFirst = now;
    this.#dropped++;
    this.#droppedTotal++;
    this.#droppedLast = now;
    if (now - this.#lastAlarm > 10_000) {
      this.#lastAlarm = now;
      this.#log?.error({ dropped: this.#dropped, unshippedBytes: this.unshippedBytes, event: row.event_id }, 'AUDIT GAP: the spool is full (fail-open); operations are running without audit rows');
    }
  }

  #updateFull(): void {
    if (!this.#shipped) return;
    const unshipped = this.unshippedBytes;
    const max = this.#config.maxUnshippedBytes;
    if (!this.#full && unshipped >= max) {
      this.#full = true;
      this.#fullSince = Date.now();
      this.#log?.error({ unshippedBytes: unshipped, limit: max, policy: this.#config.whenFull }, 'audit spool is full: ClickHouse shipping is behind');
    } else if (this.#full && unshipped < max * 0.9) {
      // hysteresis: do not flap around the limit
      this.#full = false;
      this.#log?.warn({ unshippedBytes: unshipped, fullForMs: Date.now() - this.#fullSince }, 'audit spool has room again');
      if (this.#dropped > 0) this.#appendGapRow();
    }
  }

  #appendGapRow(): void {
    const row = eventRow(this.#context(), 'spool-gap', {
      decision: 'error',
      reason: 'spool-full',
      record_count: this.#dropped,
      message: `${this.#dropped} audit rows were not written: the spool was full (fail-open) from ${auditTimestamp(this.#droppedFirst)} to ${auditTimestamp(this.#droppedLast)}`,
      meta: { first_dropped: auditTimestamp(this.#droppedFirst), last_dropped: auditTimestamp(this.#droppedLast) },
    });
    this.#dropped = 0;
    this.append(row).catch((err: unknown) => this.#log?.error({ err }, 'audit spool: the gap row could not be written'));
  }

  #flush(): void {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    const waiters = this.#waiters;
    const bodies = this.#pending;
    this.#pending = [];
    this.#waiters = [];
    // chain in write order: each row's hash covers its seq and the previous row's hash
    let seq = this.#seq;
    let prev = this.#lastHash;
    let text = '';
    for (const body of bodies) {
      const { line, hash } = chainLine(body, ++seq, prev);
      text += line + '\n';
      prev = hash;
    }
    try {
      const buf = Buffer.from(text);
      let off = 0;
      while (off < buf.length) off += writeSync(this.#fd, buf, off);
      this.#segmentBytes += buf.length;
      this.#sizes.set(this.#segment, this.#segmentBytes);
      this.#rows += bodies.length;
      this.#seq = seq;
      this.#lastHash = prev;
      this.#dirty = true;
      this.#failure = undefined;
    } catch (err) {
      // the chain did not advance; a partial write is moved aside as torn at the next start
      const e = new Error(`audit spool write failed: ${(err as Error).message}`);
      this.#failure = e;
      for (const w of waiters) w.reject(e);
      return;
    }
    if (this.#config.durability === 'fsync') {
      this.#syncWaiters.push(...waiters);
      this.#sync();
    } else {
      for (const w of waiters) w.resolve();
    }
    this.#maybeRotate();
    this.#updateFull();
    for (const l of this.#listeners) l();
  }

  #sync(): void {
    if (this.#syncing || (!this.#dirty && this.#syncWaiters.length === 0)) return;
    this.#syncing = true;
    this.#dirty = false;
    const waiters = this.#syncWaiters;
    this.#syncWaiters = [];
    fdatasync(this.#fd, (err) => {
      this.#syncing = false;
      if (err) {
        const e = new Error(`audit spool fsync failed: ${err.message}`);
        this.#failure = e;
        for (const w of waiters) w.reject(e);
      } else {
        for (const w of waiters) w.resolve();
      }
      // rows that arrived while this fsync ran need the next one
      if (this.#syncWaiters.length > 0) this.#sync();
      else this.#maybeRotate();
    });
  }

  #openNext(prevSegment: string | null, torn: TornTail | null): void {
    this.#segment += 1;
    const path = join(this.#config.dir, segmentName(this.#segment));
    // the head is durable before the first row of its segment
    writeHead(
      path,
      { created: new Date().toISOString(), instance: this.#context().instance, first_seq: this.#seq + 1, prev_segment: prevSegment, prev_hash: this.#lastHash, torn },
      this.#signer,
    );
    this.#fd = openSync(path, 'a');
    this.#segmentBytes = 0;
    this.#sizes.set(this.#segment, 0);
  }

  #maybeRotate(): void {
    // never close the fd under an fdatasync still running on the libuv pool
    if (this.#segmentBytes >= this.#config.segmentBytes && !this.#syncing && !this.#closed) this.#rotate();
  }

  #rotate(): void {
    // sync and close the full segment synchronously: rotation is rare and must not reorder rows
    fdatasyncSync(this.#fd);
    this.#resolveSyncWaiters();
    closeSync(this.#fd);
    this.#openNext(segmentName(this.#segment), null);
    this.applyRetention();
  }

  #resolveSyncWaiters(): void {
    const waiters = this.#syncWaiters;
    this.#syncWaiters = [];
    for (const w of waiters) w.resolve();
  }

  /**
   * Deletes the oldest closed segments while they are older than maxAgeHours or the
   * spool is over maxTotalBytes; with a shipper, only segments it has fully shipped.
   * A signed retention marker keeps the chain checkable from the first remaining head.
   */
  applyRetention(now = Date.now()): string[] {
    const { maxAgeHours, maxTotalBytes } = this.#config.retention;
    if (maxAgeHours === undefined && maxTotalBytes === undefined) return [];
    if (this.#shipping && !this.#shipped) return [];
    const removed: string[] = [];
    let total = 0;
    for (const size of this.#sizes.values()) total += size;
    for (const path of listSegments(this.#config.dir)) {
      const seq = segmentSeq(path);
      if (seq >= this.#segment) break;
      const size = this.#sizes.get(seq) ?? 0;
      if (this.#shipped && (seq > this.#shipped.segment || (seq === this.#shipped.segment && this.#shipped.offset < size))) break;
      const old = maxAgeHours !== undefined && now - statSync(path).mtimeMs > maxAgeHours * 3_600_000;
      const over = maxTotalBytes !== undefined && total > maxTotalBytes;
      if (!old && !over) break;
      const line = readLastLine(path);
      const f = line ? chainFields(line) : undefined;
      const head = readHead(path);
      const last = f ? { last_seq: f.seq, last_hash: f.hash } : { last_seq: (head?.first_seq ?? 1) - 1, last_hash: head?.prev_hash ?? GENESIS };
      writeRetentionMarker(this.#config.dir, { removed_through: basename(path), ...last }, this.#signer);
      for (const p of [path, headPath(path), tornPath(path)]) {
        try {
          unlinkSync(p);
        } catch {
          // the torn file usually does not exist
        }
      }
      this.#sizes.delete(seq);
      total -= size;
      removed.push(basename(path));
    }
    if (removed.length > 0) this.#log?.info({ removed }, 'audit spool retention removed segments');
    return removed;
  }

  /** Writes and syncs everything pending, then closes the segment. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    clearInterval(this.#timer);
    clearInterval(this.#retentionTimer);
    while (this.#syncing) await new Promise((r) => setTimeout(r, 1));
    fdatasyncSync(this.#fd);
    this.#resolveSyncWaiters();
    closeSync(this.#fd);
  }
}
