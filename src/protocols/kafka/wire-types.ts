// The types the Kafka codec's reader and writer share: decoded structs, compiled field plans,
// version ranges, and the error for bytes that do not follow the protocol.

import { BatchFormatError } from '../../formats/kafka-batch.ts';

/** A decoded struct: field name (as in the JSON definitions) -> value. */
export type Struct = Record<string, unknown> & { _unknownTags?: Map<number, Uint8Array> };

export type Prim = 'int8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'float64' | 'bool' | 'uuid' | 'string' | 'bytes' | 'records';

export interface Plan {
  fields: FieldPlan[];
  tagged: FieldPlan[];
  flexible: boolean;
}

export interface FieldPlan {
  name: string;
  /** primitive type, or 'struct' */
  type: Prim | 'struct';
  array: boolean;
  nullable: boolean;
  /** compact encoding for strings/bytes/arrays (flexible version, unless the field opts out) */
  compact: boolean;
  tag?: number;
  struct?: Plan;
  defaultValue: unknown;
}

export class KafkaProtocolError extends BatchFormatError {
  override name = 'KafkaProtocolError';
}

// ---------------------------------------------------------------------------
// version ranges

export function inRange(range: string | undefined, v: number): boolean {
  if (range === undefined || range === 'none' || range === '') return false;
  if (range.endsWith('+')) return v >= Number(range.slice(0, -1));
  const dash = range.indexOf('-');
  if (dash === -1) return v === Number(range);
  return v >= Number(range.slice(0, dash)) && v <= Number(range.slice(dash + 1));
}

export function rangeBounds(range: string): [number, number] {
  if (range.endsWith('+')) return [Number(range.slice(0, -1)), 0x7fff];
  const dash = range.indexOf('-');
  if (dash === -1) return [Number(range), Number(range)];
  return [Number(range.slice(0, dash)), Number(range.slice(dash + 1))];
}

export const ZERO_UUID = new Uint8Array(16);

/** A struct with every field at its default. */
export function defaultsOf(plan: Plan): Struct {
  const s: Struct = {};
  for (const f of [...plan.fields, ...plan.tagged]) {
    s[f.name] = cloneDefault(f);
    // element factories for lists of structs, hidden from enumeration (see apis.ts errorResponse)
    if (f.array && f.struct) Object.defineProperty(s, `__proto_${f.name}`, { value: () => defaultsOf(f.struct!), enumerable: false });
  }
  return s;
}

export function cloneDefault(f: FieldPlan): unknown {
  if (f.array) return f.defaultValue === null ? null : [];
  if (f.type === 'struct') return f.defaultValue === null ? null : defaultsOf(f.struct!);
  return f.defaultValue;
}
