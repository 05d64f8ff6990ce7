import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestClickHouse } from './helpers/clickhouse.ts';
import { connect, installedSchema, migrate } from '../src/audit/migrate.ts';
import { clickhouseSchema } from '../src/audit/schema.ts';
import { MIGRATIONS, migrationRecordStatement, migrationsTableStatement, schemaStatements, SCHEMA_VERSION } from '../src/audit/ddl.ts';
import { AuditSpool } from '../src/audit/spool.ts';
import { ClickHouseShipper } from '../src/audit/shipper.ts';
import { eventRow, type RowContext } from '../src/audit/row.ts';
import { createLogger } from '../src/log.ts';

// Schema version 2 (credential_id, credential-issue/-revoke events) applied to a database
// installed at version 1 before the column existed, on Debian's ClickHouse 18.16 (legacy DDL).

const DB = 'sg_migrate_v2';
const ctx: RowContext = { instance: 'gw-test', policyVersion: 'p1' };

/** Version 1 as it was shipped: the same statements without the credential column and the two new event values. */
function versionOneStatements(): string[] {
  return schemaStatements({ database: DB, variant: 'legacy', ttlDays: 30 }).map((s) =>
    s
      .replace(/,\n {2}credential_id String/g, '')
      .replace(/,\n {2}credential_id/g, '')
      .replace(", 'credential-issue' = 7, 'credential-revoke' = 8", ''),
  );
}

test('migrate upgrades a version 1 audit schema to version 2 on ClickHouse 18.16; shipped rows keep their credential_id', async () => {
  const server = await startTestClickHouse();
  const client = connect(clickhouseSchema.parse({ url: server.url, database: DB }));
  try {
    await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${DB}` });
    await client.command({ query: migrationsTableStatement(DB) });
    for (const stmt of versionOneStatements()) {
      assert.doesNotMatch(stmt, /credential/);
      await client.command({ query: stmt });
    }
    await client.command({ query: migrationRecordStatement(DB, MIGRATIONS[0]!, 'legacy') });
    assert.deepEqual(await installedSchema(client, DB), { version: 1, variant: 'legacy' });

    const result = await migrate(client, { database: DB, ttlDays: 30 });
    assert.equal(result.from, 1);
    assert.equal(result.to, SCHEMA_VERSION);
    assert.ok(result.statements.length > 0 && result.statements.every((s) => !/CREATE TABLE/.test(s)), 'only versions 2 and 3 ran');
    assert.deepEqual(await installedSchema(client, DB), { version: SCHEMA_VERSION, variant: 'legacy' });
    assert.equal((await migrate(client, { database: DB, ttlDays: 30 })).statements.length, 0, 'idempotent once at the latest version');

    const spoolDir = mkdtempSync(join(tmpdir(), 'sg-migrate-v2-'));
    const spool = new AuditSpool({ dir: spoolDir, segmentBytes: 1 << 20 }, { context: () => ctx });
    await spool.append(eventRow(ctx, 'credential-issue', { subject: 'alice', credential_id: 'cred-1', resource: 'produce:orders' }));
    await spool.append(eventRow(ctx, 'credential-revoke', { subject: 'ops', credential_id: 'cred-1' }));
    const shipper = new ClickHouseShipper(spool, clickhouseSchema.parse({ url: server.url, database: DB, flushIntervalMs: 50 }), createLogger('silent'));
    shipper.start();
    try {
      await shipper.drain(30_000);
    } finally {
      await shipper.stop();
      await spool.close();
    }
    const rs = await client.query({ query: `SELECT event, subject, credential_id FROM ${DB}.audit_events ORDER BY event`, format: 'JSONEachRow' });
    assert.deepEqual(await rs.json(), [
      { event: 'credential-issue', subject: 'alice', credential_id: 'cred-1' },
      { event: 'credential-revoke', subject: 'ops', credential_id: 'cred-1' },
    ]);
  } finally {
    await client.close();
  }
});
