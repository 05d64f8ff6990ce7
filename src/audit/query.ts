import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileStructure, spoolViewStatements } from './ddl.ts';
import { listSegments } from './spool.ts';

/** Output formats of `audit query`; any other ClickHouse output format name is passed through. */
export const QUERY_FORMATS: Record<string, string> = {
  table: 'PrettyCompactMonoBlock',
  csv: 'CSVWithNames',
  tsv: 'TSVWithNames',
  json: 'JSONEachRow',
};

type ChdbSession = {
  query(sql: string, format?: string): string;
  close(): void;
};

/**
 * ClickHouse SQL over the spool with chDB (the ClickHouse engine in-process): the segment
 * files are exposed as the view `audit_events` (plus the hourly rollups as views), with
 * the server's column names and types, so the same SQL runs here and on the cluster.
 */
export class SpoolQuery {
  readonly #session: ChdbSession;
  readonly #tmp: string;

  private constructor(session: ChdbSession, tmp: string) {
    this.#session = session;
    this.#tmp = tmp;
  }

  static async open(dir: string): Promise<SpoolQuery> {
    const { Session } = (await import('chdb')) as unknown as { Session: new (path?: string, opts?: { connectionArgs?: string[] }) => ChdbSession };
    const tmp = mkdtempSync(join(tmpdir(), 'sg-chdb-'));
    // an explicit empty config: chDB, like clickhouse-local, would otherwise load ./config.xml from the cwd
    writeFileSync(join(tmp, 'config.xml'), '<clickhouse><logger><level>none</level></logger></clickhouse>\n');
    const session = new Session(join(tmp, 'data'), { connectionArgs: [`--config-file=${join(tmp, 'config.xml')}`] });
    const q = new SpoolQuery(session, tmp);
    try {
      const abs = resolve(dir);
      if (listSegments(abs).length > 0) {
        for (const stmt of spoolViewStatements(join(abs, 'audit-*.jsonl'))) session.query(stmt);
      } else {
        // no segment yet: an empty table with the same structure answers every query with no rows
        session.query(`CREATE TABLE audit_events_empty (${fileStructure()}) ENGINE = Memory`);
        const [view, ...rollups] = spoolViewStatements('x');
        session.query(view!.replace(/FROM file\([^)]*\)\s*SETTINGS input_format_skip_unknown_fields = 1/, 'FROM audit_events_empty'));
        for (const stmt of rollups) session.query(stmt);
      }
    } catch (err) {
      q.close();
      throw err;
    }
    return q;
  }

  /** Runs one statement; `format` is a QUERY_FORMATS key or a ClickHouse output format name. */
  run(sql: string, format = 'table'): string {
    return this.#session.query(sql, QUERY_FORMATS[format] ?? format);
  }

  close(): void {
    this.#session.close();
    rmSync(this.#tmp, { recursive: true, force: true });
  }
}
