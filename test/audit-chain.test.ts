import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { headPath, loadPublicKey, loadSigner, readHead, verifyChain } from '../src/audit/chain.ts';
import { eventRow, type AuditRow, type RowContext } from '../src/audit/row.ts';
import { AuditSpool, listSegments } from '../src/audit/spool.ts';

// The hash chain, signed heads, torn tails, retention and the full-spool policies.

const run = promisify(execFile);
const NODE = process.execPath;
const CLI = new URL('../src/cli/main.ts', import.meta.url).pathname;
const ctx: RowContext = { instance: 'gw-chain', policyVersion: 'p1' };

function row(i: number): AuditRow {
  return eventRow(ctx, 'operation', { subject: i % 2 ? 'alice' : 'bob', action: 'produce', resource: 'orders', record_count: 1, bytes: 10 + i, message: `row ${i} with "quotes"` });
}

function freshDir(): string {
  return mkdtempSync(join(tmpdir(), 'sg-chain-'));
}

async function write(dir: string, from: number, count: number, options: ConstructorParameters<typeof AuditSpool>[1] = {}, config: Partial<ConstructorParameters<typeof AuditSpool>[0]> = {}): Promise<void> {
  const spool = new AuditSpool({ dir, segmentBytes: 1500, ...config }, { context: () => ctx, ...options });
  for (let i = from; i < from + count; i++) await spool.append(row(i));
  await spool.close();
}

function keyPair(dir: string): { priv: string; pubFile: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pubFile = join(dir, '..', `${basename(dir)}.pub`);
  writeFileSync(pubFile, publicKey.export({ type: 'spki', format: 'pem' }));
  return { priv: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), pubFile };
}

/** Rewrites line `n` (1-based) of a segment through `edit`. */
function editLine(file: string, n: number, edit: (line: string) => string | undefined): void {
  const lines = readFileSync(file, 'utf8').split('\n');
  const next = edit(lines[n - 1]!);
  if (next === undefined) lines.splice(n - 1, 1);
  else lines[n - 1] = next;
  writeFileSync(file, lines.join('\n'));
}

test('the chain continues across rotations and restarts, and signed heads verify against the pinned key', async () => {
  const dir = freshDir();
  const { priv, pubFile } = keyPair(dir);
  const signer = loadSigner(priv);
  await write(dir, 0, 30, { signer });
  await write(dir, 30, 30, { signer });
  const segments = listSegments(dir);
  assert.ok(segments.length > 4, `${segments.length} segments`);
  const report = verifyChain(segments, dir, { publicKey: loadPublicKey(pubFile) });
  assert.equal(report.ok, true, JSON.stringify(report.firstBreak));
  assert.equal(report.rows, 60);
  assert.equal(report.lastSeq, 60);
  assert.deepEqual(report.keyIds, [signer!.keyId]);
  // every head names the segment before it
  const heads = segments.map((s) => readHead(s)!);
  assert.equal(heads[0]!.prev_segment, null);
  for (let i = 1; i < heads.length; i++) assert.equal(heads[i]!.prev_segment, basename(segments[i - 1]!));

  // a head signed by another key fails against the pinned key
  const other = keyPair(freshDir());
  const r2 = verifyChain(segments, dir, { publicKey: loadPublicKey(other.pubFile) });
  assert.equal(r2.ok, false);
  assert.match(r2.firstBreak!.reason, /not by the pinned key/);
});

test('an edited row, a removed row and a removed segment break the chain exactly there; the CLI says where', async () => {
  const dir = freshDir();
  await write(dir, 0, 40, {}, { segmentBytes: 4000 });
  const segments = listSegments(dir);
  const target = segments[1]!;
  const victim = readFileSync(target, 'utf8').split('\n')[1]!;
  const victimId = (JSON.parse(victim) as AuditRow).event_id;

  // edit: one byte of one field
  editLine(target, 2, (l) => l.replace('"subject":"', '"subject":"x'));
  let r = verifyChain(segments, dir);
  assert.equal(r.ok, false);
  assert.deepEqual({ file: r.firstBreak!.file, line: r.firstBreak!.line, eventId: r.firstBreak!.eventId }, { file: basename(target), line: 2, eventId: victimId });
  assert.match(r.firstBreak!.reason, /changed/);
  assert.equal(r.breaks.length, 1, 'the rest of the chain still checks out');

  const cli = await run(NODE, [CLI, 'audit', 'verify', '--dir', dir]).then(
    () => assert.fail('verify must exit non-zero'),
    (e: { code: number; stdout: string }) => e,
  );
  assert.equal(cli.code, 1);
  assert.match(cli.stdout, new RegExp(`BROKEN: ${basename(target)}:2 \\(event ${victimId}\\)`));

  // restore, then remove the row: the next row no longer follows
  editLine(target, 2, () => victim);
  assert.equal(verifyChain(segments, dir).ok, true);
  editLine(target, 2, () => undefined);
  r = verifyChain(segments, dir);
  assert.equal(r.firstBreak!.line, 2);
  assert.match(r.firstBreak!.reason, /does not follow/);
  editLine(target, 2, (l) => `${victim}\n${l}`);
  assert.equal(verifyChain(segments, dir).ok, true);

  // remove a whole segment with its head: the next head points at it
  rmSync(segments[2]!);
  rmSync(headPath(segments[2]!));
  r = verifyChain(listSegments(dir), dir);
  assert.equal(r.firstBreak!.file, basename(segments[3]!));
  assert.equal(r.firstBreak!.line, 0);
  assert.match(r.firstBreak!.reason, /segment deleted/);
});

test('a torn last line is moved aside at the next start, recorded in the next head, and verification goes on', async () => {
  const dir = freshDir();
  await write(dir, 0, 10, {}, { segmentBytes: 1 << 20 });
  const [first] = listSegments(dir);
  const torn = '{"event_id":"0190-torn","event":"operation","ts":"2025-';
  appendFileSync(first!, torn);
  // before the restart: a note, not a break (the crash left it; nothing follows it yet)
  let r = verifyChain(listSegments(dir), dir);
  assert.equal(r.ok, true);
  assert.match(r.notes.join('\n'), /torn last line/);

  await write(dir, 10, 10, {}, { segmentBytes: 1 << 20 });
  const segments = listSegments(dir);
  assert.equal(segments.length, 2);
  assert.equal(readFileSync(first!.replace('.jsonl', '.torn'), 'utf8'), torn);
  assert.ok(readFileSync(first!, 'utf8').endsWith('\n'), 'the closed segment is valid JSONEachRow again');
  const head = readHead(segments[1]!)!;
  assert.equal(head.torn?.bytes, torn.length);
  r = verifyChain(segments, dir);
  assert.equal(r.ok, true, JSON.stringify(r.firstBreak));
  assert.equal(r.rows, 20);
  assert.match(r.notes.join('\n'), /torn bytes/);

  // the evidence itself is covered
  writeFileSync(first!.replace('.jsonl', '.torn'), 'something else');
  r = verifyChain(segments, dir);
  assert.equal(r.ok, false);
  assert.match(r.firstBreak!.reason, /torn bytes differ/);
});

test('retention removes the oldest shipped segments and leaves a marker the chain is checked from', async () => {
  const dir = freshDir();
  await write(dir, 0, 40);
  const before = listSegments(dir);
  const spool = new AuditSpool({ dir, segmentBytes: 1500, retention: { maxTotalBytes: 6000 } }, { context: () => ctx });
  // with a shipper, only shipped segments may go: nothing shipped yet
  spool.setShipped({ segment: 1, offset: 0 });
  assert.deepEqual(spool.applyRetention(), []);
  spool.setShipped({ segment: spool.currentSegment, offset: 0 });
  const removed = spool.applyRetention();
  await spool.close();
  assert.ok(removed.length > 0 && removed[0] === basename(before[0]!), `removed ${removed.join(', ')}`);
  const after = listSegments(dir);
  assert.ok(!existsSync(before[0]!));
  const r = verifyChain(after, dir);
  assert.equal(r.ok, true, JSON.stringify(r.firstBreak));
  assert.match(r.notes.join('\n'), /removed by retention/);

  // deleting one more segment by hand is not retention
  rmSync(after[0]!);
  rmSync(headPath(after[0]!));
  assert.equal(verifyChain(listSegments(dir), dir).ok, false);

  // age-based, spool-only (no shipper): old closed segments go
  const dir2 = freshDir();
  await write(dir2, 0, 20);
  for (const s of listSegments(dir2)) utimesSync(s, new Date(Date.now() - 3 * 3_600_000), new Date(Date.now() - 3 * 3_600_000));
  const s2 = new AuditSpool({ dir: dir2, segmentBytes: 1500, retention: { maxAgeHours: 2 } }, { context: () => ctx });
  assert.ok(s2.applyRetention().length >= 2);
  await s2.append(row(99));
  await s2.close();
  assert.equal(verifyChain(listSegments(dir2), dir2).ok, true);
});

test('a full spool refuses new operations (fail-closed) or records the gap it leaves (fail-open)', async () => {
  const dir = freshDir();
  const closed = new AuditSpool({ dir, maxUnshippedBytes: 2000, whenFull: 'fail-closed' }, { context: () => ctx });
  closed.setShipped({ segment: closed.currentSegment, offset: 0 });
  for (let i = 0; i < 10; i++) await closed.append(row(i));
  assert.equal(closed.healthy, false);
  assert.match(closed.problem!, /audit spool is full \(\d+ bytes not yet shipped to ClickHouse, limit 2000\)/);
  // the shipper catches up: open again
  closed.setShipped({ segment: closed.currentSegment, offset: 1e9 });
  assert.equal(closed.healthy, true);
  await closed.close();

  const dir2 = freshDir();
  const open = new AuditSpool({ dir: dir2, maxUnshippedBytes: 2000, whenFull: 'fail-open' }, { context: () => ctx });
  open.setShipped({ segment: open.currentSegment, offset: 0 });
  for (let i = 0; i < 15; i++) await open.append(row(i));
  assert.equal(open.healthy, true, 'fail-open keeps serving');
  const dropped = open.rowsDropped;
  assert.ok(dropped > 0 && open.rowsWritten + dropped === 15, `${open.rowsWritten} written, ${dropped} dropped`);
  open.setShipped({ segment: open.currentSegment, offset: 1e9 });
  await open.append(row(15));
  await open.close();
  const rows = readFileSync(listSegments(dir2)[0]!, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AuditRow);
  const gap = rows.find((r) => r.event === 'spool-gap');
  assert.ok(gap, 'a spool-gap row');
  assert.equal(gap.record_count, dropped);
  assert.match(gap.message, new RegExp(`${dropped} audit rows were not written`));
  assert.equal(verifyChain(listSegments(dir2), dir2).ok, true);
});

test('audit query runs ClickHouse SQL over the spool as table, CSV and JSON', async () => {
  const dir = freshDir();
  await write(dir, 0, 12);
  const sql = "SELECT subject, count() AS ops, sum(bytes) AS bytes FROM audit_events WHERE event = 'operation' GROUP BY subject ORDER BY subject";
  const csv = await run(NODE, [CLI, 'audit', 'query', '--dir', dir, '--format', 'csv', sql]);
  assert.equal(csv.stdout, '"subject","ops","bytes"\n"alice",6,96\n"bob",6,90\n');
  const json = await run(NODE, [CLI, 'audit', 'query', '--dir', dir, '-f', 'json', sql]);
  assert.deepEqual(json.stdout.trim().split('\n').map((l) => JSON.parse(l)), [
    { subject: 'alice', ops: 6, bytes: 96 },
    { subject: 'bob', ops: 6, bytes: 90 },
  ]);
  const table = await run(NODE, [CLI, 'audit', 'query', '--dir', dir, sql]);
  assert.match(table.stdout, /subject.*ops.*bytes[\s\S]*alice.*6.*96/);
  const ok = await run(NODE, [CLI, 'audit', 'verify', '--dir', dir]);
  assert.match(ok.stdout, /^OK: 12 rows in \d+ segments, chain intact through seq 12/);
});
