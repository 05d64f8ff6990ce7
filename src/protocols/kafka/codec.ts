// Schema-driven codec for the Kafka wire protocol. It interprets Kafka's own JSON message
// definitions (see messages.ts for where they come from) instead of generated code: one
// interpreter covers every version of every message, and a Kafka upgrade is a jar bump.
// Per (message, version) the field list is compiled once into a plan; decoding walks the
// plan. `records` fields stay opaque: they decode to a view of the frame, never a copy.

import { BatchFormatError } from '../../formats/kafka-batch.ts';

export interface FieldSpec {
  name: string;
  type: string;
  versions: string;
  nullableVersions?: string;
  taggedVersions?: string;
  tag?: number;
  flexibleVersions?: string;
  default?: string | number | boolean;
  fields?: FieldSpec[];
  entityType?: string;
}

export interface MessageSpec {
  name: string;
  type: 'request' | 'response' | 'header' | 'data' | 'metadata' | 'coordinator-key' | 'coordinator-value';
  apiKey?: number;
  validVersions: string;
  flexibleVersions: string;
  fields: FieldSpec[];
  commonStructs?: Array<{ name: string; versions: string; fields: FieldSpec[] }>;
}

/** A decoded struct: field name (as in the JSON definitions) -> value. */
export type Struct = Record<string, unknown> & { _unknownTags?: Map<number, Uint8Array> };

type Prim = 'int8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'float64' | 'bool' | 'uuid' | 'string' | 'bytes' | 'records';

interface Plan {
  fields: FieldPlan[];
  tagged: FieldPlan[];
  flexible: boolean;
}

interface FieldPlan {
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

// ---------------------------------------------------------------------------
// plans

const PRIMS = new Set<string>(['int8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'float64', 'bool', 'uuid', 'string', 'bytes', 'records']);
const ZERO_UUID = new Uint8Array(16);

export class MessageCodec {
  readonly spec: MessageSpec;
  readonly #plans = new Map<number, Plan>();
  readonly #common = new Map<string, FieldSpec[]>();

  constructor(spec: MessageSpec) {
    this.spec = spec;
    for (const s of spec.commonStructs ?? []) this.#common.set(s.name, s.fields);
  }

  get validVersions(): [number, number] {
    return rangeBounds(this.spec.validVersions);
  }

  isFlexible(version: number): boolean {
    return inRange(this.spec.flexibleVersions, version);
  }

  plan(version: number): Plan {
    let plan = this.#plans.get(version);
    if (!plan) {
      plan = this.#compile(this.spec.fields, version, this.isFlexible(version));
      this.#plans.set(version, plan);
    }
    return plan;
  }

  #compile(fields: FieldSpec[], version: number, flexible: boolean): Plan {
    const plan: Plan = { fields: [], tagged: [], flexible };
    for (const f of fields) {
      if (!inRange(f.versions, version)) continue;
      const array = f.type.startsWith('[]');
      const base = array ? f.type.slice(2) : f.type;
      const isPrim = PRIMS.has(base);
      const nested = isPrim ? undefined : (f.fields ?? this.#common.get(base));
      if (!isPrim && !nested) throw new Error(`${this.spec.name}: unknown type ${f.type} of field ${f.name}`);
      const nullable = inRange(f.nullableVersions, version);
      const fp: FieldPlan = {
        name: f.name,
        type: isPrim ? (base as Prim) : 'struct',
        array,
        nullable,
        compact: flexible && f.flexibleVersions !== 'none',
        defaultValue: undefined,
      };
      if (nested) fp.struct = this.#compile(nested, version, flexible);
      fp.defaultValue = defaultFor(fp, f.default);
      if (flexible && f.taggedVersions !== undefined && inRange(f.taggedVersions, version)) {
        fp.tag = f.tag!;
        plan.tagged.push(fp);
      } else {
        plan.fields.push(fp);
      }
    }
    plan.tagged.sort((a, b) => a.tag! - b.tag!);
    return plan;
  }

  decode(buf: Uint8Array, offset: number, version: number): { value: Struct; offset: number } {
    const r = new Reader(buf, offset);
    const value = readStruct(r, this.plan(version));
    return { value, offset: r.offset };
  }

  encode(value: Struct, version: number, w: Writer = new Writer()): Writer {
    writeStruct(w, this.plan(version), value);
    return w;
  }

  /** A struct with every field at its default, for building responses from scratch. */
  defaults(version: number): Struct {
    return defaultsOf(this.plan(version));
  }
}

function defaultsOf(plan: Plan): Struct {
  const s: Struct = {};
  for (const f of [...plan.fields, ...plan.tagged]) {
    s[f.name] = cloneDefault(f);
    // element factories for lists of structs, hidden from enumeration (see apis.ts errorResponse)
    if (f.array && f.struct) Object.defineProperty(s, `__proto_${f.name}`, { value: () => defaultsOf(f.struct!), enumerable: false });
  }
  return s;
}

function cloneDefault(f: FieldPlan): unknown {
  if (f.array) return f.defaultValue === null ? null : [];
  if (f.type === 'struct') return f.defaultValue === null ? null : defaultsOf(f.struct!);
  return f.defaultValue;
}

function defaultFor(f: FieldPlan, d: string | number | boolean | undefined): unknown {
  if (d === 'null') return null;
  if (f.array) return [];
  switch (f.type) {
    case 'struct':
      return undefined;
    case 'bool':
      return d === true || d === 'true';
    case 'int64':
      return d === undefined ? 0n : BigInt(d as string);
    case 'string':
      return d === undefined ? '' : String(d);
    case 'bytes':
    case 'records':
      return f.nullable ? null : new Uint8Array(0);
    case 'uuid':
      return ZERO_UUID;
    default:
      return d === undefined ? 0 : Number(d);
  }
}

// ---------------------------------------------------------------------------
// reading

export class Reader {
  readonly buf: Uint8Array;
  readonly view: DataView;
  offset: number;

  constructor(buf: Uint8Array, offset = 0) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.offset = offset;
  }

  #need(n: number): void {
    if (n < 0 || this.offset + n > this.buf.byteLength) throw new KafkaProtocolError(`truncated message: need ${n} bytes at offset ${this.offset} of ${this.buf.byteLength}`);
  }
  int8(): number {
    this.#need(1);
    return this.view.getInt8(this.offset++);
  }
  int16(): number {
    this.#need(2);
    const v = this.view.getInt16(this.offset);
    this.offset += 2;
    return v;
  }
  uint16(): number {
    this.#need(2);
    const v = this.view.getUint16(this.offset);
    this.offset += 2;
    return v;
  }
  int32(): number {
    this.#need(4);
    const v = this.view.getInt32(this.offset);
    this.offset += 4;
    return v;
  }
  uint32(): number {
    this.#need(4);
    const v = this.view.getUint32(this.offset);
    this.offset += 4;
    return v;
  }
  int64(): bigint {
    this.#need(8);
    const v = this.view.getBigInt64(this.offset);
    this.offset += 8;
    return v;
  }
  float64(): number {
    this.#need(8);
    const v = this.view.getFloat64(this.offset);
    this.offset += 8;
    return v;
  }
  uvarint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      this.#need(1);
      const b = this.buf[this.offset++]!;
      if (shift === 28 && b > 0x0f) throw new KafkaProtocolError('varint is too long');
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
  }
  slice(n: number): Uint8Array {
    this.#need(n);
    const s = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return s;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

function readLength(r: Reader, compact: boolean, wide: boolean): number {
  if (compact) return r.uvarint() - 1;
  return wide ? r.int32() : r.int16();
}

function readPrim(r: Reader, f: FieldPlan): unknown {
  switch (f.type) {
    case 'int8':
      return r.int8();
    case 'int16':
      return r.int16();
    case 'uint16':
      return r.uint16();
    case 'int32':
      return r.int32();
    case 'uint32':
      return r.uint32();
    case 'int64':
      return r.int64();
    case 'float64':
      return r.float64();
    case 'bool':
      return r.int8() !== 0;
    case 'uuid':
      return r.slice(16);
    case 'string': {
      const n = readLength(r, f.compact, false);
      if (n < 0) {
        if (!f.nullable) throw new KafkaProtocolError(`field ${f.name}: null for a non-nullable string`);
        return null;
      }
      return utf8.decode(r.slice(n));
    }
    case 'bytes':
    case 'records': {
      const n = readLength(r, f.compact, true);
      if (n < 0) {
        if (!f.nullable) throw new KafkaProtocolError(`field ${f.name}: null for non-nullable bytes`);
        return null;
      }
      return r.slice(n);
    }
    default:
      throw new KafkaProtocolError(`unexpected type ${f.type}`);
  }
}

function readValue(r: Reader, f: FieldPlan): unknown {
  if (f.array) {
    const n = readLength(r, f.compact, true);
    if (n < 0) {
      if (!f.nullable) throw new KafkaProtocolError(`field ${f.name}: null for a non-nullable array`);
      return null;
    }
    // every element takes at least one byte: a huge count in a small frame is garbage
    if (n > r.buf.byteLength - r.offset) throw new KafkaProtocolError(`field ${f.name}: array of ${n} elements cannot fit`);
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) out[i] = f.type === 'struct' ? readStruct(r, f.struct!) : readPrim(r, f);
    return out;
  }
  if (f.type === 'struct') {
    if (f.nullable) {
      if (r.int8() < 0) return null;
    }
    return readStruct(r, f.struct!);
  }
  return readPrim(r, f);
}

function readStruct(r: Reader, plan: Plan): Struct {
  const s: Struct = {};
  for (const f of plan.fields) s[f.name] = readValue(r, f);
  if (plan.flexible) {
    for (const f of plan.tagged) s[f.name] = cloneDefault(f);
    const count = r.uvarint();
    for (let i = 0; i < count; i++) {
      const tag = r.uvarint();
      const size = r.uvarint();
      const f = plan.tagged.find((t) => t.tag === tag);
      if (f) {
        const end = r.offset + size;
        s[f.name] = readValue(r, f);
        if (r.offset !== end) throw new KafkaProtocolError(`tagged field ${f.name}: size mismatch`);
      } else {
        (s._unknownTags ??= new Map()).set(tag, r.slice(size));
      }
    }
  }
  return s;
}

// ---------------------------------------------------------------------------
// writing

/**
 * Collects small writes in a scratch buffer and large byte slices (records) by reference,
 * so re-encoding a message copies each record batch once, into the final frame.
 */
export class Writer {
  readonly #parts: Uint8Array[] = [];
  #buf = Buffer.allocUnsafe(1024);
  #pos = 0;
  #start = 0;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  #room(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    this.#flushScratch();
    this.#buf = Buffer.allocUnsafe(Math.max(1024, n));
    this.#pos = 0;
    this.#start = 0;
  }
  #flushScratch(): void {
    if (this.#pos > this.#start) this.#parts.push(this.#buf.subarray(this.#start, this.#pos));
    this.#start = this.#pos;
  }
  int8(v: number): void {
    this.#room(1);
    this.#buf.writeInt8(v, this.#pos);
    this.#pos += 1;
    this.#length += 1;
  }
  int16(v: number): void {
    this.#room(2);
    this.#buf.writeInt16BE(v, this.#pos);
    this.#pos += 2;
    this.#length += 2;
  }
  uint16(v: number): void {
    this.#room(2);
    this.#buf.writeUInt16BE(v, this.#pos);
    this.#pos += 2;
    this.#length += 2;
  }
  int32(v: number): void {
    this.#room(4);
    this.#buf.writeInt32BE(v, this.#pos);
    this.#pos += 4;
    this.#length += 4;
  }
  uint32(v: number): void {
    this.#room(4);
    this.#buf.writeUInt32BE(v, this.#pos);
    this.#pos += 4;
    this.#length += 4;
  }
  int64(v: bigint): void {
    this.#room(8);
    this.#buf.writeBigInt64BE(v, this.#pos);
    this.#pos += 8;
    this.#length += 8;
  }
  float64(v: number): void {
    this.#room(8);
    this.#buf.writeDoubleBE(v, this.#pos);
    this.#pos += 8;
    this.#length += 8;
  }
  uvarint(v: number): void {
    this.#room(5);
    while (v >= 0x80) {
      this.#buf[this.#pos++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
      this.#length++;
    }
    this.#buf[this.#pos++] = v;
    this.#length++;
  }
  bytes(b: Uint8Array): void {
    if (b.byteLength > 256) {
      this.#flushScratch();
      this.#parts.push(b);
    } else {
      this.#room(b.byteLength);
      this.#buf.set(b, this.#pos);
      this.#pos += b.byteLength;
    }
    this.#length += b.byteLength;
  }
  /** The encoded bytes, optionally preceded by a 4-byte size (a Kafka frame). */
  finish(framed = false): Buffer {
    this.#flushScratch();
    const total = this.#length + (framed ? 4 : 0);
    const out = Buffer.allocUnsafe(total);
    let o = 0;
    if (framed) o = out.writeInt32BE(this.#length, 0);
    for (const p of this.#parts) {
      out.set(p, o);
      o += p.byteLength;
    }
    return out;
  }
}

const utf8e = new TextEncoder();

function writeLength(w: Writer, n: number, compact: boolean, wide: boolean): void {
  if (compact) w.uvarint(n + 1);
  else if (wide) w.int32(n);
  else w.int16(n);
}

function writePrim(w: Writer, f: FieldPlan, v: unknown): void {
  switch (f.type) {
    case 'int8':
      return w.int8(Number(v ?? 0));
    case 'int16':
      return w.int16(Number(v ?? 0));
    case 'uint16':
      return w.uint16(Number(v ?? 0));
    case 'int32':
      return w.int32(Number(v ?? 0));
    case 'uint32':
      return w.uint32(Number(v ?? 0));
    case 'int64':
      return w.int64(typeof v === 'bigint' ? v : BigInt((v as number | undefined) ?? 0));
    case 'float64':
      return w.float64(Number(v ?? 0));
    case 'bool':
      return w.int8(v ? 1 : 0);
    case 'uuid':
      return w.bytes((v as Uint8Array | undefined) ?? ZERO_UUID);
    case 'string': {
      if (v === null || v === undefined) {
        if (!f.nullable && v === null) throw new KafkaProtocolError(`field ${f.name}: null for a non-nullable string`);
        if (v === null) return writeLength(w, -1, f.compact, false);
        v = '';
      }
      const b = utf8e.encode(v as string);
      writeLength(w, b.byteLength, f.compact, false);
      return w.bytes(b);
    }
    case 'bytes':
    case 'records': {
      if (v === null || v === undefined) {
        if (f.nullable) return writeLength(w, -1, f.compact, true);
        v = new Uint8Array(0);
      }
      const b = v as Uint8Array;
      writeLength(w, b.byteLength, f.compact, true);
      return w.bytes(b);
    }
    default:
      throw new KafkaProtocolError(`unexpected type ${f.type}`);
  }
}

function writeValue(w: Writer, f: FieldPlan, v: unknown): void {
  if (f.array) {
    if (v === null || v === undefined) {
      if (f.nullable) return writeLength(w, -1, f.compact, true);
      v = [];
    }
    const arr = v as unknown[];
    writeLength(w, arr.length, f.compact, true);
    for (const e of arr) {
      if (f.type === 'struct') writeStruct(w, f.struct!, e as Struct);
      else writePrim(w, f, e);
    }
    return;
  }
  if (f.type === 'struct') {
    if (f.nullable) {
      if (v === null || v === undefined) return w.int8(-1);
      w.int8(1);
    }
    return writeStruct(w, f.struct!, (v ?? {}) as Struct);
  }
  writePrim(w, f, v);
}

function isDefault(f: FieldPlan, v: unknown): boolean {
  if (v === undefined) return true;
  if (f.array) return v === null ? f.defaultValue === null : Array.isArray(v) && v.length === 0 && f.defaultValue !== null;
  if (f.type === 'struct') {
    if (v === null) return f.nullable;
    const st = v as Struct;
    if (st._unknownTags?.size) return false;
    return [...f.struct!.fields, ...f.struct!.tagged].every((sf) => isDefault(sf, st[sf.name]));
  }
  if (v instanceof Uint8Array) return f.type === 'uuid' ? v.every((b) => b === 0) : v.byteLength === 0 && f.defaultValue !== null;
  return v === f.defaultValue;
}

function writeStruct(w: Writer, plan: Plan, s: Struct): void {
  for (const f of plan.fields) writeValue(w, f, s[f.name]);
  if (!plan.flexible) return;
  const present: Array<[number, Uint8Array]> = [];
  for (const f of plan.tagged) {
    const v = s[f.name];
    if (isDefault(f, v)) continue;
    const tw = new Writer();
    writeValue(tw, f, v);
    present.push([f.tag!, tw.finish()]);
  }
  if (s._unknownTags) for (const [tag, b] of s._unknownTags) present.push([tag, b]);
  present.sort((a, b) => a[0] - b[0]);
  w.uvarint(present.length);
  for (const [tag, b] of present) {
    w.uvarint(tag);
    w.uvarint(b.byteLength);
    w.bytes(b);
  }
}
