// Reading the Kafka wire format along a compiled plan (codec.ts compiles it).

import { cloneDefault, KafkaProtocolError, type FieldPlan, type Plan, type Struct } from './wire-types.ts';

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

export function readStruct(r: Reader, plan: Plan): Struct {
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
