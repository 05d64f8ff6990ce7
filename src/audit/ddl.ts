/**
 * The analysts' schema: one column list, rendered for three engines.
 *
 * - modern (ClickHouse 22.3+ and chDB): DateTime64(3), LowCardinality, Map, codecs, TTL,
 *   ReplacingMergeTree with insert deduplication tokens; the shipper inserts the spool's
 *   JSONEachRow bytes directly.
 * - legacy (older servers, e.g. Debian's 18.16): no DateTime64, Map, codecs or TTL. The
 *   shipper turns the two object columns (`masking`, `meta`) into JSON text (legacyRows in
 *   shipper.ts) and inserts JSONEachRow into a Null-engine table; a materialized view
 *   converts `ts` and splits `masking` into the portable arrays.
 * - spool (chDB over the segment files): a view named audit_events over file(), so an
 *   analyst's SQL is the same locally as on the server.
 *
 * Columns every variant has, with the same names: all row columns except `masking`
 * (modern: Map) and `meta` (modern: Map, legacy: JSON text), plus the portable
 * `masking_rules`, `masking_counts` and `ts_ms`. Queries written against those run on all
 * three (docs/analysts.md; test/audit-clickhouse.test.ts runs every one).
 */

export type Variant = 'modern' | 'legacy';

/** Bump with every new migration. */
export const SCHEMA_VERSION = 3;

const EVENT = "Enum8('operation' = 1, 'session-start' = 2, 'session-end' = 3, 'approval-request' = 4, 'approval-decision' = 5, 'spool-gap' = 6, 'credential-issue' = 7, 'credential-revoke' = 8, 'subject-erase' = 9)";
const DECISION = "Enum8('allow' = 1, 'deny' = 2, 'block' = 3, 'error' = 4, 'pending' = 5)";
const LC = 'LowCardinality(String)';

// the keys of a JSON object text (escapes kept as written)
const JSON_KEY = `'"((?:[^"\\\\\\\\]|\\\\\\\\.)*)":'`;

interface Column {
  name: string;
  /** modern type, without codec */
  type: string;
  codec?: string;
  /** legacy type (default: `type` with LowCardinality removed) */
  legacy?: string;
}

const COLUMNS: Column[] = [
  { name: 'event_id', type: 'UUID' },
  { name: 'event', type: EVENT },
  { name: 'ts', type: "DateTime64(3, 'UTC')", codec: 'Delta, ZSTD(1)', legacy: "DateTime('UTC')" },
  { name: 'instance', type: LC },
  { name: 'policy_version', type: LC },
  { name: 'session_id', type: 'String', codec: 'ZSTD(1)' },
  { name: 'protocol', type: LC },
  { name: 'client_address', type: LC },
  { name: 'client_id', type: LC },
  { name: 'client_software', type: LC },
  { name: 'subject', type: LC },
  { name: 'issuer', type: LC },
  { name: 'groups', type: `Array(${LC})` },
  { name: 'roles', type: `Array(${LC})` },
  { name: 'action', type: LC },
  { name: 'resource_kind', type: LC },
  { name: 'resource', type: LC },
  { name: 'partition', type: 'Int32' },
  { name: 'decision', type: DECISION },
  { name: 'reason', type: LC },
  { name: 'rule', type: LC },
  { name: 'message', type: 'String', codec: 'ZSTD(3)' },
  { name: 'approval_id', type: 'String' },
  { name: 'credential_id', type: 'String' },
  { name: 'record_count', type: 'UInt32' },
  { name: 'bytes', type: 'UInt64' },
  { name: 'batch_hash', type: 'String', codec: 'ZSTD(1)' },
  { name: 'record_hashes', type: 'Array(String)', codec: 'ZSTD(1)' },
  { name: 'masked_hashes', type: 'Array(String)', codec: 'ZSTD(1)' },
  { name: 'inspected', type: LC },
  { name: 'inspection_notes', type: 'Array(String)' },
  { name: 'offsets', type: 'Array(String)', codec: 'ZSTD(1)' },
  { name: 'latency_us', type: 'UInt64', codec: 'T64, ZSTD(1)' },
  { name: 'seq', type: 'UInt64', codec: 'Delta, ZSTD(1)' },
  { name: 'prev_hash', type: 'String', codec: 'ZSTD(1)' },
  { name: 'hash', type: 'String', codec: 'ZSTD(1)' },
];

/** Columns only the modern and spool variants store (Map-typed). */
const MODERN_ONLY = [
  { name: 'masking', type: `Map(${LC}, UInt32)` },
  { name: 'meta', type: `Map(${LC}, String)` },
];

/**
 * Legacy: what the parse view computes from the ingest table, where `ts` arrives as text
 * named `ts_text` (an alias named like its source column would shadow it) and
 * `masking`/`meta` as JSON text; every other column arrives typed.
 */
const LEGACY_DERIVED: Record<string, { type: string; expr: string }> = {
  ts: { type: "DateTime('UTC')", expr: "toDateTime(substring(ts_text, 1, 19), 'UTC')" },
  ts_ms: { type: 'UInt16', expr: 'toUInt16(substring(ts_text, 21, 3))' },
  masking_rules: { type: 'Array(String)', expr: `extractAll(masking, ${JSON_KEY})` },
  masking_counts: { type: 'Array(UInt32)', expr: "arrayMap(x -> toUInt32(x), extractAll(masking, ':([0-9]+)'))" },
  meta: { type: 'String', expr: 'meta' },
};
const LEGACY_EXTRA = ['ts_ms', 'masking_rules', 'masking_counts', 'meta'];

function legacyColumn(name: string): string {
  return LEGACY_DERIVED[name]?.expr ?? name;
}

/** Portable columns computed from the Map columns (modern: ALIAS columns; spool: view expressions). */
const PORTABLE = [
  { name: 'masking_rules', type: 'Array(String)', expr: 'mapKeys(masking)' },
  { name: 'masking_counts', type: 'Array(UInt32)', expr: 'mapValues(masking)' },
  { name: 'ts_ms', type: 'UInt16', expr: 'toUInt16(toUnixTimestamp64Milli(ts) % 1000)' },
];

function legacyType(c: Column): string {
  return c.legacy ?? c.type.replaceAll(`${LC}`, 'String');
}

/** `name Type, ...` as the file() table function and the JSONEachRow input need it. */
export function fileStructure(): string {
  return [...COLUMNS.map((c) => `${c.name} ${c.type}`), ...MODERN_ONLY.map((c) => `${c.name} ${c.type}`)].join(', ');
}

export interface DdlOptions {
  database: string;
  variant: Variant;
  /** TTL in days (modern only; legacy servers drop monthly partitions instead) */
  ttlDays: number;
  /** cluster variant: ON CLUSTER, Replicated*MergeTree local tables, Distributed tables over them */
  cluster?: string;
}

// The same aggregation is a materialized view on the server and a plain view over the
// spool, so the rollup tables answer the same SQL in both places. `c` maps a column name
// to its expression: the name itself, or on legacy servers its conversion from the ingest table.
type Col = (name: string) => string;
const plain: Col = (n) => n;
const hourlyIdentity = (c: Col, from: string) => `SELECT toStartOfHour(${c('ts')}) AS hour, ${c('subject')} AS subject, ${c('issuer')} AS issuer, ${c('action')} AS action, ${c('decision')} AS decision, count() AS ops, sum(${c('record_count')}) AS records, sum(${c('bytes')}) AS bytes
FROM ${from} WHERE ${c('event')} = 'operation' GROUP BY hour, subject, issuer, action, decision`;
const hourlyTopic = (c: Col, from: string) => `SELECT toStartOfHour(${c('ts')}) AS hour, ${c('resource')} AS resource, ${c('action')} AS action, ${c('decision')} AS decision, count() AS ops, sum(${c('record_count')}) AS records, sum(${c('bytes')}) AS bytes, sum(arraySum(${c('masking_counts')})) AS masked
FROM ${from} WHERE ${c('event')} = 'operation' GROUP BY hour, resource, action, decision`;

/** The statements of schema version 1, in order. Idempotent (IF NOT EXISTS). */
export function schemaStatements(o: DdlOptions): string[] {
  const db = o.database;
  const modern = o.variant === 'modern';
  const onCluster = o.cluster ? ` ON CLUSTER ${o.cluster}` : '';
  const local = (t: string) => (o.cluster ? `${t}_local` : t);
  const engine = (kind: 'ReplacingMergeTree' | 'SummingMergeTree', table: string) =>
    o.cluster ? `Replicated${kind}('/clickhouse/tables/{shard}/${db}/${table}', '{replica}')` : kind;
  const ttl = (expr: string) => (modern ? `\nTTL ${expr} + INTERVAL ${o.ttlDays} DAY` : '');
  const distributed = (table: string, key: string) =>
    o.cluster ? [`CREATE TABLE IF NOT EXISTS ${db}.${table}${onCluster} AS ${db}.${local(table)}\nENGINE = Distributed(${o.cluster}, ${db}, ${local(table)}, ${key})`] : [];

  const columns = modern
    ? [
        ...COLUMNS.map((c) => `  ${c.name} ${c.type}${c.codec ? ` CODEC(${c.codec})` : ''}`),
        ...MODERN_ONLY.map((c) => `  ${c.name} ${c.type}`),
        ...PORTABLE.map((c) => `  ${c.name} ${c.type} ALIAS ${c.expr}`),
        '  INDEX record_hashes_idx record_hashes TYPE bloom_filter GRANULARITY 4',
        '  INDEX event_id_idx event_id TYPE bloom_filter GRANULARITY 4',
      ]
    : [...COLUMNS.map((c) => `  ${c.name} ${legacyType(c)}`), ...LEGACY_EXTRA.map((n) => `  ${n} ${LEGACY_DERIVED[n]!.type}`)];

  const settings = modern ? '\nSETTINGS non_replicated_deduplication_window = 1000' : '';
  const stmts: string[] = [
    `CREATE DATABASE IF NOT EXISTS ${db}${onCluster}`,
    `CREATE TABLE IF NOT EXISTS ${db}.${local('audit_events')}${onCluster} (\n${columns.join(',\n')}\n)
ENGINE = ${engine('ReplacingMergeTree', 'audit_events')}
PARTITION BY toYYYYMM(ts)
ORDER BY (resource, toStartOfDay(ts), subject, event_id)${ttl('toDateTime(ts)')}${o.cluster ? '' : settings}`,
    ...distributed('audit_events', modern ? 'cityHash64(event_id)' : 'cityHash64(toString(event_id))'),
  ];
  if (!modern) {
    // legacy ingest: typed JSONEachRow into a Null table, converted by a materialized view
    const ingest = [...COLUMNS.map((c) => (c.name === 'ts' ? '  ts_text String' : `  ${c.name} ${legacyType(c)}`)), '  masking String', '  meta String'];
    const parse = [...COLUMNS.map((c) => c.name), ...LEGACY_EXTRA].map((n) => (legacyColumn(n) === n ? `  ${n}` : `  ${legacyColumn(n)} AS ${n}`));
    stmts.push(
      `CREATE TABLE IF NOT EXISTS ${db}.audit_events_ingest${onCluster} (\n${ingest.join(',\n')}\n) ENGINE = Null`,
      `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.audit_events_parse${onCluster} TO ${db}.${local('audit_events')} AS SELECT\n${parse.join(',\n')}\nFROM ${db}.audit_events_ingest`,
    );
  }
  const rollups: Array<[string, string, string, typeof hourlyTopic]> = [
    ['audit_hourly_identity', 'subject String, issuer String, action String', '(subject, issuer, action, decision, hour)', hourlyIdentity],
    ['audit_hourly_topic', 'resource String, action String', '(resource, action, decision, hour)', hourlyTopic],
  ];
  for (const [table, dims, order, select] of rollups) {
    const dimCols = modern ? dims.replaceAll('String', LC) : dims;
    const extra = table === 'audit_hourly_topic' ? ', masked UInt64' : '';
    stmts.push(
      `CREATE TABLE IF NOT EXISTS ${db}.${local(table)}${onCluster} (hour DateTime('UTC'), ${dimCols}, decision ${DECISION}, ops UInt64, records UInt64, bytes UInt64${extra})
ENGINE = ${engine('SummingMergeTree', table)}
PARTITION BY toYYYYMM(hour)
ORDER BY ${order}${ttl('hour')}${o.cluster ? '' : settings}`,
      ...distributed(table, 'rand()'),
      // on a cluster each shard rolls up its own rows into its local table; legacy servers do
      // not cascade views (rows arriving through audit_events_parse would not trigger a view
      // on audit_events), so there the rollup reads the ingest table itself
      `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${table}_mv${onCluster} TO ${db}.${local(table)} AS\n${modern ? select(plain, `${db}.${local('audit_events')}`) : select(legacyColumn, `${db}.audit_events_ingest`)}`,
    );
  }
  return stmts;
}

/** chDB over the spool: audit_events and the rollups as views, with the server's names and types. */
export function spoolViewStatements(glob: string): string[] {
  const path = glob.replaceAll("'", "\\'");
  return [
    `CREATE VIEW audit_events AS SELECT *, ${PORTABLE.map((c) => `CAST(${c.expr} AS ${c.type}) AS ${c.name}`).join(', ')}
FROM file('${path}', 'JSONEachRow', '${fileStructure().replaceAll("'", "\\'")}')
SETTINGS input_format_skip_unknown_fields = 1`,
    `CREATE VIEW audit_hourly_identity AS ${hourlyIdentity(plain, 'audit_events')}`,
    `CREATE VIEW audit_hourly_topic AS ${hourlyTopic(plain, 'audit_events')}`,
  ];
}

/** Picks the variant a server supports from `SELECT version()`. */
export function variantFor(version: string): Variant {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  // Map GA, DateTime64, insert_deduplication_token (22.2) and non-replicated dedup windows
  return major > 22 || (major === 22 && minor >= 3) ? 'modern' : 'legacy';
}

export const MIGRATIONS_TABLE = 'audit_schema_migrations';

export function migrationsTableStatement(database: string, cluster?: string): string {
  const onCluster = cluster ? ` ON CLUSTER ${cluster}` : '';
  return `CREATE TABLE IF NOT EXISTS ${database}.${MIGRATIONS_TABLE}${onCluster} (version UInt32, variant String, description String, applied_at DateTime) ENGINE = ${cluster ? `ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/${MIGRATIONS_TABLE}', '{replica}')` : 'MergeTree'} ORDER BY version`;
}

export interface Migration {
  version: number;
  description: string;
  statements: (o: DdlOptions) => string[];
}

/**
 * Version 2: the credential_id column and the credential-issue/-revoke events (just-in-time
 * credentials). Version 1 already creates both on a fresh install (it renders COLUMNS), so
 * every statement here is idempotent. Legacy servers also get the column on the ingest
 * table, and the parse view (its column list is fixed at creation) is made again.
 */
export function credentialColumnStatements(o: DdlOptions): string[] {
  const db = o.database;
  const onCluster = o.cluster ? ` ON CLUSTER ${o.cluster}` : '';
  const tables = o.cluster ? ['audit_events_local', 'audit_events'] : ['audit_events'];
  if (o.variant === 'legacy') tables.push('audit_events_ingest');
  const stmts: string[] = [];
  // ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS; an upgrade runs once (it is recorded), so plain ADD is safe there
  const ifNotExists = o.variant === 'legacy' ? '' : 'IF NOT EXISTS ';
  for (const t of tables) {
    stmts.push(
      `ALTER TABLE ${db}.${t}${onCluster} ADD COLUMN ${ifNotExists}credential_id String AFTER approval_id`,
      `ALTER TABLE ${db}.${t}${onCluster} MODIFY COLUMN event ${EVENT}`,
    );
  }
  if (o.variant === 'legacy') {
    const parse = [...COLUMNS.map((c) => c.name), ...LEGACY_EXTRA].map((n) => (legacyColumn(n) === n ? `  ${n}` : `  ${legacyColumn(n)} AS ${n}`));
    const local = o.cluster ? 'audit_events_local' : 'audit_events';
    stmts.push(
      `DROP TABLE IF EXISTS ${db}.audit_events_parse${onCluster}`,
      `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.audit_events_parse${onCluster} TO ${db}.${local} AS SELECT\n${parse.join(',\n')}\nFROM ${db}.audit_events_ingest`,
    );
  }
  return stmts;
}

/**
 * Version 3: the subject-erase event (crypto-shredding, issue 22). A fresh install already has
 * it (version 1 renders EVENT); an upgrade widens the enum of every table that holds it. Adding
 * a value to an Enum8 is a metadata change: no data is rewritten.
 */
export function subjectEraseStatements(o: DdlOptions): string[] {
  const db = o.database;
  const onCluster = o.cluster ? ` ON CLUSTER ${o.cluster}` : '';
  const tables = o.cluster ? ['audit_events_local', 'audit_events'] : ['audit_events'];
  if (o.variant === 'legacy') tables.push('audit_events_ingest');
  return tables.map((t) => `ALTER TABLE ${db}.${t}${onCluster} MODIFY COLUMN event ${EVENT}`);
}

/** Ordered; a later version adds ALTERs/new objects here and bumps SCHEMA_VERSION. */
export const MIGRATIONS: Migration[] = [
  { version: 1, description: 'audit_events, legacy ingest view, hourly rollups', statements: schemaStatements },
  { version: 2, description: 'credential_id column, credential-issue and credential-revoke events', statements: credentialColumnStatements },
  { version: 3, description: 'subject-erase event', statements: subjectEraseStatements },
];

/** Records an applied migration (what `audit migrate` checks before applying anything). */
export function migrationRecordStatement(database: string, m: Migration, variant: Variant): string {
  return `INSERT INTO ${database}.${MIGRATIONS_TABLE} (version, variant, description, applied_at) VALUES (${m.version}, '${variant}', '${m.description.replaceAll("'", "\\'")}', now())`;
}
