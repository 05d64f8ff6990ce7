// Avro values (binary encoding, the writer schema by id) for the inspection engine: decoded
// with avsc's compiled types (compiled once per schema id), shown to the engine as JSON whose
// paths are the schema's field names, and written back with the same schema.
//
// The view: a record is an object with its fields in schema order, a union is the value of
// its branch (null stays null), a map an object, an array an array, an enum its symbol,
// bytes and fixed a string of their bytes as Latin-1 (so digits in them are digits), a long
// a JSON number written exactly. Field tags come from the `confluent:tags` attribute of a
// record field (Confluent's data-contract convention).

import avro from 'avsc';
import type { RegisteredSchema } from '../../schemas/source.ts';
import { MAX_LEAF_DEPTH, numberChanged, rethrowUnder, ValueCodecError, type DecodedValue, type LeafStep, type SchemaLeaf, type TaggedLeaf, type ValueCodec, type WriteOptions } from './codec.ts';

type AvroType = avro.Type & { typeName: string };
const TAG_ATTRIBUTE = 'confluent:tags';

// longs as bigint: a JS number loses the low bits of a 64-bit id, and a value re-encoded
// after masking another field must keep every other field exact
const LongAsBigInt = avro.types.LongType.__with({
  fromBuffer: (buf: Buffer) => buf.readBigInt64LE(),
  toBuffer: (n: bigint) => {
    const buf = Buffer.alloc(8);
    buf.writeBigInt64LE(BigInt(n));
    return buf;
  },
  fromJSON: (n: number | string) => BigInt(n),
  toJSON: (n: bigint) => Number(n),
  isValid: (n: unknown) => typeof n === 'bigint' && n >= -(2n ** 63n) && n < 2n ** 63n,
  compare: (a: bigint, b: bigint) => (a === b ? 0 : a < b ? -1 : 1),
});

/** Fields tagged in the schema text: record full name -> field name -> tags. */
type Tags = Map<string, Map<string, string[]>>;

export class AvroCodec implements ValueCodec {
  readonly #type: AvroType;
  readonly #tags: Tags;
  readonly tagged: boolean;
  readonly messageIndexed = false;

  constructor(schema: RegisteredSchema) {
    const registry: Record<string, avro.Type> = { long: LongAsBigInt as unknown as avro.Type };
    const tags: Tags = new Map();
    try {
      // referenced schemas define named types the main schema uses: parse them first, each
      // after the ones it needs (the resolved map is flat and unordered)
      const pending = [...new Set(schema.resolved.values())].filter((s) => s.type === 'AVRO');
      for (let progress = true; pending.length > 0 && progress; ) {
        progress = false;
        for (let i = 0; i < pending.length; i++) {
          const text = JSON.parse(pending[i]!.schema) as unknown;
          try {
            avro.Type.forSchema(text as avro.Schema, { wrapUnions: true, registry });
          } catch {
            continue;
          }
          collectTags(text, '', tags);
          pending.splice(i--, 1);
          progress = true;
        }
      }
      if (pending.length > 0) throw new Error(`referenced schema ${pending[0]!.id} does not parse`);
      const text = JSON.parse(schema.schema) as unknown;
      collectTags(text, '', tags);
      this.#type = avro.Type.forSchema(text as avro.Schema, { wrapUnions: true, registry }) as AvroType;
    } catch (err) {
      throw new ValueCodecError('schema-unsupported', `Avro schema ${schema.id} does not compile: ${(err as Error).message}`);
    }
    refuseZeroWidthRepeats(this.#type, new Set());
    this.#tags = tags;
    this.tagged = tags.size > 0;
  }

  decode(payload: Uint8Array): DecodedValue {
    let native: unknown;
    try {
      const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
      // fromBuffer refuses trailing bytes and truncation; copies strings and bytes out
      native = this.#type.fromBuffer(buf);
    } catch (err) {
      throw new ValueCodecError('undecodable', `the value does not decode with its Avro schema: ${(err as Error).message}`);
    }
    const parts: string[] = [];
    view(this.#type, native, parts);
    return { native, view: parts.join('') };
  }

  taggedLeaves(decoded: DecodedValue, tree: unknown): TaggedLeaf[] {
    const leaves: TaggedLeaf[] = [];
    if (this.tagged) collectLeaves(this.#type, decoded.native, tree, null, this.#tags, leaves, undefined);
    return leaves;
  }

  leaves(): SchemaLeaf[] {
    const out: SchemaLeaf[] = [];
    avroLeaves(this.#type, [], [], this.#tags, new Set(), out);
    return out;
  }

  serialize(data: unknown): { payload: Uint8Array } {
    try {
      // Avro's JSON encoding: unions as {"branch": value}, bytes as strings of code points 0-255
      return { payload: this.#type.toBuffer(this.#type.fromString(JSON.stringify(data))) };
    } catch (err) {
      throw new ValueCodecError('unfit', `the data does not fit the Avro schema: ${(err as Error).message}`);
    }
  }

  encode(decoded: DecodedValue, tree: unknown, options: WriteOptions): Uint8Array {
    const value = rebuild(this.#type, decoded.native, tree, '$', options);
    try {
      return this.#type.toBuffer(value);
    } catch (err) {
      throw new ValueCodecError('unfit', `the changed value does not encode with its Avro schema: ${(err as Error).message}`);
    }
  }
}

function avroLeaves(t: AvroType, path: LeafStep[], tags: readonly string[], all: Tags, seen: Set<AvroType>, out: SchemaLeaf[]): void {
  if (path.length > MAX_LEAF_DEPTH) return;
  switch (t.typeName) {
    case 'record':
    case 'error': {
      // a recursive type is walked once on each path
      if (seen.has(t)) return;
      const byField = all.get((t as unknown as { name: string }).name);
      const inner = new Set(seen).add(t);
      for (const f of (t as unknown as avro.types.RecordType).fields) avroLeaves(f.type as AvroType, [...path, { name: f.name }], byField?.get(f.name) ?? tags, all, inner, out);
      return;
    }
    case 'union:wrapped':
      for (const b of (t as unknown as avro.types.WrappedUnionType).types) avroLeaves(b as AvroType, path, tags, all, seen, out);
      return;
    case 'array':
      return avroLeaves((t as unknown as avro.types.ArrayType).itemsType as AvroType, [...path, { element: true }], tags, all, seen, out);
    case 'map':
      return avroLeaves((t as unknown as avro.types.MapType).valuesType as AvroType, [...path, { mapValue: true }], tags, all, seen, out);
    case 'string':
    case 'bytes':
    case 'fixed':
      return void out.push({ path, kind: 'string', tags });
    case 'enum':
      return void out.push({ path, kind: 'enum', tags });
    case 'boolean':
      return void out.push({ path, kind: 'boolean', tags });
    case 'null':
      return;
    default:
      return void out.push({ path, kind: 'number', tags });
  }
}

function fullName(name: string, namespace: string): string {
  return name.includes('.') || namespace === '' ? name : `${namespace}.${name}`;
}

/** Walks the schema text for `confluent:tags` on record fields, resolving names as Avro does. */
function collectTags(schema: unknown, namespace: string, into: Tags): void {
  if (Array.isArray(schema)) {
    for (const s of schema) collectTags(s, namespace, into);
    return;
  }
  if (schema === null || typeof schema !== 'object') return;
  const s = schema as Record<string, unknown>;
  const ns = typeof s.namespace === 'string' ? s.namespace : typeof s.name === 'string' && s.name.includes('.') ? s.name.slice(0, s.name.lastIndexOf('.')) : namespace;
  if ((s.type === 'record' || s.type === 'error') && typeof s.name === 'string' && Array.isArray(s.fields)) {
    const name = fullName(s.name, typeof s.namespace === 'string' ? s.namespace : namespace);
    for (const f of s.fields as Array<Record<string, unknown>>) {
      const t = f[TAG_ATTRIBUTE];
      if (Array.isArray(t) && t.every((x) => typeof x === 'string') && t.length > 0 && typeof f.name === 'string') {
        let fields = into.get(name);
        if (!fields) into.set(name, (fields = new Map()));
        fields.set(f.name, t as string[]);
      }
      collectTags(f.type, ns, into);
    }
  }
  if (s.type === 'array') collectTags(s.items, ns, into);
  if (s.type === 'map') collectTags(s.values, ns, into);
  if (typeof s.type === 'object') collectTags(s.type, ns, into);
}

function zeroWidth(t: AvroType, seen: Set<AvroType>): boolean {
  switch (t.typeName) {
    case 'null':
      return true;
    case 'fixed':
      return (t as unknown as { size: number }).size === 0;
    case 'record':
    case 'error': {
      if (seen.has(t)) return false;
      seen.add(t);
      const r = (t as unknown as avro.types.RecordType).fields.every((f) => zeroWidth(f.type as AvroType, seen));
      seen.delete(t);
      return r;
    }
    default:
      return false;
  }
}

/**
 * An array (or map) of items that take no bytes lets four bytes of a hostile value claim 2^62
 * items that the decoder would loop over: such schemas are refused, not decoded.
 */
function refuseZeroWidthRepeats(t: AvroType, seen: Set<AvroType>): void {
  if (seen.has(t)) return;
  seen.add(t);
  switch (t.typeName) {
    case 'array': {
      const items = (t as unknown as avro.types.ArrayType).itemsType as AvroType;
      if (zeroWidth(items, new Set())) throw new ValueCodecError('schema-unsupported', 'the schema has an array of items that take no bytes (null, fixed(0) or empty records); such values are not decoded');
      refuseZeroWidthRepeats(items, seen);
      break;
    }
    case 'map':
      refuseZeroWidthRepeats((t as unknown as avro.types.MapType).valuesType as AvroType, seen);
      break;
    case 'record':
    case 'error':
      for (const f of (t as unknown as avro.types.RecordType).fields) refuseZeroWidthRepeats(f.type as AvroType, seen);
      break;
    case 'union:wrapped':
      for (const b of (t as unknown as avro.types.WrappedUnionType).types) refuseZeroWidthRepeats(b as AvroType, seen);
      break;
  }
}

function latin1(b: Buffer): string {
  return b.toString('latin1');
}

function numberText(n: number): string {
  return Number.isFinite(n) ? String(n) : JSON.stringify(String(n));
}

/** Per record type: the view's text before each field (`{"a":`, `,"b":`), made once. */
const recordKeys = new WeakMap<AvroType, string[]>();
function keysOf(t: AvroType, fields: ReadonlyArray<{ name: string }>): string[] {
  let keys = recordKeys.get(t);
  if (!keys) recordKeys.set(t, (keys = fields.map((f, i) => `${i === 0 ? '{' : ','}${JSON.stringify(f.name)}:`)));
  return keys;
}

/** Appends the JSON view of `v` (of type `t`) to `out`. */
function view(t: AvroType, v: unknown, out: string[]): void {
  switch (t.typeName) {
    case 'record':
    case 'error': {
      const fields = (t as unknown as avro.types.RecordType).fields;
      if (fields.length === 0) return void out.push('{}');
      const keys = keysOf(t, fields);
      const rec = v as Record<string, unknown>;
      for (let i = 0; i < fields.length; i++) {
        out.push(keys[i]!);
        view(fields[i]!.type as AvroType, rec[fields[i]!.name], out);
      }
      out.push('}');
      return;
    }
    case 'union:wrapped': {
      if (v === null) return void out.push('null');
      const [branch, inner] = unionBranch(t, v);
      return view(branch, inner, out);
    }
    case 'array': {
      const items = (t as unknown as avro.types.ArrayType).itemsType as AvroType;
      out.push('[');
      (v as unknown[]).forEach((x, i) => {
        if (i > 0) out.push(',');
        view(items, x, out);
      });
      out.push(']');
      return;
    }
    case 'map': {
      const values = (t as unknown as avro.types.MapType).valuesType as AvroType;
      out.push('{');
      let first = true;
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
        if (!first) out.push(',');
        first = false;
        out.push(JSON.stringify(k), ':');
        view(values, x, out);
      }
      out.push('}');
      return;
    }
    case 'string':
    case 'enum':
      return void out.push(JSON.stringify(v));
    case 'bytes':
    case 'fixed':
      return void out.push(JSON.stringify(latin1(v as Buffer)));
    case 'abstract:long':
      return void out.push((v as bigint).toString());
    case 'int':
    case 'float':
    case 'double':
      return void out.push(numberText(v as number));
    case 'boolean':
      return void out.push(v ? 'true' : 'false');
    case 'null':
      return void out.push('null');
    default:
      // logical types are not registered, so avsc never hands us one
      throw new ValueCodecError('schema-unsupported', `Avro type ${t.typeName} is not supported`);
  }
}

function unionBranch(t: AvroType, v: unknown): [AvroType, unknown] {
  const name = Object.keys(v as object)[0]!;
  const branch = (t as unknown as avro.types.WrappedUnionType).types.find((b) => (b as unknown as { branchName: string }).branchName === name)!;
  return [branch as AvroType, (v as Record<string, unknown>)[name]];
}

/** What a field a rule removed becomes: null where the schema allows it, else the type's empty value. */
function emptyOf(t: AvroType, path: string, options: WriteOptions): unknown {
  switch (t.typeName) {
    case 'union:wrapped': {
      const types = (t as unknown as avro.types.WrappedUnionType).types as AvroType[];
      if (types.some((b) => b.typeName === 'null')) return null;
      const b = types[0]!;
      return { [(b as unknown as { branchName: string }).branchName]: emptyOf(b, path, options) };
    }
    case 'string':
      return '';
    case 'bytes':
      return Buffer.alloc(0);
    case 'array':
      return [];
    case 'map':
      return {};
    case 'abstract:long':
      return BigInt(Math.trunc(options.numbers));
    case 'int':
      return Math.trunc(options.numbers) | 0;
    case 'float':
    case 'double':
      return options.numbers;
    case 'boolean':
      return false;
    case 'null':
      return null;
    case 'enum': {
      const e = t as unknown as { default?: string };
      if (e.default !== undefined) return e.default;
      throw new ValueCodecError('unfit', 'a rule removed an enum field whose enum has no default', path);
    }
    default:
      throw new ValueCodecError('unfit', `a rule removed a field of type ${t.typeName}, which the schema requires`, path);
  }
}

function asNumber(t: AvroType, orig: unknown, out: unknown, options: WriteOptions): unknown {
  const written = t.typeName === 'abstract:long' ? (orig as bigint).toString() : numberText(orig as number);
  if (!numberChanged(out, written)) return orig;
  if (t.typeName === 'abstract:long') return BigInt(Math.trunc(options.numbers));
  if (t.typeName === 'int') return Math.trunc(options.numbers) | 0;
  return options.numbers;
}

/** The native value for the (changed) view `out`, walking the schema with the original value. */
function rebuild(t: AvroType, orig: unknown, out: unknown, path: string, options: WriteOptions): unknown {
  switch (t.typeName) {
    case 'record':
    case 'error': {
      if (out === null || typeof out !== 'object' || Array.isArray(out)) throw new ValueCodecError('unfit', 'a record became something else', path);
      const fields = (t as unknown as avro.types.RecordType).fields;
      const o = out as Record<string, unknown>;
      const rec = orig as Record<string, unknown>;
      const result: Record<string, unknown> = {};
      for (const f of fields) {
        // paths are built on the way out of a failure only (rethrowUnder), not for every field
        try {
          result[f.name] = Object.hasOwn(o, f.name) ? rebuild(f.type as AvroType, rec[f.name], o[f.name], '$', options) : emptyOf(f.type as AvroType, '$', options);
        } catch (err) {
          rethrowUnder(err, f.name);
        }
      }
      // a key the schema does not have: a rule rewrote a field name, which cannot be written back
      const keys = Object.keys(o);
      if (keys.length !== fields.length || keys.some((k, i) => k !== fields[i]!.name)) {
        for (const k of keys) if (!fields.some((f) => f.name === k)) throw new ValueCodecError('unfit', `a rule rewrote the field name ${JSON.stringify(k)}`, path);
      }
      return result;
    }
    case 'union:wrapped': {
      if (orig === null) return null;
      const [branch, inner] = unionBranch(t, orig);
      return { [(branch as unknown as { branchName: string }).branchName]: rebuild(branch, inner, out, path, options) };
    }
    case 'array': {
      if (!Array.isArray(out)) throw new ValueCodecError('unfit', 'an array became something else', path);
      const items = (t as unknown as avro.types.ArrayType).itemsType as AvroType;
      const o = orig as unknown[];
      // a dropped element shortens the array: the originals no longer line up with the view
      const aligned = o.length === out.length;
      return out.map((x, i) => {
        try {
          return aligned ? rebuild(items, o[i], x, '$', options) : fromView(items, x, '$', options);
        } catch (err) {
          return rethrowUnder(err, i);
        }
      });
    }
    case 'map': {
      if (out === null || typeof out !== 'object' || Array.isArray(out)) throw new ValueCodecError('unfit', 'a map became something else', path);
      const values = (t as unknown as avro.types.MapType).valuesType as AvroType;
      const o = orig as Record<string, unknown>;
      const result: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(out as Record<string, unknown>)) {
        try {
          result[k] = Object.hasOwn(o, k) ? rebuild(values, o[k], x, '$', options) : fromView(values, x, '$', options);
        } catch (err) {
          rethrowUnder(err, k);
        }
      }
      return result;
    }
    case 'abstract:long':
    case 'int':
    case 'float':
    case 'double':
      return asNumber(t, orig, out, options);
    default:
      return fromView(t, out, path, options);
  }
}

/** A native value from the view alone (no original lines up with it). */
function fromView(t: AvroType, out: unknown, path: string, options: WriteOptions): unknown {
  switch (t.typeName) {
    case 'string':
      if (typeof out !== 'string') throw new ValueCodecError('unfit', 'a string became something else', path);
      return out;
    case 'enum': {
      const e = t as unknown as avro.types.EnumType & { default?: string };
      if (typeof out === 'string' && e.symbols.includes(out)) return out;
      if (e.default !== undefined) return e.default;
      throw new ValueCodecError('unfit', `a rule changed an enum to ${JSON.stringify(out)}, which is not one of its symbols, and the enum has no default`, path);
    }
    case 'bytes':
      if (typeof out !== 'string') throw new ValueCodecError('unfit', 'bytes became something else', path);
      return Buffer.from(out, 'latin1');
    case 'fixed': {
      const size = (t as unknown as { size: number }).size;
      if (typeof out !== 'string' || Buffer.byteLength(out, 'latin1') !== size) throw new ValueCodecError('unfit', `a rule changed the length of a fixed(${size})`, path);
      return Buffer.from(out, 'latin1');
    }
    case 'boolean':
      return typeof out === 'boolean' ? out : false;
    case 'null':
      return null;
    case 'abstract:long':
      if (typeof out === 'number' && Number.isSafeInteger(out)) return BigInt(out);
      return BigInt(Math.trunc(options.numbers));
    case 'int':
      return typeof out === 'number' && Number.isInteger(out) ? out : Math.trunc(options.numbers) | 0;
    case 'float':
    case 'double':
      return typeof out === 'number' ? out : options.numbers;
    case 'union:wrapped': {
      if (out === null) {
        if ((t as unknown as avro.types.WrappedUnionType).types.some((b) => (b as AvroType).typeName === 'null')) return null;
        throw new ValueCodecError('unfit', 'null in a union without null', path);
      }
      // the branch the view fits first
      for (const b of (t as unknown as avro.types.WrappedUnionType).types as AvroType[]) {
        if (b.typeName === 'null') continue;
        try {
          return { [(b as unknown as { branchName: string }).branchName]: fromView(b, out, path, options) };
        } catch {
          continue;
        }
      }
      throw new ValueCodecError('unfit', 'the value fits no branch of its union', path);
    }
    default:
      throw new ValueCodecError('unfit', `an element of type ${t.typeName} changed in a way that cannot be written back`, path);
  }
}

/** Tagged leaves of the view, walked with the original value (which names union branches). */
function collectLeaves(t: AvroType, orig: unknown, out: unknown, tags: readonly string[] | null, all: Tags, leaves: TaggedLeaf[], place: { set(v: unknown): void } | undefined): void {
  if (out === undefined) return;
  switch (t.typeName) {
    case 'record':
    case 'error': {
      if (out === null || typeof out !== 'object') return;
      const fields = (t as unknown as avro.types.RecordType).fields;
      const byField = all.get((t as unknown as { name: string }).name);
      const o = out as Record<string, unknown>;
      for (const f of fields) {
        const fieldTags = byField?.get(f.name) ?? tags;
        collectLeaves(f.type as AvroType, (orig as Record<string, unknown>)?.[f.name], o[f.name], fieldTags, all, leaves, { set: (v) => (o[f.name] = v) });
      }
      return;
    }
    case 'union:wrapped': {
      if (orig === null || out === null) return;
      const [branch, inner] = unionBranch(t, orig);
      return collectLeaves(branch, inner, out, tags, all, leaves, place);
    }
    case 'array': {
      if (!Array.isArray(out)) return;
      const items = (t as unknown as avro.types.ArrayType).itemsType as AvroType;
      const aligned = Array.isArray(orig) && orig.length === out.length;
      out.forEach((x, i) => collectLeaves(items, aligned ? (orig as unknown[])[i] : undefined, x, tags, all, leaves, { set: (v) => (out[i] = v) }));
      return;
    }
    case 'map': {
      if (out === null || typeof out !== 'object') return;
      const values = (t as unknown as avro.types.MapType).valuesType as AvroType;
      const o = out as Record<string, unknown>;
      for (const k of Object.keys(o)) collectLeaves(values, (orig as Record<string, unknown>)?.[k], o[k], tags, all, leaves, { set: (v) => (o[k] = v) });
      return;
    }
    default: {
      if (!tags || !place || out === null || typeof out === 'object') return;
      const text = typeof out === 'string' ? out : String(out);
      leaves.push({ tags, text, set: (v) => place.set(typeof out === 'string' || v !== text ? v : out) });
    }
  }
}
