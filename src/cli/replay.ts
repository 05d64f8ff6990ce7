import { hash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { RecordingRow } from '../recording/recorder.ts';
import { readSession } from '../recording/store.ts';
import { RawOpener } from '../recording/crypto.ts';
import { storeDirs, type StoreOptions } from './sessions.ts';

/**
 * `streamgate replay <session>`: re-produces a session's recorded records THROUGH a gateway,
 * under the replaying identity's token, so its policy, masking and audit apply to the
 * replay like to any other producer. Each record's payload is checked against its recorded
 * hash before it is sent; a record whose payload no longer matches is reported and not sent.
 */

export interface ReplayOptions {
  toTopic: string;
  /** bearer token of the replaying identity */
  token: string;
  /** http(s)://host:port of the gateway's HTTP listener, or kafka://host:port of its Kafka listener */
  gateway: string;
  /** as-recorded | max | <n>/s */
  rate: string;
  /** REST v3 cluster id of the HTTP listener */
  cluster: string;
  action: 'produce' | 'consume' | 'all';
  /** records per request at rate max */
  batch: number;
  /** keep each record's recorded partition (the target needs as many partitions) */
  keepPartitions: boolean;
  /**
   * replay the originals: rows with a raw payload (the value before masking or encryption,
   * JWE-sealed at recording) send it, opened with the recording key, so the target's rules
   * apply to what was written, not to what they already produced (an FF1 ciphertext would be
   * encrypted again)
   */
  raw?: RawOpener;
  onProgress?: (done: number, total: number) => void;
}

export interface ReplaySummary {
  session: string;
  topic: string;
  records: number;
  sent: number;
  bytes: number;
  hashesMatched: number;
  mismatches: Array<{ seq: number; offset: string; expected: string; actual: string }>;
  failed: Array<{ seq: number; error: string }>;
  ms: number;
}

type Pacer = (row: RecordingRow, index: number) => Promise<void>;

function pacer(rate: string, rows: RecordingRow[]): { pace: Pacer; batch: boolean } {
  if (rate === 'max') return { pace: async () => {}, batch: true };
  if (rate === 'as-recorded') {
    const t0 = rows.length > 0 ? Date.parse(rows[0]!.ts.replace(' ', 'T') + 'Z') : 0;
    const start = performance.now();
    return {
      batch: false,
      pace: async (row) => {
        const due = Date.parse(row.ts.replace(' ', 'T') + 'Z') - t0;
        const wait = due - (performance.now() - start);
        if (wait > 0) await sleep(wait);
      },
    };
  }
  const m = /^(\d+(?:\.\d+)?)\/s$/.exec(rate);
  if (!m || Number(m[1]) <= 0) throw new Error(`--rate is as-recorded, max or N/s (e.g. 100/s), not "${rate}"`);
  const interval = 1000 / Number(m[1]);
  const start = performance.now();
  return {
    batch: false,
    pace: async (_row, i) => {
      const wait = i * interval - (performance.now() - start);
      if (wait > 0) await sleep(wait);
    },
  };
}

interface Sender {
  send(rows: RecordingRow[]): Promise<Array<string | undefined>>;
  close(): Promise<void>;
}

function httpSender(o: ReplayOptions): Sender {
  const url = `${o.gateway.replace(/\/$/, '')}/v3/clusters/${encodeURIComponent(o.cluster)}/topics/${encodeURIComponent(o.toTopic)}/records:batch`;
  let pool: import('undici').Pool | undefined;
  return {
    async send(rows) {
      const { Pool } = await import('undici');
      pool ??= new Pool(new URL(url).origin, { connections: 1 });
      const entries = rows.map((r, i) => ({
        id: String(i),
        ...(o.keepPartitions && r.partition >= 0 ? { partition_id: r.partition } : {}),
        ...(r.key !== null ? { key: { type: 'BINARY', data: r.key } } : {}),
        ...(r.value !== null ? { value: { type: 'BINARY', data: r.value } } : {}),
        ...(r.headers.length > 0 ? { headers: r.headers.map(([name, value]) => ({ name, value })) } : {}),
      }));
      let res: import('undici').Dispatcher.ResponseData;
      let text: string;
      try {
        res = await pool.request({
          path: new URL(url).pathname,
          method: 'POST',
          headers: { authorization: `Bearer ${o.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ entries }),
        });
        text = await res.body.text();
      } catch (err) {
        // the gateway is not reachable: every record of the request failed, the summary says why
        return rows.map(() => `${url}: ${(err as Error).message}`);
      }
      if (res.statusCode !== 207 && res.statusCode !== 200) return rows.map(() => `HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
      const body = JSON.parse(text) as { successes?: Array<{ id: string }>; failures?: Array<{ id: string; message?: string; error_code?: number }> };
      const errors: Array<string | undefined> = rows.map(() => undefined);
      for (const f of body.failures ?? []) errors[Number(f.id)] = `${f.error_code ?? ''} ${f.message ?? 'failed'}`.trim();
      return errors;
    },
    async close() {
      await pool?.close();
    },
  };
}

async function kafkaSender(o: ReplayOptions): Promise<Sender> {
  const { Producer } = await import('@platformatic/kafka');
  const bootstrap = o.gateway.replace(/^kafka:\/\//, '');
  // the gateway verifies the token itself (SASL OAUTHBEARER)
  const producer = new Producer({ clientId: 'streamgate-replay', bootstrapBrokers: [bootstrap], sasl: { mechanism: 'OAUTHBEARER', token: o.token }, retries: 0 });
  const buf = (b64: string | null) => (b64 === null ? undefined : Buffer.from(b64, 'base64'));
  return {
    async send(rows) {
      try {
        await producer.send({
          messages: rows.map((r) => ({
            topic: o.toTopic,
            ...(o.keepPartitions && r.partition >= 0 ? { partition: r.partition } : {}),
            ...(r.key !== null ? { key: buf(r.key) } : {}),
            ...(r.value !== null ? { value: buf(r.value) } : {}),
            headers: new Map(r.headers.map(([k, v]) => [Buffer.from(k), Buffer.from(v, 'base64')])),
          })),
        });
        return rows.map(() => undefined);
      } catch (err) {
        return rows.map(() => (err as Error).message);
      }
    },
    async close() {
      await producer.close();
    },
  };
}

/** Replays recorded rows; the summary says what was sent, what matched its hash and what failed. */
export async function replay(session: string, all: RecordingRow[], o: ReplayOptions): Promise<ReplaySummary> {
  let rows = all.filter((r) => o.action === 'all' || r.action === o.action);
  if (o.raw) {
    const opener = o.raw;
    // the original payload, checked against the original's hash like any other
    rows = await Promise.all(rows.map(async (r) => (r.raw ? { ...r, value: Buffer.from(await opener.open(r.raw)).toString('base64'), hash: r.original_hash } : r)));
  }
  const summary: ReplaySummary = { session, topic: o.toTopic, records: rows.length, sent: 0, bytes: 0, hashesMatched: 0, mismatches: [], failed: [], ms: 0 };
  const t0 = performance.now();
  const { pace, batch } = pacer(o.rate, rows);
  const sender = o.gateway.startsWith('kafka://') ? await kafkaSender(o) : httpSender(o);
  try {
    let done = 0;
    for (let i = 0; i < rows.length; ) {
      const group: RecordingRow[] = [];
      while (i < rows.length && (group.length === 0 || (batch && group.length < o.batch))) {
        const row = rows[i]!;
        await pace(row, i);
        i++;
        const value = row.value === null ? Buffer.alloc(0) : Buffer.from(row.value, 'base64');
        const actual = hash('sha256', value, 'hex');
        if (actual !== row.hash) {
          summary.mismatches.push({ seq: row.seq, offset: row.offset, expected: row.hash, actual });
          done++;
          continue;
        }
        summary.hashesMatched++;
        group.push(row);
      }
      if (group.length > 0) {
        const errors = await sender.send(group);
        group.forEach((row, k) => {
          const e = errors[k];
          if (e) summary.failed.push({ seq: row.seq, error: e });
          else {
            summary.sent++;
            summary.bytes += Buffer.byteLength(row.value ?? '', 'base64') + Buffer.byteLength(row.key ?? '', 'base64');
          }
        });
        done += group.length;
      }
      o.onProgress?.(done, rows.length);
    }
  } finally {
    await sender.close();
  }
  summary.ms = Math.round(performance.now() - t0);
  return summary;
}

export function registerReplay(program: Command): void {
  program
    .command('replay')
    .description("re-produce a session's recorded records through the gateway under your own identity (its policy, masking and audit apply)")
    .argument('<session>', 'session id')
    .requiredOption('--to-topic <topic>', 'topic to produce the records to')
    .option('--as <token>', 'bearer token of the replaying identity (default $STREAMGATE_TOKEN)')
    .option('--rate <rate>', 'as-recorded | max | N/s', 'max')
    .option('--gateway <url>', 'http://host:port (HTTP listener) or kafka://host:port (Kafka listener)', 'http://127.0.0.1:8080')
    .option('--cluster <id>', 'REST v3 cluster id of the HTTP listener (listeners.http.clusterId)', 'streamgate')
    .option('--action <action>', 'which recorded records: produce | consume | all', 'all')
    .option('--batch <n>', 'records per request at --rate max', '500')
    .option('--keep-partitions', 'send each record to its recorded partition')
    .option('--json', 'print the summary as JSON')
    .option('--no-progress', 'no progress bar')
    .option('-c, --config <file>', 'configuration file to take recording.dir from')
    .option('-r, --recordings <dir>', 'recording directory (default ./data/recordings)')
    .option('--raw', 'replay the originals where the recording kept them (raw payloads): the target topic\'s rules then apply once, to what was written')
    .option('--key <key>', 'with --raw: the recording key, base64url secret (dir) or private key PEM file (ECDH-ES); default $STREAMGATE_RECORDING_KEY')
    .action(async (session: string, opts: StoreOptions & { toTopic: string; as?: string; rate: string; gateway: string; cluster: string; action: string; batch: string; keepPartitions?: boolean; json?: boolean; progress: boolean; raw?: boolean; key?: string }) => {
      const token = opts.as ?? process.env.STREAMGATE_TOKEN;
      if (!token) throw new Error('replay needs the replaying identity: --as <token> or STREAMGATE_TOKEN');
      if (!['produce', 'consume', 'all'].includes(opts.action)) throw new Error('--action is produce, consume or all');
      const rows = readSession(storeDirs(opts).recordings, session);
      if (rows.length === 0) throw new Error(`nothing recorded for session ${session}`);
      const { SingleBar, Presets } = await import('cli-progress');
      const bar = opts.progress && !opts.json ? new SingleBar({ format: 'replay [{bar}] {value}/{total} records | {duration_formatted}', stream: process.stderr }, Presets.shades_classic) : undefined;
      bar?.start(rows.length, 0);
      const summary = await replay(session, rows, {
        toTopic: opts.toTopic,
        token,
        gateway: opts.gateway,
        rate: opts.rate,
        cluster: opts.cluster,
        action: opts.action as ReplayOptions['action'],
        batch: Number(opts.batch),
        keepPartitions: opts.keepPartitions ?? false,
        ...(opts.raw ? { raw: new RawOpener(rawKey(opts.key)) } : {}),
        onProgress: (done, total) => {
          bar?.setTotal(total);
          bar?.update(done);
        },
      });
      bar?.stop();
      if (opts.json) console.log(JSON.stringify(summary));
      else {
        console.log(`replayed session ${session} to ${summary.topic}: ${summary.sent}/${summary.records} records, ${summary.bytes} bytes in ${summary.ms} ms`);
        console.log(`hashes matched: ${summary.hashesMatched}/${summary.records}${summary.mismatches.length > 0 ? ` — ${summary.mismatches.length} MISMATCHED (not sent)` : ''}`);
        for (const m of summary.mismatches.slice(0, 20)) console.log(`  mismatch seq ${m.seq} offset ${m.offset}: recorded ${m.expected.slice(0, 16)}…, payload ${m.actual.slice(0, 16)}…`);
        if (summary.failed.length > 0) console.log(`refused or failed: ${summary.failed.length} (first: ${summary.failed[0]!.error})`);
      }
      if (summary.mismatches.length > 0 || summary.failed.length > 0) process.exitCode = 1;
    });
}

function rawKey(given: string | undefined): string {
  const key = given ?? process.env.STREAMGATE_RECORDING_KEY;
  if (!key) throw new Error('--raw needs the recording key: --key <base64url secret | private key PEM file> or STREAMGATE_RECORDING_KEY');
  return key;
}
