import type { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import { RawOpener } from '../recording/crypto.ts';
import type { RecordingRow } from '../recording/recorder.ts';
import { attachRecordings, readSession } from '../recording/store.ts';

export interface StoreOptions {
  config?: string;
  dir?: string;
  recordings?: string;
}

/** The audit spool and recording directories: flags, else the config file, else the defaults. */
export function storeDirs(opts: StoreOptions): { audit: string; recordings: string } {
  const config = opts.config ? loadConfig(opts.config) : undefined;
  return {
    audit: opts.dir ?? config?.audit.spool.dir ?? './data/audit',
    recordings: opts.recordings ?? config?.recording?.dir ?? './data/recordings',
  };
}

/** A SQL string literal. */
const lit = (s: string) => `'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;

interface ListFilters {
  identity?: string;
  topic?: string;
  since?: string;
  until?: string;
  decision?: string;
  recorded?: boolean;
  limit: string;
}

/** One row per session from the audit trail, with how much of it was recorded. */
export function sessionsSql(f: ListFilters): string {
  const having: string[] = [];
  if (f.identity) having.push(`has(subjects, ${lit(f.identity)})`);
  // topic: a glob like the policy's (`*` = any run of characters)
  if (f.topic) having.push(`arrayExists(t -> t LIKE ${lit(f.topic.replaceAll('%', '\\%').replaceAll('_', '\\_').replaceAll('*', '%'))}, topics)`);
  if (f.since) having.push(`last >= parseDateTime64BestEffort(${lit(f.since)}, 3)`);
  if (f.until) having.push(`started <= parseDateTime64BestEffort(${lit(f.until)}, 3)`);
  if (f.decision) having.push(`has(decisions, ${lit(f.decision)})`);
  if (f.recorded) having.push('ifNull(r.recorded, 0) > 0');
  const limit = Number(f.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new Error(`--limit must be a positive integer, not "${f.limit}"`);
  return `SELECT s.session_id AS session_id, started, last, protocol, client, subjects, topics, decisions, operations, records, ifNull(r.recorded, 0) AS recorded
FROM (
  SELECT session_id, min(ts) AS started, max(ts) AS last, any(protocol) AS protocol, anyIf(client_address, client_address != '') AS client,
    arraySort(groupUniqArrayIf(subject, subject != '')) AS subjects,
    arraySort(groupUniqArrayIf(resource, event = 'operation' AND resource_kind IN ('topic', 'stream'))) AS topics,
    arraySort(groupUniqArrayIf(toString(decision), event = 'operation')) AS decisions,
    countIf(event = 'operation') AS operations, sumIf(record_count, event = 'operation') AS records
  FROM audit_events WHERE session_id != '' GROUP BY session_id
) AS s LEFT JOIN (SELECT session_id, count() AS recorded FROM recordings GROUP BY session_id) AS r ON s.session_id = r.session_id
${having.length > 0 ? `WHERE ${having.join(' AND ')}` : ''}
ORDER BY started DESC LIMIT ${limit}
SETTINGS join_use_nulls = 1`;
}

async function openQuery(dirs: { audit: string; recordings: string }) {
  const { SpoolQuery } = await import('../audit/query.ts');
  const q = await SpoolQuery.open(dirs.audit);
  try {
    attachRecordings(q, dirs.recordings);
  } catch (err) {
    q.close();
    throw err;
  }
  return q;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** base64 payload -> its text where it is valid UTF-8 (JSON, text), else undefined */
function asText(b64: string | null): string | undefined {
  if (b64 === null) return undefined;
  try {
    return strictUtf8.decode(Buffer.from(b64, 'base64'));
  } catch {
    return undefined;
  }
}

/** A recorded row as exported: the payload as base64 and, where it is UTF-8 text, as text too. */
async function exportLine(row: RecordingRow, opener: RawOpener | undefined): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { ...row };
  delete out.raw;
  delete out.kid;
  const text = asText(row.value);
  if (text !== undefined) out.value_text = text;
  if (opener) {
    out.raw_value = row.raw ? Buffer.from(await opener.open(row.raw)).toString('base64') : row.value;
    const rawText = asText(out.raw_value as string | null);
    if (rawText !== undefined) out.raw_text = rawText;
  }
  return out;
}

function withStoreOptions(c: Command): Command {
  return c
    .option('-c, --config <file>', 'configuration file to take audit.spool.dir and recording.dir from')
    .option('-d, --dir <dir>', 'audit spool directory (default ./data/audit)')
    .option('-r, --recordings <dir>', 'recording directory (default ./data/recordings)');
}

/** `streamgate sessions list|show|export|query` */
export function registerSessionCommands(program: Command): void {
  const sessions = program.command('sessions').description('client sessions from the audit trail and their recordings');

  withStoreOptions(sessions.command('list'))
    .description('sessions, newest first, with their identities, topics, decisions and recorded records')
    .option('--identity <subject>', 'only sessions with an operation by this subject')
    .option('--topic <glob>', 'only sessions that touched a matching topic (* = any run of characters)')
    .option('--since <time>', 'only sessions active at or after this time (ISO 8601 / ClickHouse best-effort)')
    .option('--until <time>', 'only sessions started at or before this time')
    .option('--decision <d>', 'only sessions with an operation decided allow | deny | block | error | pending')
    .option('--recorded', 'only sessions with recorded records')
    .option('--limit <n>', 'at most this many sessions', '100')
    .option('-f, --format <format>', 'table | csv | tsv | json', 'table')
    .action(async (opts: StoreOptions & ListFilters & { format: string }) => {
      const q = await openQuery(storeDirs(opts));
      try {
        process.stdout.write(q.run(sessionsSql(opts), opts.format));
      } finally {
        q.close();
      }
    });

  withStoreOptions(sessions.command('show'))
    .description("one session: its audit rows (start, operations, end) and what was recorded")
    .argument('<id>', 'session id (session_id in the audit trail)')
    .option('-f, --format <format>', 'table | csv | tsv | json', 'table')
    .action(async (id: string, opts: StoreOptions & { format: string }) => {
      const q = await openQuery(storeDirs(opts));
      try {
        const rows = q.run(
          `SELECT ts, event, subject, action, resource, partition, decision, rule, record_count, bytes, arrayStringConcat(offsets, ' ') AS offsets, message
FROM audit_events WHERE session_id = ${lit(id)} ORDER BY ts, event_id`,
          opts.format,
        );
        if (rows.trim() === '') throw new Error(`no session ${id} in the audit trail`);
        process.stdout.write(rows);
        if (opts.format === 'table') {
          process.stdout.write('\nrecorded:\n');
          process.stdout.write(
            q.run(
              `SELECT action, topic, count() AS records, sum(length(base64Decode(ifNull(value, '')))) AS bytes, min(seq) AS first_seq, max(seq) AS last_seq, sum(masked) AS masked, countIf(raw != '') AS raw
FROM recordings WHERE session_id = ${lit(id)} GROUP BY action, topic ORDER BY min(seq)`,
              'table',
            ) || '(nothing recorded)\n',
          );
        }
      } finally {
        q.close();
      }
    });

  withStoreOptions(sessions.command('export'))
    .description('the recorded records of a session as NDJSON (payloads base64), in order')
    .argument('<id>', 'session id')
    .option('--raw', 'add raw_value: the original payloads (before masking), decrypted with --key')
    .option('--key <key>', 'the recording key: base64url secret (dir) or private key PEM file (ECDH-ES); default $STREAMGATE_RECORDING_KEY')
    .action(async (id: string, opts: StoreOptions & { raw?: boolean; key?: string }) => {
      const dirs = storeDirs(opts);
      const key = opts.key ?? process.env.STREAMGATE_RECORDING_KEY;
      if (opts.raw && !key) {
        console.error('streamgate: --raw needs the recording key: pass --key <base64url secret | private key PEM file> or set STREAMGATE_RECORDING_KEY. Raw payloads are stored encrypted (JWE) and cannot be exported without it.');
        process.exitCode = 2;
        return;
      }
      const rows = readSession(dirs.recordings, id);
      if (rows.length === 0) {
        console.error(`streamgate: nothing recorded for session ${id} in ${dirs.recordings}`);
        process.exitCode = 1;
        return;
      }
      const opener = opts.raw ? new RawOpener(key!) : undefined;
      for (const row of rows) process.stdout.write(JSON.stringify(await exportLine(row, opener)) + '\n');
    });

  withStoreOptions(sessions.command('query'))
    .description('ClickHouse SQL (chDB) over audit_events and recordings')
    .argument('<sql>', 'e.g. "SELECT topic, count() FROM recordings GROUP BY topic"')
    .option('-f, --format <format>', 'table | csv | tsv | json, or any ClickHouse output format', 'table')
    .action(async (sql: string, opts: StoreOptions & { format: string }) => {
      const q = await openQuery(storeDirs(opts));
      try {
        process.stdout.write(q.run(sql, opts.format));
      } finally {
        q.close();
      }
    });
}
