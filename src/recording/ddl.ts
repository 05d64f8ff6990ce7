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

/**
 * One recorded record: a JSON line in a segment file and a row of the ClickHouse
 * `recordings` table (same column names). Payloads are base64; `hash` is the SHA-256 of the
 * value as recorded, the same hex as the operation's audit row (masked_hashes where masking
 * changed the value, record_hashes otherwise).
 */
export interface RecordingRow {
  session_id: string;
  /** the operation's audit event_id */
  op_id: string;
  /** position of the record in the session's recording, from 0 (gaps where an operation failed) */
  seq: number;
  /** when the gateway received the operation (UTC, like the audit ts) */
  ts: string;
  /** the record's own timestamp (epoch ms) where the protocol has one, else 0 */
  record_ts: number;
  instance: string;
  protocol: string;
  subject: string;
  action: 'produce' | 'consume';
  topic: string;
  partition: number;
  /** Kafka offset / Kinesis sequence number where the upstream stored it; '' when unknown */
  offset: string;
  key: string | null;
  value: string | null;
  headers: Array<[string, string]>;
  hash: string;
  /** SHA-256 of the original value (the audit row's record_hashes entry) */
  original_hash: string;
  /** 1 when masking changed the value; 2 when a decrypt rule revealed it (the value is then withheld: null) */
  masked: number;
  /** JWE (compact) of the original value where masking changed it and raw recording is on; '' otherwise */
  raw: string;
  kid: string;
}
