// Protobuf values (the writer schema's .proto by id, the message type named by the framing's
// message indexes) for the inspection engine: parsed and compiled once per schema id with
// protobufjs (imports from the schema's references, Google's well-known types built in),
// shown to the engine as JSON whose paths are the field names, written back with the same
// type.
//
// The view: a message is an object with its fields in declaration order (a oneof shows only
// its set member, an unset message field is absent), repeated fields are arrays, maps
// objects, enums their value names, 64-bit integers JSON numbers written exactly, bytes a
// Latin-1 string. Field tags come from Confluent's field option
// `[(confluent.field_meta).tags = "PII"]` (or `= { tags: ["PII", ...] }`).

import protobuf from 'protobufjs';
import type { RegisteredSchema } from '../../schemas/source.ts';
import { childPath, MAX_LEAF_DEPTH, numberChanged, ValueCodecError, type DecodedValue, type LeafStep, type SchemaLeaf, type TaggedLeaf, type ValueCodec, type WriteOptions } from './codec.ts';

type Long = protobuf.Long;
/** long.js, which protobufjs reads 64-bit integers with */
const LongOf = protobuf.util.Long as unknown as { fromNumber(n: number, unsigned?: boolean): Long };
const LONG_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const NUMBER_TYPES = new Set(['int32', 'uint32', 'sint32', 'fixed32', 'sfixed32', 'float', 'double']);
/** options protobufjs cannot parse without a definition, which Confluent's serializers have built in */
const BUILT_IN_IMPORTS = new Set(['confluent/meta.proto', 'google/protobuf/descriptor.proto']);

interface Decoded extends DecodedValue {
  readonly type: protobuf.Type;
}

export class ProtobufCodec implements ValueCodec {
  readonly messageIndexed = true;
  readonly tagged: boolean;
  readonly #root: protobuf.Root;
  /** the file's message types in declaration order, nested ones under their parent */
  readonly #messages: MessageTree[];
  readonly #tags = new Map<protobuf.Field, string[]>();

  constructor(schema: RegisteredSchema) {
    try {
      const root = new protobuf.Root();
      const common = new Set<string>();
      const imports: string[] = [];
      for (const ref of schema.resolved.values()) {
        if (ref.type !== 'PROTOBUF') continue;
        imports.push(...(protobuf.parse(ref.schema, root, { keepCase: true }).imports ?? []));
      }
      const main = protobuf.parse(schema.schema, root, { keepCase: true });
      imports.push(...(main.imports ?? []));
      for (const name of imports) {
        if (name.startsWith('google/protobuf/') && protobuf.common.get(name)) common.add(name);
        else if (!BUILT_IN_IMPORTS.has(name) && ![...schema.resolved.keys()].includes(name)) throw new Error(`it imports ${name}, which is neither a reference of the schema nor a well-known type`);
      }
      for (const name of common) root.addJSON((protobuf.common.get(name) as { nested: protobuf.INamespace['nested'] }).nested!);
      root.resolveAll();
      this.#root = root;
      // the declaration order of this file alone (the shared root also holds the imports)
      const alone = protobuf.parse(schema.schema, new protobuf.Root(), { keepCase: true });
      const ns = alone.package ? alone.root.lookup(alone.package) : alone.root;
      this.#messages = ns instanceof protobuf.Namespace ? messageTree(ns, root) : [];
    } catch (err) {
      throw new ValueCodecError('schema-unsupported', `Protobuf schema ${schema.id} does not compile: ${(err as Error).message}`);
    }
    if (this.#messages.length === 0) throw new ValueCodecError('schema-unsupported', `Protobuf schema ${schema.id} declares no message`);
    collectTags(this.#root, this.#tags);
    this.tagged = this.#tags.size > 0;
  }

  decode(payload: Uint8Array, messageIndexes: readonly number[] = [0]): Decoded {
    let list = this.#messages;
    let type: protobuf.Type | undefined;
    for (const i of messageIndexes) {
      const node = list[i];
      if (!node) throw new ValueCodecError('undecodable', `the framing names message [${messageIndexes.join(', ')}], which the schema does not have`);
      type = node.type;
      list = node.nested;
    }
    let native: protobuf.Message;
    try {
      native = type!.decode(payload);
    } catch (err) {
      throw new ValueCodecError('undecodable', `the value does not decode as ${type!.fullName.slice(1)}: ${(err as Error).message}`);
    }
    const out: string[] = [];
    viewMessage(type!, native, out);
    return { native, view: out.join(''), type: type! };
  }

  taggedLeaves(decoded: DecodedValue, tree: unknown): TaggedLeaf[] {
    const leaves: TaggedLeaf[] = [];
    if (this.tagged) leavesOfMessage((decoded as Decoded).type, decoded.native as protobuf.Message, tree, null, this.#tags, leaves);
    return leaves;
  }

  leaves(): SchemaLeaf[] {
    const out: SchemaLeaf[] = [];
    const walk = (nodes: MessageTree[]) => {
      for (const n of nodes) {
        protoLeaves(n.type, [], [], this.#tags, new Set(), out);
        walk(n.nested);
      }
    };
    walk(this.#messages);
    return out;
  }

  serialize(data: unknown): { payload: Uint8Array; messageIndexes: number[] } {
    const type = this.#messages[0]!.type;
    if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new ValueCodecError('unfit', `the data for ${type.fullName.slice(1)} must be a JSON object`);
    try {
      const message = type.fromObject(data as Record<string, unknown>);
      const problem = type.verify(message);
      if (problem) throw new Error(problem);
      return { payload: type.encode(message).finish(), messageIndexes: [0] };
    } catch (err) {
      throw new ValueCodecError('unfit', `the data does not fit ${type.fullName.slice(1)}: ${(err as Error).message}`);
    }
  }

  encode(decoded: DecodedValue, tree: unknown, options: WriteOptions): Uint8Array {
    const type = (decoded as Decoded).type;
    const message = rebuildMessage(type, decoded.native as protobuf.Message, tree, '$', options);
    const problem = type.verify(message);
    if (problem) throw new ValueCodecError('unfit', `the changed value is no ${type.fullName.slice(1)}: ${problem}`);
    return type.encode(message).finish();
  }
}

interface MessageTree {
  type: protobuf.Type;
  nested: MessageTree[];
}

/** Message types of `ns` in declaration order, as the types of the resolved `root`. */
function messageTree(ns: protobuf.NamespaceBase, root: protobuf.Root): MessageTree[] {
  return ns.nestedArray
    .filter((n): n is protobuf.Type => n instanceof protobuf.Type)
    .map((t) => ({ type: root.lookupType(t.fullName), nested: messageTree(t, root) }));
}

function protoLeaves(type: protobuf.Type, path: LeafStep[], tags: readonly string[], all: Map<protobuf.Field, string[]>, seen: Set<protobuf.Type>, out: SchemaLeaf[]): void {
  if (seen.has(type) || path.length > MAX_LEAF_DEPTH) return;
  const inner = new Set(seen).add(type);
  for (const f of type.fieldsArray) {
    const here: LeafStep[] = [...path, { name: f.name }, ...(f.map ? [{ mapValue: true as const }] : f.repeated ? [{ element: true as const }] : [])];
    const fieldTags = all.get(f) ?? tags;
    const rt = f.resolvedType;
    if (rt instanceof protobuf.Type) protoLeaves(rt, here, fieldTags, all, inner, out);
    else if (rt instanceof protobuf.Enum) out.push({ path: here, kind: 'enum', tags: fieldTags });
    else if (f.type === 'string' || f.type === 'bytes') out.push({ path: here, kind: 'string', tags: fieldTags });
    else if (f.type === 'bool') out.push({ path: here, kind: 'boolean', tags: fieldTags });
    else out.push({ path: here, kind: 'number', tags: fieldTags });
  }
}

function tagsOf(field: protobuf.Field): string[] | undefined {
  const o = field.options as Record<string, unknown> | undefined;
  if (!o) return undefined;
  const flat = o['(confluent.field_meta).tags'];
  const nested = (o['(confluent.field_meta)'] as { tags?: unknown } | undefined)?.tags;
  const tags = flat ?? nested;
  if (typeof tags === 'string') return [tags];
  if (Array.isArray(tags) && tags.every((t) => typeof t === 'string')) return tags as string[];
  return undefined;
}

function collectTags(ns: protobuf.NamespaceBase, into: Map<protobuf.Field, string[]>): void {
  for (const n of ns.nestedArray) {
    if (n instanceof protobuf.Type) {
      for (const f of n.fieldsArray) {
        const tags = tagsOf(f);
        if (tags && tags.length > 0) into.set(f, tags);
      }
    }
    if (n instanceof protobuf.Namespace) collectTags(n, into);
  }
}

const isLong = (v: unknown): v is Long => typeof v === 'object' && v !== null && 'low' in v && 'high' in v;
const numberText = (n: number) => (Number.isFinite(n) ? String(n) : JSON.stringify(String(n)));

/** The fields a view shows: set oneof members only, message fields only when present. */
function shown(message: protobuf.Message, f: protobuf.Field): boolean {
  const m = message as unknown as Record<string, unknown>;
  if (f.partOf) return m[f.partOf.name] === f.name;
  if (f.resolvedType instanceof protobuf.Type && !f.repeated && !f.map) return m[f.name] !== null && m[f.name] !== undefined;
  return true;
}

function viewMessage(type: protobuf.Type, message: protobuf.Message, out: string[]): void {
  out.push('{');
  let first = true;
  const m = message as unknown as Record<string, unknown>;
  for (const f of type.fieldsArray) {
    if (!shown(message, f)) continue;
    if (!first) out.push(',');
    first = false;
    out.push(JSON.stringify(f.name), ':');
    const v = m[f.name];
    if (f.map) {
      out.push('{');
      Object.entries((v ?? {}) as Record<string, unknown>).forEach(([k, x], i) => {
        if (i > 0) out.push(',');
        out.push(JSON.stringify(k), ':');
        viewScalar(f, x, out);
      });
      out.push('}');
    } else if (f.repeated) {
      out.push('[');
      ((v ?? []) as unknown[]).forEach((x, i) => {
        if (i > 0) out.push(',');
        viewScalar(f, x, out);
      });
      out.push(']');
    } else viewScalar(f, v, out);
  }
  out.push('}');
}

/** One value of field `f` (an element, for repeated and map fields). */
function viewScalar(f: protobuf.Field, v: unknown, out: string[]): void {
  const rt = f.resolvedType;
  if (rt instanceof protobuf.Type) return viewMessage(rt, v as protobuf.Message, out);
  if (rt instanceof protobuf.Enum) return void out.push(JSON.stringify(rt.valuesById[v as number] ?? String(v)));
  if (f.type === 'string') return void out.push(JSON.stringify(v ?? ''));
  if (f.type === 'bytes') return void out.push(JSON.stringify(Buffer.from((v ?? []) as Uint8Array).toString('latin1')));
  if (f.type === 'bool') return void out.push(v ? 'true' : 'false');
  if (LONG_TYPES.has(f.type)) return void out.push(isLong(v) ? v.toString() : String(v ?? 0));
  return void out.push(numberText((v ?? 0) as number));
}

function numberOf(f: protobuf.Field, orig: unknown, out: unknown, options: WriteOptions): unknown {
  const written = LONG_TYPES.has(f.type) ? (isLong(orig) ? orig.toString() : String(orig ?? 0)) : numberText((orig ?? 0) as number);
  if (!numberChanged(out, written)) return orig;
  const n = Math.trunc(options.numbers);
  if (LONG_TYPES.has(f.type)) return LongOf.fromNumber(f.type === 'uint64' || f.type === 'fixed64' ? Math.max(0, n) : n, f.type === 'uint64' || f.type === 'fixed64');
  if (f.type === 'float' || f.type === 'double') return options.numbers;
  if (f.type === 'uint32' || f.type === 'fixed32') return Math.max(0, n) >>> 0;
  return n | 0;
}

/** A field's value from the view, no original lining up with it. */
function scalarFromView(f: protobuf.Field, out: unknown, path: string, options: WriteOptions): unknown {
  const rt = f.resolvedType;
  if (rt instanceof protobuf.Type) return rebuildMessage(rt, undefined, out, path, options);
  if (rt instanceof protobuf.Enum) {
    if (typeof out === 'string' && out in rt.values) return rt.values[out];
    if (0 in rt.valuesById) return 0;
    throw new ValueCodecError('unfit', `a rule changed an enum to ${JSON.stringify(out)}, which is not one of its values`, path);
  }
  if (f.type === 'string') {
    if (typeof out !== 'string') throw new ValueCodecError('unfit', 'a string became something else', path);
    return out;
  }
  if (f.type === 'bytes') {
    if (typeof out !== 'string') throw new ValueCodecError('unfit', 'bytes became something else', path);
    return Buffer.from(out, 'latin1');
  }
  if (f.type === 'bool') return typeof out === 'boolean' ? out : false;
  if (LONG_TYPES.has(f.type)) return typeof out === 'number' && Number.isSafeInteger(out) ? LongOf.fromNumber(out, f.type === 'uint64' || f.type === 'fixed64') : numberOf(f, undefined, '', options);
  if (NUMBER_TYPES.has(f.type)) return typeof out === 'number' ? out : numberOf(f, undefined, '', options);
  throw new ValueCodecError('unfit', `a field of type ${f.type} changed in a way that cannot be written back`, path);
}

function scalarOf(f: protobuf.Field, orig: unknown, out: unknown, path: string, options: WriteOptions): unknown {
  if (orig === undefined) return scalarFromView(f, out, path, options);
  const rt = f.resolvedType;
  if (rt instanceof protobuf.Type) return rebuildMessage(rt, orig as protobuf.Message, out, path, options);
  if (rt instanceof protobuf.Enum) return out === rt.valuesById[orig as number] ? orig : scalarFromView(f, out, path, options);
  if (LONG_TYPES.has(f.type) || NUMBER_TYPES.has(f.type)) return numberOf(f, orig, out, options);
  return scalarFromView(f, out, path, options);
}

function rebuildMessage(type: protobuf.Type, orig: protobuf.Message | undefined, out: unknown, path: string, options: WriteOptions): protobuf.Message {
  if (out === null || typeof out !== 'object' || Array.isArray(out)) throw new ValueCodecError('unfit', `a ${type.name} became something else`, path);
  const o = out as Record<string, unknown>;
  const m = (orig ?? {}) as Record<string, unknown>;
  const props: Record<string, unknown> = {};
  for (const key of Object.keys(o)) if (!type.fields[key]) throw new ValueCodecError('unfit', `a rule rewrote the field name ${JSON.stringify(key)}`, path);
  for (const f of type.fieldsArray) {
    // a field the view does not show (unset) or a rule removed stays unset: every Protobuf field may be
    if (!Object.hasOwn(o, f.name)) continue;
    const p = childPath(path, f.name);
    const v = o[f.name];
    if (f.map) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ValueCodecError('unfit', 'a map became something else', p);
      const before = (m[f.name] ?? {}) as Record<string, unknown>;
      props[f.name] = Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, scalarOf(f, Object.hasOwn(before, k) ? before[k] : undefined, x, childPath(p, k), options)]));
    } else if (f.repeated) {
      if (!Array.isArray(v)) throw new ValueCodecError('unfit', 'a repeated field became something else', p);
      const before = (m[f.name] ?? []) as unknown[];
      const aligned = before.length === v.length;
      props[f.name] = v.map((x, i) => scalarOf(f, aligned ? before[i] : undefined, x, childPath(p, i), options));
    } else {
      props[f.name] = scalarOf(f, orig ? m[f.name] : undefined, v, p, options);
    }
  }
  return type.create(props);
}

function leavesOfMessage(type: protobuf.Type, orig: protobuf.Message | undefined, tree: unknown, tags: readonly string[] | null, all: Map<protobuf.Field, string[]>, leaves: TaggedLeaf[]): void {
  if (tree === null || typeof tree !== 'object' || Array.isArray(tree)) return;
  const o = tree as Record<string, unknown>;
  const m = (orig ?? {}) as Record<string, unknown>;
  for (const f of type.fieldsArray) {
    if (!Object.hasOwn(o, f.name)) continue;
    const fieldTags = all.get(f) ?? tags;
    const v = o[f.name];
    if (f.map && v !== null && typeof v === 'object') {
      const holder = v as Record<string, unknown>;
      for (const k of Object.keys(holder)) leafOf(f, (m[f.name] as Record<string, unknown> | undefined)?.[k], holder, k, fieldTags, all, leaves);
    } else if (f.repeated && Array.isArray(v)) {
      const before = m[f.name] as unknown[] | undefined;
      v.forEach((_, i) => leafOf(f, before?.length === v.length ? before[i] : undefined, v as unknown as Record<string, unknown>, String(i), fieldTags, all, leaves));
    } else leafOf(f, m[f.name], o, f.name, fieldTags, all, leaves);
  }
}

function leafOf(f: protobuf.Field, orig: unknown, holder: Record<string, unknown>, key: string, tags: readonly string[] | null, all: Map<protobuf.Field, string[]>, leaves: TaggedLeaf[]): void {
  const v = holder[key];
  if (f.resolvedType instanceof protobuf.Type) return leavesOfMessage(f.resolvedType, orig as protobuf.Message | undefined, v, tags, all, leaves);
  if (!tags || v === null || typeof v === 'object') return;
  const text = typeof v === 'string' ? v : String(v);
  leaves.push({ tags, text, set: (t) => (holder[key] = typeof v === 'string' || t !== text ? t : v) });
}
