import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { eventRow, type AuditRow, type RowContext } from '../src/audit/row.ts';
import { AuditSpool, listSegments } from '../src/audit/spool.ts';
import { ClickHouseShipper } from '../src/audit/shipper.ts';
import { connect, migrate, installedSchema } from '../src/audit/migrate.ts';
import { fileStructure, schemaStatements, SCHEMA_VERSION } from '../src/audit/ddl.ts';
import { SpoolQuery } from '../src/audit/query.ts';
import { clickhouseSchema } from '../src/audit/schema.ts';
import { createLogger } from '../src/log.ts';
import { startTestClickHouse } from './helpers/clickhouse.ts';
import type { RunningClickHouse } from '../src/dev/clickhouse.ts';

// The analysts' schema and every query in docs/analysts.md, on three engines:
// chDB over the spool files (what `audit query` does), chDB with the modern server DDL,
// and a real ClickHouse server (Debian's 18.16: the legacy DDL) fed by the shipper.

const run = promisify(execFile);
const ctx: RowContext = { instance: 'gw-test', policyVersion: 'p1' };
const HELLO = createHash('sha256').update('hello').digest('hex');
const log = createLogger('silent');

let server: RunningClickHouse;
let client: ClickHouseClient;
/** default database = the audit database, as an analyst connects */
let analyst: ClickHouseClient;
let spoolDir: string;
let chdb: SpoolQuery;
const DB = 'sg_docs';

function fixtureRows(): AuditRow[] {
  const op = (f: Partial<AuditRow>) => eventRow(ctx, 'operation', { protocol: 'http', client_address: '127.0.0.1', client_software: 'curl/8', issuer: 'http://idp', resource_kind: 'topic', ...f });
  const rows: AuditRow[] = [];
  // Q1: bob read payments.cards unmasked; carol read it masked
  rows.push(op({ subject: 'bob', action: 'consume', resource: 'payments.cards', record_count: 5, bytes: 500 }));
  rows.push(op({ subject: 'bob', action: 'consume', resource: 'payments.cards', record_count: 2, bytes: 200 }));
  rows.push(op({ subject: 'carol', action: 'consume', resource: 'payments.cards', record_count: 3, bytes: 300, masking: { 'pci.card-number': 3 } }));
  // Q2: blocked writes
  for (const rule of ['pci.block-raw', 'pci.block-raw', 'secrets.aws-key']) rows.push(op({ subject: 'alice', action: 'produce', resource: 'payments.cards', decision: 'block', reason: 'blocked', rule, record_count: 1, bytes: 50 }));
  // Q3, Q7, Q9: allowed writes with masking and a known payload hash
  rows.push(op({ subject: 'alice', action: 'produce', resource: 'payments.cards', record_count: 2, bytes: 2048, record_hashes: [HELLO, 'ab'.repeat(32)], offsets: ['0:41', '0:42'], masking: { 'pci.card-number': 2, 'pii.email': 1 }, masked_hashes: ['cd'.repeat(32), ''] }));
  rows.push(op({ subject: 'carol', action: 'produce', resource: 'orders', record_count: 1, bytes: 4096, record_hashes: ['ef'.repeat(32)], offsets: ['1:7'] }));
  rows.push(op({ subject: 'dave', action: 'produce', resource: 'orders', record_count: 1, bytes: 100, masking: { 'pii.email': 4 }, meta: { path: 'records', note: 'has "quotes" and \\ backslash' }, message: '' }));
  // Q4: an approval and the write made under it
  rows.push(eventRow(ctx, 'approval-request', { subject: 'alice', action: 'produce', resource: 'payments.ledger', decision: 'pending', approval_id: 'apr-1' }));
  rows.push(eventRow(ctx, 'approval-decision', { subject: 'ops', action: 'produce', resource: 'payments.ledger', decision: 'allow', approval_id: 'apr-1' }));
  rows.push(op({ subject: 'alice', action: 'produce', resource: 'payments.ledger', approval_id: 'apr-1', record_count: 4, bytes: 400 }));
  // Q5: failed logins
  for (const software of ['curl/8', 'python-requests/2', 'curl/8']) rows.push(op({ client_address: '10.1.2.3', client_software: software, action: 'produce', resource: 'orders', decision: 'deny', reason: 'unauthenticated', message: 'a bearer token is required', subject: '', issuer: '' }));
  // Q6: denials
  rows.push(op({ subject: 'bob', action: 'produce', resource: 'payments.empty', decision: 'deny', reason: 'forbidden', rule: 'default-deny', message: 'bob may not produce to topic "payments.empty"' }));
  rows.push(op({ subject: 'bob', action: 'produce', resource: 'payments.empty', decision: 'deny', reason: 'forbidden', rule: 'default-deny' }));
  // Q10: values refused by a topic's schema rules
  for (const rule of ['schema.unknown', 'schema.unknown', 'schema.unframed']) rows.push(op({ subject: 'erin', action: 'produce', resource: 'customers.avro', decision: 'block', reason: 'invalid', rule, record_count: 2, bytes: 90 }));
  // Q11: values revealed by decrypt rules (and one that was not), beside an encrypting write
  rows.push(op({ subject: 'fran', action: 'consume', resource: 'cards.orders', record_count: 3, bytes: 300, masking: { 'pci.card-reveal@v1': 3, 'pii.ssn-reveal@v1': 2 } }));
  rows.push(op({ subject: 'fran', action: 'consume', resource: 'cards.orders', record_count: 1, bytes: 100, masking: { 'pci.card-reveal@v1': 1, 'pii.ssn-reveal!UNKNOWN_KEY': 1 } }));
  rows.push(op({ subject: 'alice', action: 'produce', resource: 'cards.orders', record_count: 4, bytes: 400, masking: { 'pci.card-encrypt@v1': 4 } }));
  // Q8: sessions
  rows.push(eventRow(ctx, 'session-start', { session_id: 's1', protocol: 'http', client_software: 'curl/8' }));
  rows.push(eventRow(ctx, 'session-end', { session_id: 's1', protocol: 'http', client_software: 'curl/8', latency_us: 1_500_000 }));
  rows.push(eventRow(ctx, 'session-end', { session_id: 's2', protocol: 'kafka', client_software: 'librdkafka/2', latency_us: 40_000_000 }));
  // Q11: a gap row
  rows.push(eventRow(ctx, 'spool-gap', { decision: 'error', reason: 'spool-full', record_count: 17 }));
  return rows;
}

/** Docs code blocks over the audit tables, in order (the recordings queries run in test/recording.test.ts). */
function documentedQueries(): string[] {
  const md = readFileSync(new URL('../docs/analysts.md', import.meta.url), 'utf8');
  return [...md.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]!.trim()).filter((q) => !/\bFROM recordings\b/.test(q));
}

/** Text results differ only in how DateTime64 prints milliseconds and how numbers are quoted. */
function normalize(text: string): unknown[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const row = JSON.parse(line) as Record<string, unknown>;
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(row)) out[k] = String(v).replace(/^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.\d{3}$/, '$1');
      return out;
    });
}

before(async () => {
  server = await startTestClickHouse();
  client = connect(clickhouseSchema.parse({ url: server.url, database: DB }));
  spoolDir = mkdtempSync(join(tmpdir(), 'sg-docs-'));
  const spool = new AuditSpool({ dir: spoolDir, segmentBytes: 4096 }, { context: () => ctx });
  for (const row of fixtureRows()) await spool.append(row);
  const shipper = new ClickHouseShipper(spool, clickhouseSchema.parse({ url: server.url, database: DB, autoMigrate: true, flushIntervalMs: 50 }), log);
  shipper.start();
  try {
    await shipper.drain(30_000);
  } finally {
    await shipper.stop();
    await spool.close();
  }

  analyst = createClient({ url: server.url, database: DB });
  chdb = await SpoolQuery.open(spoolDir);
  // the modern server schema, in the same chDB session, fed the same spool bytes
  for (const stmt of schemaStatements({ database: 'modern', variant: 'modern', ttlDays: 30 })) chdb.run(stmt, 'TSV');
  const glob = join(spoolDir, 'audit-*.jsonl');
  chdb.run(`INSERT INTO modern.audit_events SELECT * FROM file('${glob}', 'JSONEachRow', '${fileStructure().replaceAll("'", "\\'")}') SETTINGS input_format_skip_unknown_fields = 1`, 'TSV');
});

after(async () => {
  chdb?.close();
  await client?.close();
  await analyst?.close();
});

test('migrate picks the legacy variant on ClickHouse 18.16, records its version, and is idempotent', async () => {
  assert.match(server.version, /^18\./);
  const schema = await installedSchema(client, DB);
  assert.deepEqual(schema, { version: SCHEMA_VERSION, variant: 'legacy' });
  const again = await migrate(client, { database: DB, ttlDays: 30 });
  assert.equal(again.statements.length, 0);
  const rs = await client.query({ query: `SELECT name, engine FROM system.tables WHERE database = '${DB}' ORDER BY name`, format: 'JSONEachRow' });
  const tables = Object.fromEntries((await rs.json<{ name: string; engine: string }>()).map((t) => [t.name, t.engine]));
  assert.equal(tables.audit_events, 'ReplacingMergeTree');
  assert.equal(tables.audit_events_ingest, 'Null');
  assert.equal(tables.audit_hourly_identity, 'SummingMergeTree');
  assert.equal(tables.audit_hourly_topic_mv, 'MaterializedView');
});

test('the shipped rows keep every column, chain fields included', async () => {
  const rows = fixtureRows().length;
  const rs = await client.query({ query: `SELECT count() AS n, uniqExact(event_id) AS ids, min(seq) AS lo, max(seq) AS hi FROM ${DB}.audit_events`, format: 'JSONEachRow' });
  assert.deepEqual(await rs.json(), [{ n: String(rows), ids: String(rows), lo: '1', hi: String(rows) }]);
  // the row with escapes in strings and the JSON-text meta column of the legacy variant
  const dave = await client.query({ query: `SELECT meta, masking_rules, masking_counts FROM ${DB}.audit_events WHERE subject = 'dave'`, format: 'JSONEachRow' });
  const [d] = await dave.json<{ meta: string; masking_rules: string[]; masking_counts: number[] }>();
  assert.deepEqual(JSON.parse(d!.meta), { path: 'records', note: 'has "quotes" and \\ backslash' });
  assert.deepEqual(d!.masking_rules, ['pii.email']);
  assert.deepEqual(d!.masking_counts, [4]);
  // the hashes ClickHouse holds are the spool's
  // the last row of the spool (a rotation can leave the newest segment empty)
  const last = listSegments(spoolDir).flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean)).at(-1)!;
  const { hash, prev_hash, seq } = JSON.parse(last) as { hash: string; prev_hash: string; seq: number };
  const h = await client.query({ query: `SELECT hash, prev_hash FROM ${DB}.audit_events WHERE seq = ${seq}`, format: 'JSONEachRow' });
  assert.deepEqual(await h.json(), [{ hash, prev_hash }]);
  // the modern schema in chDB got the same rows, the Map columns included
  const m = normalize(chdb.run(`SELECT count() AS n, sum(masking['pii.email']) AS email, any(meta['path']) AS path FROM modern.audit_events WHERE subject = 'dave'`, 'JSONEachRow'));
  assert.deepEqual(m, [{ n: '1', email: '4', path: 'records' }]);
});

test('every documented query runs and agrees on chDB over the spool, chDB with the modern DDL, and ClickHouse 18.16', async () => {
  const queries = documentedQueries();
  assert.ok(queries.length >= 10, `docs/analysts.md has ${queries.length} queries`);
  for (const [i, sql] of queries.entries()) {
    const label = `query ${i + 1}: ${sql.split('\n')[0]}`;
    const spool = normalize(chdb.run(sql, 'JSONEachRow'));
    const modern = normalize(chdb.run(`USE modern; ${sql}`, 'JSONEachRow'));
    chdb.run('USE default', 'TSV');
    const legacy = normalize(await (await analyst.query({ query: sql, format: 'JSONEachRow' })).text());
    assert.ok(spool.length > 0, `${label}: the fixture answers it`);
    assert.deepEqual(modern, spool, `${label}: modern DDL vs spool`);
    assert.deepEqual(legacy, spool, `${label}: ClickHouse ${server.version} vs spool`);
  }
});

test('the printed DDL runs as printed, and the cluster variant is ON CLUSTER, replicated and distributed', async () => {
  const cli = new URL('../src/cli/main.ts', import.meta.url).pathname;
  const { stdout } = await run(process.execPath, [cli, 'audit', 'migrate', '--print', '--variant', 'legacy', '--database', 'sg_printed']);
  const statements = stdout.split(';\n').map((s) => s.trim()).filter(Boolean);
  for (const query of statements) await client.command({ query });
  const printed = connect(clickhouseSchema.parse({ url: server.url, database: 'sg_printed' }));
  try {
    assert.deepEqual(await installedSchema(printed, 'sg_printed'), { version: SCHEMA_VERSION, variant: 'legacy' });
  } finally {
    await printed.close();
  }
  const cluster = (await run(process.execPath, [cli, 'audit', 'migrate', '--print', '--cluster', 'audit_cluster'])).stdout;
  assert.match(cluster, /CREATE TABLE IF NOT EXISTS streamgate\.audit_events_local ON CLUSTER audit_cluster/);
  assert.match(cluster, /ReplicatedReplacingMergeTree\('\/clickhouse\/tables\/\{shard\}\/streamgate\/audit_events', '\{replica\}'\)/);
  assert.match(cluster, /ENGINE = Distributed\(audit_cluster, streamgate, audit_events_local, cityHash64\(event_id\)\)/);
  assert.match(cluster, /audit_hourly_topic_mv ON CLUSTER audit_cluster TO streamgate\.audit_hourly_topic_local/);
});
