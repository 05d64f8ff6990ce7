import { closeSync, fdatasync, fdatasyncSync, mkdirSync, openSync, readdirSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditConfig } from '../config/schema.ts';
import type { AuditRow } from './row.ts';

type SpoolConfig = AuditConfig['spool'];

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

const SEGMENT = /^audit-(\d{8})\.jsonl$/;

export function segmentName(seq: number): string {
  return `audit-${String(seq).padStart(8, '0')}.jsonl`;
}

/** Segment files of a spool directory in write order. */
export function listSegments(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => SEGMENT.test(n)).sort().map((n) => join(dir, n));
}

/**
 * Append-only local spool of audit rows, one JSONEachRow segment file after another.
 *
 * Group commit: rows appended during one event-loop turn are written with one write(2)
 * in a setImmediate, and every caller's promise settles after that write. With
 * durability `write` a row is in the OS page cache (survives a gateway crash) before the
 * client is answered, and fdatasync runs every fsyncIntervalMs; with `fsync` callers
 * also wait for the fdatasync that covers their row (survives power loss).
 *
 * Each process start opens a new segment, so a row torn by a crash is always the last
 * line of a closed segment and never has rows appended after it.
 */
export class AuditSpool {
  readonly #config: SpoolConfig;
  #fd = -1;
  #seq = 0;
  #segmentBytes = 0;
  #pending: string[] = [];
  #waiters: Waiter[] = [];
  #syncWaiters: Waiter[] = [];
  #scheduled = false;
  #dirty = false;
  #syncing = false;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #rows = 0;
  #failure: Error | undefined;

  constructor(config: SpoolConfig) {
    this.#config = config;
    mkdirSync(config.dir, { recursive: true });
    const last = listSegments(config.dir).at(-1);
    this.#seq = last ? Number(SEGMENT.exec(last.slice(last.lastIndexOf('/') + 1))![1]) : 0;
    this.#openNext();
    this.#timer = setInterval(() => this.#sync(), config.fsyncIntervalMs);
    this.#timer.unref();
  }

  get dir(): string {
    return this.#config.dir;
  }

  /** false after a failed write or fsync, until a later write succeeds */
  get healthy(): boolean {
    return this.#failure === undefined;
  }

  /** rows written since start */
  get rowsWritten(): number {
    return this.#rows;
  }

  /** Resolves once the row is as durable as the configured guarantee. */
  append(row: AuditRow): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('audit spool is closed'));
    this.#pending.push(JSON.stringify(row));
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#waiters.push({ resolve, reject });
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
    return promise;
  }

  #flush(): void {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    const text = this.#pending.join('\n') + '\n';
    const waiters = this.#waiters;
    const count = this.#pending.length;
    this.#pending = [];
    this.#waiters = [];
    try {
      const buf = Buffer.from(text);
      let off = 0;
      while (off < buf.length) off += writeSync(this.#fd, buf, off);
      this.#segmentBytes += buf.length;
      this.#rows += count;
      this.#dirty = true;
      this.#failure = undefined;
    } catch (err) {
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

  #openNext(): void {
    this.#seq += 1;
    this.#fd = openSync(join(this.#config.dir, segmentName(this.#seq)), 'a');
    this.#segmentBytes = 0;
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
    this.#openNext();
  }

  #resolveSyncWaiters(): void {
    const waiters = this.#syncWaiters;
    this.#syncWaiters = [];
    for (const w of waiters) w.resolve();
  }

  /** Writes and syncs everything pending, then closes the segment. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    clearInterval(this.#timer);
    while (this.#syncing) await new Promise((r) => setTimeout(r, 1));
    fdatasyncSync(this.#fd);
    this.#resolveSyncWaiters();
    closeSync(this.#fd);
  }
}
