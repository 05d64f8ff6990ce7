import { GatewayError, type StreamRecord } from '../../operation.ts';

/**
 * Decoding of Kafka REST Proxy v3 produce bodies. A record is
 * `{ partition_id?, headers?: [{name, value: base64}], key?: Data, value?: Data, timestamp? }`
 * where Data is `{ type: "JSON" | "STRING" | "BINARY", data }` (`type` defaults to JSON), or JSON
 * data with a registry schema: `{ schema_id | subject [+ schema_version] | schema_version |
 * subject_name_strategy: "TOPIC_NAME", data }` (the gateway serializes it, see schemas/serializer.ts).
 */

export interface DecodedRecord {
  record: StreamRecord;
  keyType: string | null;
  valueType: string | null;
  /** key or value data to serialize with a registry schema before the record is produced */
  withSchema?: { key?: SchemaData; value?: SchemaData };
}

/** JSON data and the schema to serialize it with (REST Proxy v3 forms); `subject: null` means the topic name strategy. */
export interface SchemaData {
  ref: { schemaId: number } | { subject: string | null; version: number | 'latest' };
  data: unknown;
}

const SCHEMA_KEYS = new Set(['type', 'data', 'schema_id', 'schema_version', 'subject', 'subject_name_strategy', 'schema']);
const SCHEMA_TYPES = new Set(['AVRO', 'PROTOBUF', 'JSONSCHEMA']);

export interface BatchEntry extends DecodedRecord {
  id: string;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const RECORD_KEYS = new Set(['partition_id', 'headers', 'key', 'value', 'timestamp', 'id']);

function invalid(message: string): GatewayError {
  return new GatewayError('invalid', message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The value as JSON text; nesting too deep for the serializer (thousands of levels) is the client's error. */
function jsonText(field: string, data: unknown): string {
  try {
    return JSON.stringify(data);
  } catch (err) {
    if (err instanceof RangeError) throw invalid(`${field}.data is nested too deeply`);
    throw err;
  }
}

function decodeData(field: string, raw: unknown): { bytes: Uint8Array | null; type: string | null; withSchema?: SchemaData } {
  if (raw === undefined || raw === null) return { bytes: null, type: null };
  if (!isObject(raw)) throw invalid(`${field} must be an object like {"type": "JSON", "data": ...}`);
  const schemaForm = 'schema_id' in raw || 'schema_version' in raw || 'subject' in raw || 'subject_name_strategy' in raw || 'schema' in raw || (typeof raw.type === 'string' && SCHEMA_TYPES.has(raw.type));
  for (const [at, k] of Object.keys(raw).entries()) {
    // the name is client input (it could be a secret): the message says where, not what
    if (!(schemaForm ? SCHEMA_KEYS.has(k) : k === 'type' || k === 'data')) throw invalid(`${field}: unknown property (member ${at + 1}); expected type and data${schemaForm ? ', or schema_id / subject / schema_version / subject_name_strategy' : ''}`);
  }
  if (schemaForm) return { bytes: null, type: typeof raw.type === 'string' ? raw.type : 'SCHEMA', withSchema: schemaData(field, raw) };
  const type = raw.type === undefined ? 'JSON' : String(raw.type);
  const data = raw.data;
  switch (type) {
    case 'JSON':
      if (data === undefined) throw invalid(`${field}.data is required`);
      return { bytes: data === null ? null : Buffer.from(jsonText(field, data)), type };
    case 'STRING':
      if (typeof data !== 'string') throw invalid(`${field}.data must be a string for type STRING`);
      return { bytes: Buffer.from(data, 'utf8'), type };
    case 'BINARY':
      if (typeof data !== 'string' || !BASE64.test(data)) throw invalid(`${field}.data must be standard base64 for type BINARY`);
      return { bytes: Buffer.from(data, 'base64'), type };
    default:
      // (described, not echoed: the client's value could be anything, of any size or depth)
      throw invalid(`${field}.type must be one of JSON, STRING, BINARY, AVRO, PROTOBUF, JSONSCHEMA (got ${typeof raw.type === 'string' ? JSON.stringify(raw.type.slice(0, 64)) : typeof raw.type})`);
  }
}

/** The schema reference of a key or value in the REST Proxy's forms. */
function schemaData(field: string, raw: Record<string, unknown>): SchemaData {
  if (raw.schema !== undefined) throw invalid(`${field}.schema: the gateway does not register schemas; register it with the registry and send its schema_id or subject`);
  if (raw.type !== undefined && (typeof raw.type !== 'string' || !SCHEMA_TYPES.has(raw.type))) throw invalid(`${field}.type must be AVRO, PROTOBUF or JSONSCHEMA with a schema reference`);
  if (raw.data === undefined) throw invalid(`${field}.data is required`);
  const version = raw.schema_version;
  if (version !== undefined && (!Number.isInteger(version) || (version as number) < 1)) throw invalid(`${field}.schema_version must be a positive integer`);
  if (raw.schema_id !== undefined) {
    if (!Number.isInteger(raw.schema_id) || (raw.schema_id as number) < 0 || (raw.schema_id as number) > 0x7fffffff) throw invalid(`${field}.schema_id must be a schema id (a non-negative 32-bit integer)`);
    if (raw.subject !== undefined || version !== undefined) throw invalid(`${field}: schema_id names the schema alone; leave out subject and schema_version`);
    return { ref: { schemaId: raw.schema_id as number }, data: raw.data };
  }
  const strategy = raw.subject_name_strategy;
  if (strategy !== undefined && strategy !== 'TOPIC_NAME') {
    throw invalid(`${field}.subject_name_strategy: only TOPIC_NAME is supported (RECORD_NAME and TOPIC_RECORD_NAME need the record's name, which JSON data does not carry); or name the subject`);
  }
  if (raw.subject !== undefined) {
    if (typeof raw.subject !== 'string' || raw.subject === '' || raw.subject.length > 255) throw invalid(`${field}.subject must be a subject name`);
    if (strategy !== undefined) throw invalid(`${field}: a subject and a subject_name_strategy exclude each other`);
    return { ref: { subject: raw.subject, version: (version as number | undefined) ?? 'latest' }, data: raw.data };
  }
  return { ref: { subject: null, version: (version as number | undefined) ?? 'latest' }, data: raw.data };
}

export function decodeRecord(raw: unknown, where = 'record'): DecodedRecord {
  if (!isObject(raw)) throw invalid(`${where} must be a JSON object`);
  for (const [at, k] of Object.keys(raw).entries()) if (!RECORD_KEYS.has(k)) throw invalid(`${where}: unknown property (member ${at + 1}); expected ${[...RECORD_KEYS].join(', ')}`);

  const record: StreamRecord = { key: null, value: null, headers: [] };
  if (raw.partition_id !== undefined && raw.partition_id !== null) {
    if (!Number.isInteger(raw.partition_id) || (raw.partition_id as number) < 0) throw invalid(`${where}.partition_id must be a non-negative integer`);
    record.partition = raw.partition_id as number;
  }
  if (raw.headers !== undefined && raw.headers !== null) {
    if (!Array.isArray(raw.headers)) throw invalid(`${where}.headers must be an array of {name, value}`);
    raw.headers.forEach((h: unknown, i) => {
      if (!isObject(h) || typeof h.name !== 'string' || h.name === '') throw invalid(`${where}.headers[${i}].name must be a non-empty string`);
      if (h.value !== null && h.value !== undefined && (typeof h.value !== 'string' || !BASE64.test(h.value))) {
        throw invalid(`${where}.headers[${i}].value must be base64`);
      }
      record.headers.push([h.name, typeof h.value === 'string' ? Buffer.from(h.value, 'base64') : new Uint8Array(0)]);
    });
  }
  if (raw.timestamp !== undefined && raw.timestamp !== null) {
    const ms = typeof raw.timestamp === 'number' ? raw.timestamp : typeof raw.timestamp === 'string' ? Date.parse(raw.timestamp) : NaN;
    if (!Number.isFinite(ms) || ms < 0) throw invalid(`${where}.timestamp must be an ISO-8601 date-time or epoch milliseconds`);
    record.timestamp = Math.trunc(ms);
  }
  const key = decodeData(`${where}.key`, raw.key);
  const value = decodeData(`${where}.value`, raw.value);
  record.key = key.bytes;
  record.value = value.bytes;
  const decoded: DecodedRecord = { record, keyType: key.type, valueType: value.type };
  if (key.withSchema || value.withSchema) decoded.withSchema = { ...(key.withSchema ? { key: key.withSchema } : {}), ...(value.withSchema ? { value: value.withSchema } : {}) };
  return decoded;
}

export function decodeBatch(raw: unknown): BatchEntry[] {
  if (!isObject(raw) || !Array.isArray(raw.entries)) throw invalid('a batch body is {"entries": [ {"id": "...", ...record}, ... ]}');
  if (raw.entries.length === 0) throw invalid('entries must not be empty');
  const ids = new Map<string, number>();
  return raw.entries.map((entry: unknown, i) => {
    const where = `entries[${i}]`;
    if (!isObject(entry) || (typeof entry.id !== 'string' && typeof entry.id !== 'number')) throw invalid(`${where}.id is required (string)`);
    const id = String(entry.id);
    const first = ids.get(id);
    if (first !== undefined) throw invalid(`${where}.id is the id of entries[${first}] too`);
    ids.set(id, i);
    return { id, ...decodeRecord(entry, where) };
  });
}
