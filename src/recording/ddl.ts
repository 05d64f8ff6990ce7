/**
 * The `recordings` table: one row per recorded record, the same columns as the JSON lines
 * in the segment files (RecordingRow), so the same SQL runs on the embedded store (chDB over
 * the segments) and on ClickHouse.
 */
export const RECORDING_COLUMNS: ReadonlyArray<{ name: string; type: string; codec?: string }> = [
  { name: 'session_id', type: 'String' },
  { name: 'op_id', type: 'String' },
  { name: 'seq', type: 'UInt64', codec: 'Delta, ZSTD(3)' },
  { name: 'ts', type: 'DateTime64(3)', codec: 'Delta, ZSTD(3)' },
  { name: 'record_ts', type: 'Int64', codec: 'Delta, ZSTD(3)' },
  { name: 'instance', type: 'LowCardinality(String)' },
  { name: 'protocol', type: 'LowCardinality(String)' },
  { name: 'subject', type: 'LowCardinality(String)' },
  { name: 'action', type: 'LowCardinality(String)' },
  { name: 'topic', type: 'LowCardinality(String)' },
  { name: 'partition', type: 'Int32' },
  { name: 'offset', type: 'String' },
  { name: 'key', type: 'Nullable(String)', codec: 'ZSTD(3)' },
  { name: 'value', type: 'Nullable(String)', codec: 'ZSTD(3)' },
  { name: 'headers', type: 'Array(Tuple(String, String))', codec: 'ZSTD(3)' },
  { name: 'hash', type: 'String', codec: 'ZSTD(3)' },
  { name: 'original_hash', type: 'String', codec: 'ZSTD(3)' },
  { name: 'masked', type: 'UInt8' },
  { name: 'raw', type: 'String', codec: 'ZSTD(3)' },
  { name: 'kid', type: 'LowCardinality(String)' },
];

/** The structure argument of file()/chDB (no codecs). */
export function recordingStructure(): string {
  return RECORDING_COLUMNS.map((c) => `${c.name} ${c.type}`).join(', ');
}

/** CREATE TABLE for ClickHouse 22.3+: compressed columns, partitioned by day, rows expire after ttlDays. */
export function recordingTableStatement(database: string, table: string, ttlDays: number): string {
  const cols = RECORDING_COLUMNS.map((c) => `  \`${c.name}\` ${c.type}${c.codec ? ` CODEC(${c.codec})` : ''}`).join(',\n');
  return `CREATE TABLE IF NOT EXISTS ${database}.${table} (\n${cols}\n) ENGINE = MergeTree\nPARTITION BY toYYYYMMDD(ts)\nORDER BY (session_id, seq)\nTTL toDateTime(ts) + INTERVAL ${ttlDays} DAY`;
}
