import { ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
import { MIGRATIONS, MIGRATIONS_TABLE, migrationRecordStatement, migrationsTableStatement, SCHEMA_VERSION, variantFor, type Variant } from './ddl.ts';
import type { ClickHouseConfig } from './schema.ts';

export function connect(config: ClickHouseConfig): ClickHouseClient {
  return createClient({
    url: config.url,
    username: config.username,
    password: config.password,
    request_timeout: config.requestTimeoutMs,
    // the spool is already compact JSON; compressing it would cost the gateway's CPU, not the network's
    compression: { request: false, response: false },
    keep_alive: { enabled: true },
    // failures are the shipper's to report (with backoff, not once per attempt)
    log: { level: ClickHouseLogLevel.OFF },
  });
}

export async function serverVersion(client: ClickHouseClient): Promise<string> {
  const rs = await client.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' });
  const [row] = await rs.json<{ v: string }>();
  return row!.v;
}

export interface InstalledSchema {
  version: number;
  variant: Variant;
}

/** The schema version and variant `audit migrate` installed, or undefined when none. */
export async function installedSchema(client: ClickHouseClient, database: string): Promise<InstalledSchema | undefined> {
  // literals, not query parameters: servers before 19.x have no {name:Type} parameters (database is an identifier per the config schema)
  const exists = await client.query({ query: `SELECT count() AS n FROM system.tables WHERE database = '${database}' AND name = '${MIGRATIONS_TABLE}'`, format: 'JSONEachRow' });
  const [e] = await exists.json<{ n: string | number }>();
  if (Number(e!.n) === 0) return undefined;
  const rs = await client.query({ query: `SELECT version, variant FROM ${database}.${MIGRATIONS_TABLE} ORDER BY version DESC LIMIT 1`, format: 'JSONEachRow' });
  const [row] = await rs.json<{ version: number; variant: Variant }>();
  return row ? { version: Number(row.version), variant: row.variant } : undefined;
}

export interface MigrateResult {
  serverVersion: string;
  variant: Variant;
  from: number;
  to: number;
  statements: string[];
}

/**
 * Creates or upgrades the audit schema: picks the variant the server supports (once;
 * later migrations keep the installed variant) and applies the migrations it lacks.
 */
export async function migrate(client: ClickHouseClient, o: { database: string; ttlDays: number; variant?: Variant }): Promise<MigrateResult> {
  const version = await serverVersion(client);
  await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${o.database}` });
  await client.command({ query: migrationsTableStatement(o.database) });
  const installed = await installedSchema(client, o.database);
  const variant = installed?.variant ?? o.variant ?? variantFor(version);
  const from = installed?.version ?? 0;
  const applied: string[] = [];
  for (const m of MIGRATIONS) {
    if (m.version <= from) continue;
    // a fresh install gets today's schema from version 1 (it renders every current column):
    // later versions' ALTERs are for upgrades and are only recorded
    const upgrade = from > 0 || m.version === 1;
    for (const stmt of upgrade ? m.statements({ database: o.database, variant, ttlDays: o.ttlDays }) : []) {
      await client.command({ query: stmt });
      applied.push(stmt);
    }
    await client.command({ query: migrationRecordStatement(o.database, m, variant) });
  }
  return { serverVersion: version, variant, from, to: SCHEMA_VERSION, statements: applied };
}
