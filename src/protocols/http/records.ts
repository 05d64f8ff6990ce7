import { GatewayError, type StreamRecord } from '../../operation.ts';

/**
 * Decoding of Kafka REST Proxy v3 produce bodies. A record is
 * `{ partition_id?, headers?: [{name, value: base64}], key?: Data, value?: Data, timestamp? }`
 * where Data is `{ type: "JSON" | "STRING" | "BINARY", data }` (`type` defaults to JSON).
 */

export interface DecodedRecord {
  record: StreamRecord;
  keyType: string | null;
  valueType: string | null;
}

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

function decodeData(field: string, raw: unknown): { bytes: Uint8Array | null; type: string | null } {
  if (raw === undefined || raw === null) return { bytes: null, type: null };
  if (!isObject(raw)) throw invalid(`${field} must be an object like {"type": "JSON", "data": ...}`);
  for (const [at, k] of Object.keys(raw).entries()) {
    if (k === 'schema_id' || k === 'schema' || k === 'schema_version' || k === 'subject' || k === 'subject_name_strategy') {
      throw invalid(`${field}.${k}: schema registry formats are not supported; send type JSON, STRING or BINARY`);
    }
    // the name is client input (it could be a secret): the message says where, not what
    if (k !== 'type' && k !== 'data') throw invalid(`${field}: unknown property (member ${at + 1}); expected type and data`);
  }
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
      throw invalid(`${field}.type must be one of JSON, STRING, BINARY (got ${typeof raw.type === 'string' ? JSON.stringify(raw.type.slice(0, 64)) : typeof raw.type})`);
  }
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
  return { record, keyType: key.type, valueType: value.type };
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
