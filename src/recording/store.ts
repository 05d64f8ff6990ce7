import { resolve } from 'node:path';
import type { SpoolQuery } from '../audit/query.ts';
import { recordingStructure } from './ddl.ts';
import type { RecordingRow } from './recorder.ts';
import { listRecordingSegments, readSegmentLines } from './segments.ts';

/**
 * Reading the embedded recording store. `readSession` scans the segment files directly (no
 * query engine needed: export and replay work on any machine with the files); `attachRecordings`
 * exposes them as the `recordings` table in a chDB session for SQL.
 */

/** The recorded records of one session, in recording order. */
export function readSession(dir: string, sessionId: string): RecordingRow[] {
  const rows: RecordingRow[] = [];
  const needle = `"session_id":${JSON.stringify(sessionId)}`;
  for (const segment of listRecordingSegments(dir)) {
    for (const line of readSegmentLines(segment)) {
      if (!line.startsWith(`{${needle}`)) continue;
      rows.push(JSON.parse(line) as RecordingRow);
    }
  }
  return rows.sort((a, b) => a.seq - b.seq);
}

/** Recorded record counts and bytes per session (for `sessions list`). */
export function recordedSessions(dir: string): Map<string, { records: number; bytes: number }> {
  const out = new Map<string, { records: number; bytes: number }>();
  for (const segment of listRecordingSegments(dir)) {
    for (const line of readSegmentLines(segment)) {
      const row = JSON.parse(line) as RecordingRow;
      const s = out.get(row.session_id) ?? { records: 0, bytes: 0 };
      s.records++;
      s.bytes += Buffer.byteLength(row.value ?? '', 'base64') + Buffer.byteLength(row.key ?? '', 'base64');
      out.set(row.session_id, s);
    }
  }
  return out;
}

/** Adds the `recordings` view (the segment files, read by chDB) to a spool query session. */
export function attachRecordings(q: SpoolQuery, dir: string): void {
  const structure = recordingStructure();
  if (listRecordingSegments(dir).length === 0) {
    q.run(`CREATE TABLE recordings (${structure}) ENGINE = Memory`);
    return;
  }
  const glob = resolve(dir, 'rec-*.jsonl.gz').replaceAll("'", "\\'");
  q.run(`CREATE VIEW recordings AS SELECT * FROM file('${glob}', JSONEachRow, '${structure}')`);
}
