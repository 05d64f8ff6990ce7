import { closeSync, openSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { write } from 'node:fs';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, gzip } from 'node:zlib';
import { filesIn } from '../files.ts';

const gzipAsync = promisify(gzip);
const writeAsync = promisify(write);

/**
 * Segment files of the recording spool: `rec-<start ms>-<pid>-<n>.jsonl.gz`, one gzip
 * member per write (gzip readers, zcat and ClickHouse's file() read concatenated members as
 * one stream), each with a `<segment>.head.json` naming what it holds (the raw-payload key id).
 * The start time and pid in the name keep several processes (`serve --processes`) and
 * restarts apart without coordination; names sort by start time.
 */
const SEGMENT = /^rec-(\d{13})-(\d+)-(\d{6})\.jsonl\.gz$/;

export interface SegmentHead {
  created: string;
  instance: string;
  format: 'streamgate-recording/1';
  /** how raw payloads in this segment are encrypted; null: no raw payloads */
  raw: { alg: string; enc: string; kid: string } | null;
}

export function listRecordingSegments(dir: string): string[] {
  return filesIn(dir, SEGMENT);
}

export function headPathOf(segment: string): string {
  return segment.replace(/\.jsonl\.gz$/, '.head.json');
}

export function readHeadOf(segment: string): SegmentHead | undefined {
  try {
    return JSON.parse(readFileSync(headPathOf(segment), 'utf8')) as SegmentHead;
  } catch {
    return undefined;
  }
}

/** The JSON lines of a segment; a torn last member (crash mid-write) ends the segment early. */
export function readSegmentLines(segment: string): string[] {
  const buf = readFileSync(segment);
  let data: Buffer;
  try {
    data = gunzipSync(buf);
  } catch {
    // a partly written last member: keep what decodes (zlib reports the good prefix via finishFlush)
    data = gunzipSync(buf, { finishFlush: 2 /* Z_SYNC_FLUSH */ });
  }
  return completeLines(data);
}

/** Complete '\n'-terminated lines of decompressed segment bytes, split without one giant string. */
export function completeLines(data: Buffer): string[] {
  const lines: string[] = [];
  let start = 0;
  for (let end = data.indexOf(10, start); end >= 0; end = data.indexOf(10, start)) {
    if (end > start) lines.push(data.toString('utf8', start, end));
    start = end + 1;
  }
  return lines; // bytes after the last newline are an incomplete line
}

export function totalBytes(dir: string): number {
  let n = 0;
  for (const s of listRecordingSegments(dir)) n += statSync(s).size;
  return n;
}

/**
 * Appends batches of JSON lines as gzip members, one write at a time and in order.
 * Compression runs on libuv's thread pool, so the accept thread only joins strings.
 * Nothing here waits for the disk on behalf of a client.
 */
export class SegmentWriter {
  readonly #dir: string;
  readonly #segmentBytes: number;
  readonly #level: number;
  readonly #head: Omit<SegmentHead, 'created'>;
  readonly #prefix: string;
  #n = 0;
  #fd = -1;
  #size = 0;
  #total: number;
  #tail: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(dir: string, options: { segmentBytes: number; gzipLevel: number; head: Omit<SegmentHead, 'created'> }) {
    this.#dir = dir;
    this.#segmentBytes = options.segmentBytes;
    this.#level = options.gzipLevel;
    this.#head = options.head;
    mkdirSync(dir, { recursive: true });
    this.#total = totalBytes(dir);
    this.#prefix = `rec-${String(Date.now()).padStart(13, '0')}-${process.pid}-`;
  }

  /** bytes of every segment in the directory, including this process's writes so far */
  get totalBytes(): number {
    return this.#total;
  }

  /** Queues one batch of lines (each ending in '\n'); resolves when written (or rejects). */
  append(text: string): Promise<void> {
    const run = async () => {
      if (this.#closed) throw new Error('recording writer is closed');
      const data = await gzipAsync(text, { level: this.#level });
      if (this.#fd < 0 || this.#size >= this.#segmentBytes) this.#open();
      // segmentBytes bounds the JSON, not the gzip: a reader holds one decompressed segment at a time
      const size = Buffer.byteLength(text);
      let off = 0;
      while (off < data.length) off += (await writeAsync(this.#fd, data, off, data.length - off)).bytesWritten;
      this.#size += size;
      this.#total += data.length;
    };
    const next = this.#tail.then(run);
    // a failed write must not stop later ones
    this.#tail = next.catch(() => {});
    return next;
  }

  #open(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#n += 1;
    const name = `${this.#prefix}${String(this.#n).padStart(6, '0')}.jsonl.gz`;
    const path = join(this.#dir, name);
    const head: SegmentHead = { created: new Date().toISOString(), ...this.#head };
    writeFileSync(headPathOf(path), JSON.stringify(head) + '\n');
    this.#fd = openSync(path, 'a');
    this.#size = 0;
  }

  get currentSegment(): string | undefined {
    return this.#n === 0 ? undefined : basename(`${this.#prefix}${String(this.#n).padStart(6, '0')}.jsonl.gz`);
  }

  async close(): Promise<void> {
    await this.#tail;
    this.#closed = true;
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }
}
