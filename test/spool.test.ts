import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditSpool, listSegments } from '../src/audit/spool.ts';
import type { AuditRow } from '../src/audit/row.ts';

function row(i: number): AuditRow {
  return { event_id: `e${i}`, subject: 'alice', action: 'produce' } as AuditRow;
}
function lines(dir: string): string[] {
  return listSegments(dir).flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean));
}

test('rows appended in one turn are written together and each promise settles after the write', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-spool-'));
  const spool = new AuditSpool({ dir, segmentBytes: 1 << 20, durability: 'write', fsyncIntervalMs: 50 });
  const writes = Array.from({ length: 100 }, (_, i) => spool.append(row(i)).then(() => lines(dir).length));
  const seenAtResolve = await Promise.all(writes);
  assert.ok(seenAtResolve.every((n) => n === 100), 'all 100 rows were on disk when the first promise settled (one write)');
  assert.deepEqual(lines(dir).map((l) => (JSON.parse(l) as AuditRow).event_id), Array.from({ length: 100 }, (_, i) => `e${i}`));
  await spool.close();
});

test('fsync durability, rotation by size, and a fresh segment on every start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-spool-'));
  let spool = new AuditSpool({ dir, segmentBytes: 2000, durability: 'fsync', fsyncIntervalMs: 1000 });
  for (let i = 0; i < 200; i++) await spool.append(row(i));
  await spool.close();
  const segments = listSegments(dir);
  assert.ok(segments.length > 3, `rotated into ${segments.length} segments`);
  spool = new AuditSpool({ dir, segmentBytes: 2000, durability: 'write', fsyncIntervalMs: 1000 });
  await spool.append(row(200));
  await spool.close();
  const after = listSegments(dir);
  assert.equal(after.length, segments.length + 1);
  assert.match(readFileSync(after.at(-1)!, 'utf8'), /"e200"/);
  assert.equal(lines(dir).length, 201);
  await assert.rejects(spool.append(row(201)), /closed/);
});
