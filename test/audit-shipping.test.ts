import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, writeFileSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { Agent, request } from 'undici';
import { createTopics, getInfra, readAudit, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig, type ConfigInput } from './helpers/config.ts';
import { startTestClickHouse } from './helpers/clickhouse.ts';
import { freePort, type RunningClickHouse } from '../src/dev/clickhouse.ts';
import { AuditSpool, listSegments } from '../src/audit/spool.ts';
import { ClickHouseShipper } from '../src/audit/shipper.ts';
import { clickhouseSchema } from '../src/audit/schema.ts';
import { eventRow, type AuditRow } from '../src/audit/row.ts';
import { createLogger } from '../src/log.ts';

// Shipping the audit trail to a real ClickHouse server (Debian's 18.16) through outages
// and crashes: every row exactly once, none lost, none duplicated.

const run = promisify(execFile);
const NODE = process.execPath;
const CLI = new URL('../src/cli/main.ts', import.meta.url).pathname;
const TOPIC = 'audit.shipping';
const log = createLogger('silent');

let infra: Infra;
let ch: RunningClickHouse;
let token: string;
const agent = new Agent({ connections: 32 });
const clients: ClickHouseClient[] = [];

/** Adds an audit.clickhouse section to a test config draft. */
function withClickHouse(c: ConfigInput, url: string, database: string): void {
  c.audit!.clickhouse = { url, database, autoMigrate: true, batchRows: 500, flushIntervalMs: 100, retryInitialMs: 100, retryMaxMs: 400, requestTimeoutMs: 5000 };
}

function chClient(url: string, database: string): ClickHouseClient {
  const c = createClient({ url, database });
  clients.push(c);
  return c;
}

async function scalar(c: ClickHouseClient, sql: string): Promise<number> {
  const rs = await c.query({ query: sql, format: 'JSONEachRow' });
  const [row] = await rs.json<Record<string, string>>();
  return Number(Object.values(row!)[0]);
}

async function produce(base: string, i: number): Promise<{ status: number; offset?: string }> {
  const res = await request(`${base}/v3/clusters/local/topics/${TOPIC}/records`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ value: { type: 'JSON', data: { i, note: 'audit shipping' } } }),
  });
  const json = (await res.body.json()) as { partition_id?: number; offset?: number };
  return { status: res.statusCode, offset: res.statusCode === 200 ? `${json.partition_id}:${json.offset}` : undefined };
}

before(async () => {
  infra = await getInfra();
  // platform-admin may produce anywhere; payments-writer (alice) only to payments.* and orders
  token = await infra.idp.token('ops');
  await createTopics(infra.kafka, [TOPIC], 2);
  ch = await startTestClickHouse();
});

after(async () => {
  await agent.close();
  for (const c of clients) await c.close().catch(() => {});
});

test('ClickHouse stopped and restarted under load: every audit row arrives exactly once', async () => {
  const db = 'sg_outage';
  const { config, spoolDir } = testConfig(infra, (c) => withClickHouse(c, ch.url, db));
  const gateway = await startGateway(config);
  const base = `http://127.0.0.1:${gateway.addresses.http!.port}`;
  const shipper = gateway.auditShipper!;
  const acked: string[] = [];
  const burst = async (from: number, n: number) => {
    const results = await Promise.all(Array.from({ length: n }, (_, i) => produce(base, from + i)));
    for (const r of results) {
      assert.equal(r.status, 200, 'ClickHouse being down never fails a produce');
      acked.push(r.offset!);
    }
  };

  await burst(0, 200);
  await shipper.drain(20_000);
  const c = chClient(ch.url, db);
  assert.ok((await scalar(c, 'SELECT count() FROM audit_events')) >= 200);

  // ClickHouse goes away (SIGKILL, as a crash would), the gateway keeps serving from its spool
  await ch.kill();
  await burst(200, 300);
  await new Promise((r) => setTimeout(r, 600)); // a few failed attempts and backoffs
  assert.ok(shipper.stats.retries > 0, 'the shipper retried');
  assert.ok(gateway.auditSpool.unshippedBytes > 0);
  ch = await startTestClickHouse({ dataDir: ch.dataDir, port: ch.port, tcpPort: ch.tcpPort });
  await burst(500, 200);
  await shipper.drain(30_000);

  // one more client on its own connection: its session's start and end are rows too
  const own = new Agent({ connections: 1 });
  const res = await request(`${base}/healthz`, { dispatcher: own });
  await res.body.dump();
  const r = await request(`${base}/v3/clusters/local/topics/${TOPIC}/records`, { method: 'POST', dispatcher: own, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'user-agent': 'session-probe/1' }, body: '{"value":{"data":1}}' });
  await r.body.dump();
  await own.close();
  let sessionRows: AuditRow[] = [];
  for (let i = 0; i < 50 && sessionRows.length < 2; i++) {
    await new Promise((r) => setTimeout(r, 20));
    sessionRows = readAudit(spoolDir).filter((x) => x.client_software === 'session-probe/1' && x.event !== 'operation');
  }
  assert.deepEqual(sessionRows.map((x) => x.event), ['session-start', 'session-end']);
  assert.equal(sessionRows[0]!.session_id, sessionRows[1]!.session_id);
  assert.ok(sessionRows[1]!.latency_us > 0, 'session-end carries the session duration');
  await shipper.drain(30_000);

  const spoolRows = readAudit(spoolDir);
  const total = spoolRows.length;
  const c2 = chClient(ch.url, db);
  assert.equal(await scalar(c2, 'SELECT count() FROM audit_events'), total, 'no row lost or duplicated');
  assert.equal(await scalar(c2, 'SELECT uniqExact(event_id) FROM audit_events'), total);
  const rs = await c2.query({ query: `SELECT arrayJoin(offsets) AS o FROM audit_events WHERE resource = '${TOPIC}' AND decision = 'allow'`, format: 'JSONEachRow' });
  const offsets = new Set((await rs.json<{ o: string }>()).map((r) => r.o));
  assert.equal(acked.length, 700);
  for (const o of acked) assert.ok(offsets.has(o), `acknowledged write ${o} has its row in ClickHouse`);
  // the rollups saw each row once too
  assert.equal(await scalar(c2, `SELECT sum(ops) FROM audit_hourly_topic WHERE resource = '${TOPIC}'`), 701, '700 + the session probe');
  const ids = new Set(spoolRows.map((r) => r.event_id));
  const rs2 = await c2.query({ query: 'SELECT toString(event_id) AS id FROM audit_events', format: 'JSONEachRow' });
  for (const { id } of await rs2.json<{ id: string }>()) assert.ok(ids.has(id));
});

test('a batch re-sent after a crash (its range still in flight in the state file) is not inserted twice', async () => {
  const db = 'sg_resend';
  const dir = mkdtempSync(join(tmpdir(), 'sg-resend-'));
  const ctx = { instance: 'gw-resend', policyVersion: 'p' };
  const spool = new AuditSpool({ dir }, { context: () => ctx });
  for (let i = 0; i < 50; i++) await spool.append(eventRow(ctx, 'operation', { subject: `u${i % 5}`, action: 'produce', resource: 'r', record_count: 1 }));
  const cfg = clickhouseSchema.parse({ url: ch.url, database: db, autoMigrate: true, flushIntervalMs: 50, batchRows: 20 });
  let shipper = new ClickHouseShipper(spool, cfg, log);
  shipper.start();
  await shipper.drain(20_000);
  await shipper.stop();
  const c = chClient(ch.url, db);
  assert.equal(await scalar(c, 'SELECT count() FROM audit_events'), 50);

  // crash between the insert and the state update: the last batch is still "in flight"
  const statePath = join(dir, 'shipper-state.json');
  const state = JSON.parse(readFileSync(statePath, 'utf8')) as { offset: number; rows: number; inflight: unknown };
  const lines = readFileSync(listSegments(dir)[0]!, 'utf8').split('\n').filter(Boolean);
  const tail = lines.slice(40).map((l) => Buffer.byteLength(l) + 1).reduce((a, b) => a + b, 0);
  const start = state.offset - tail;
  const ev = (l: string) => (JSON.parse(l) as AuditRow).event_id;
  state.inflight = [{ segment: 1, start, end: state.offset, rows: 10, firstEventId: ev(lines[40]!), lastEventId: ev(lines[49]!) }];
  state.offset = start;
  writeFileSync(statePath, JSON.stringify(state));

  shipper = new ClickHouseShipper(spool, cfg, log);
  shipper.start();
  await shipper.drain(20_000);
  await shipper.stop();
  await spool.close();
  assert.equal(shipper.stats.duplicatesSkipped, 1);
  assert.equal(await scalar(c, 'SELECT count() FROM audit_events'), 50);
  assert.equal(await scalar(c, 'SELECT uniqExact(event_id) FROM audit_events'), 50);
});

test('kill -9 of the gateway under load: after restart every acknowledged operation has its row, and verify passes until a row is edited', async () => {
  const db = 'sg_crash';
  const dir = mkdtempSync(join(tmpdir(), 'sg-crash-'));
  const spoolDir = join(dir, 'audit');
  const port = await freePort();
  // a fixed HTTP port and spool directory: the restarted process takes over both
  const { yaml } = testConfig(infra, (c) => {
    withClickHouse(c, ch.url, db);
    c.log = { level: 'warn' };
    c.listeners.http!.port = port;
    c.audit!.spool!.dir = spoolDir;
  });
  const configFile = join(dir, 'gateway.yaml');
  writeFileSync(configFile, yaml);
  const base = `http://127.0.0.1:${port}`;
  const children: ChildProcess[] = [];
  const startChild = async () => {
    const out = openSync(join(dir, 'gateway.log'), 'a');
    const child = spawn(NODE, [CLI, 'serve', '--config', configFile], { stdio: ['ignore', out, out] });
    closeSync(out);
    children.push(child);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const up = await request(`${base}/healthz`).then((r) => r.body.dump().then(() => r.statusCode === 200), () => false);
      if (up) return child;
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`gateway did not start:\n${readFileSync(join(dir, 'gateway.log'), 'utf8')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  try {
    const first = await startChild();
    const acked: string[] = [];
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const r = await produce(base, w * 100_000 + i).catch(() => undefined);
        if (r?.status === 200) acked.push(r.offset!);
      }
    };
    const load = Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
    await new Promise((r) => setTimeout(r, 1500));
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    stop = true;
    await load;
    assert.ok(acked.length > 50, `${acked.length} writes acknowledged before the kill`);

    // restart: the shipper replays the spool the dead process left
    const second = await startChild();
    const c = chClient(ch.url, db);
    const spoolCount = () => listSegments(spoolDir).reduce((n, f) => n + readFileSync(f, 'utf8').split('\n').filter(Boolean).length, 0);
    const deadline = Date.now() + 30_000;
    let shipped = 0;
    while ((shipped = await scalar(c, 'SELECT count() FROM audit_events').catch(() => -1)) !== spoolCount()) {
      if (Date.now() > deadline) assert.fail(`ClickHouse has ${shipped} rows, the spool ${spoolCount()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(await scalar(c, 'SELECT uniqExact(event_id) FROM audit_events'), shipped);
    const rs = await c.query({ query: `SELECT arrayJoin(offsets) AS o FROM audit_events WHERE resource = '${TOPIC}'`, format: 'JSONEachRow' });
    const offsets = new Set((await rs.json<{ o: string }>()).map((r) => r.o));
    const missing = acked.filter((o) => !offsets.has(o));
    assert.deepEqual(missing, [], 'every acknowledged write has its audit row in ClickHouse');

    second.kill('SIGTERM');
    await new Promise((r) => second.once('exit', r));
    const ok = await run(NODE, [CLI, 'audit', 'verify', '--dir', spoolDir]);
    assert.match(ok.stdout, /^OK: \d+ rows in \d+ segments/);

    // tamper with one row of the first segment
    const seg = listSegments(spoolDir)[0]!;
    const lines = readFileSync(seg, 'utf8').split('\n');
    const n = Math.min(5, lines.length - 2);
    const victim = JSON.parse(lines[n]!) as AuditRow;
    lines[n] = lines[n]!.replace(`"resource":"${victim.resource}"`, `"resource":"${victim.resource}x"`);
    writeFileSync(seg, lines.join('\n'));
    const bad = await run(NODE, [CLI, 'audit', 'verify', '--dir', spoolDir]).then(
      () => assert.fail('verify must fail'),
      (e: { code: number; stdout: string }) => e,
    );
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, new RegExp(`^BROKEN: ${basename(seg)}:${n + 1} \\(event ${victim.event_id}\\): the row was changed`));
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});
