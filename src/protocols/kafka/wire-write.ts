// Writing the Kafka wire format along a compiled plan (codec.ts compiles it).

import { KafkaProtocolError, ZERO_UUID, type FieldPlan, type Plan, type Struct } from './wire-types.ts';

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

export function writeStruct(w: Writer, plan: Plan, s: Struct): void {
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
