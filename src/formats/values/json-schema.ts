// JSON values written with a JSON Schema (Confluent's JSON Schema serializer: the framing, then
// UTF-8 JSON): the value is its own view. Decoding parses it and validates it against the
// writer schema (ajv, compiled once per schema id; drafts 7, 2019-09 and 2020-12, references
// from the schema's references by their `$ref` names); a changed value must still validate.
// Field tags: the `confluent:tags` keyword of a property's schema (through `properties`,
// `items`, `additionalProperties` and local or referenced `$ref`s).

import { Ajv, type AnySchema, type ValidateFunction } from 'ajv';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { RegisteredSchema } from '../../schemas/source.ts';
import { MAX_LEAF_DEPTH, ValueCodecError, type DecodedValue, type LeafStep, type SchemaLeaf, type TaggedLeaf, type ValueCodec, type WriteOptions } from './codec.ts';

const TAG_KEYWORD = 'confluent:tags';
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
type Schema = Record<string, unknown>;

export class JsonSchemaCodec implements ValueCodec {
  readonly messageIndexed = false;
  readonly tagged: boolean;
  readonly #validate: ValidateFunction;
  readonly #schema: Schema;
  /** referenced documents by the name a `$ref` uses */
  readonly #documents = new Map<string, Schema>();

  constructor(schema: RegisteredSchema) {
    try {
      this.#schema = JSON.parse(schema.schema) as Schema;
      const draft = String(this.#schema.$schema ?? '');
      const options = { strict: false, validateSchema: false, allErrors: false, addUsedSchema: false };
      const ajv = draft.includes('2020-12') ? new Ajv2020(options) : draft.includes('2019-09') ? new Ajv2019(options) : new Ajv(options);
      // the serializer's own keywords are annotations, not errors
      ajv.addKeyword(TAG_KEYWORD);
      for (const [name, ref] of schema.resolved) {
        const doc = JSON.parse(ref.schema) as Schema;
        this.#documents.set(name, doc);
        ajv.addSchema(doc as AnySchema, name);
      }
      this.#validate = ajv.compile(this.#schema as AnySchema);
    } catch (err) {
      throw new ValueCodecError('schema-unsupported', `JSON schema ${schema.id} does not compile: ${(err as Error).message}`);
    }
    this.tagged = schema.schema.includes(TAG_KEYWORD) || [...schema.resolved.values()].some((s) => s.schema.includes(TAG_KEYWORD));
  }

  decode(payload: Uint8Array): DecodedValue {
    let native: unknown;
    let view: string;
    try {
      view = strictUtf8.decode(payload);
      native = JSON.parse(view);
    } catch (err) {
      throw new ValueCodecError('undecodable', `the value is not JSON: ${(err as Error).message}`);
    }
    if (!this.#validate(native)) throw new ValueCodecError('undecodable', `the value does not match its JSON schema: ${describe(this.#validate)}`);
    return { native, view };
  }

  taggedLeaves(decoded: DecodedValue, tree: unknown): TaggedLeaf[] {
    const leaves: TaggedLeaf[] = [];
    if (this.tagged) this.#leaves(this.#schema, this.#schema, tree, null, leaves, undefined, new Set());
    return leaves;
  }

  leaves(): SchemaLeaf[] {
    const out: SchemaLeaf[] = [];
    this.#schemaLeaves(this.#schema, this.#schema, [], [], new Set(), out);
    return out;
  }

  /** Scalar-typed properties through properties, items, additionalProperties and $refs (a `type` list with "string" counts as a string). */
  #schemaLeaves(schema: Schema, doc: Schema, path: LeafStep[], tags: readonly string[], refs: Set<string>, out: SchemaLeaf[]): void {
    if (path.length > MAX_LEAF_DEPTH) return;
    if (typeof schema.$ref === 'string') {
      if (refs.has(schema.$ref)) return;
      const found = this.#resolve(schema.$ref, doc);
      if (found) this.#schemaLeaves(found[0], found[1], path, tags, new Set([...refs, schema.$ref]), out);
      return;
    }
    const own = schema[TAG_KEYWORD];
    const here = Array.isArray(own) && own.length > 0 ? (own as string[]) : tags;
    const types = new Set(Array.isArray(schema.type) ? (schema.type as string[]) : typeof schema.type === 'string' ? [schema.type] : []);
    const props = schema.properties as Record<string, Schema> | undefined;
    if (props) for (const [k, child] of Object.entries(props)) this.#schemaLeaves(child, doc, [...path, { name: k }], here, refs, out);
    if (schema.additionalProperties && typeof schema.additionalProperties === 'object') this.#schemaLeaves(schema.additionalProperties as Schema, doc, [...path, { mapValue: true }], here, refs, out);
    if (schema.items && typeof schema.items === 'object' && !Array.isArray(schema.items)) this.#schemaLeaves(schema.items as Schema, doc, [...path, { element: true }], here, refs, out);
    if (types.has('string')) out.push({ path, kind: 'string', tags: here });
    else if (types.has('number') || types.has('integer')) out.push({ path, kind: 'number', tags: here });
    else if (types.has('boolean')) out.push({ path, kind: 'boolean', tags: here });
  }

  serialize(data: unknown): { payload: Uint8Array } {
    if (!this.#validate(data)) throw new ValueCodecError('unfit', `the data does not match the JSON schema: ${describe(this.#validate)}`);
    return { payload: Buffer.from(JSON.stringify(data), 'utf8') };
  }

  encode(decoded: DecodedValue, tree: unknown, options: WriteOptions): Uint8Array {
    const value = restoreNumbers(decoded.native, tree, options);
    if (!this.#validate(value)) throw new ValueCodecError('unfit', `the changed value does not match its JSON schema: ${describe(this.#validate)}`);
    return Buffer.from(JSON.stringify(value), 'utf8');
  }

  /** The schema a `$ref` names: in the same document (#/...) or a referenced one (name#/...). */
  #resolve(ref: string, doc: Schema): [Schema, Schema] | undefined {
    const [name, pointer = ''] = ref.split('#', 2) as [string, string?];
    const target = name === '' ? doc : this.#documents.get(name);
    if (!target) return undefined;
    let node: unknown = target;
    for (const part of pointer.split('/').filter((p) => p !== '')) {
      node = (node as Record<string, unknown> | undefined)?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
    }
    return node && typeof node === 'object' ? [node as Schema, target] : undefined;
  }

  #leaves(schema: Schema, doc: Schema, tree: unknown, tags: readonly string[] | null, leaves: TaggedLeaf[], place: ((v: unknown) => void) | undefined, refs: Set<string>): void {
    if (typeof schema.$ref === 'string') {
      // a $ref chain that comes back to itself without descending into the value ends here
      if (refs.has(schema.$ref)) return;
      const found = this.#resolve(schema.$ref, doc);
      if (found) this.#leaves(found[0], found[1], tree, tags, leaves, place, new Set([...refs, schema.$ref]));
      return;
    }
    const own = schema[TAG_KEYWORD];
    const here = Array.isArray(own) && own.length > 0 ? (own as string[]) : tags;
    if (Array.isArray(tree)) {
      const items = schema.items;
      if (items && typeof items === 'object' && !Array.isArray(items)) tree.forEach((_, i) => this.#leaves(items as Schema, doc, tree[i], here, leaves, (v) => (tree[i] = v), new Set()));
      return;
    }
    if (tree !== null && typeof tree === 'object') {
      const props = (schema.properties ?? {}) as Record<string, Schema>;
      const extra = schema.additionalProperties;
      const o = tree as Record<string, unknown>;
      for (const k of Object.keys(o)) {
        const child = Object.hasOwn(props, k) ? props[k] : extra && typeof extra === 'object' ? (extra as Schema) : undefined;
        if (child) this.#leaves(child, doc, o[k], here, leaves, (v) => (o[k] = v), new Set());
      }
      return;
    }
    if (!here || !place || tree === null) return;
    const text = typeof tree === 'string' ? tree : String(tree);
    leaves.push({ tags: here, text, set: (t) => place(typeof tree === 'string' || t !== text ? t : tree) });
  }
}

function describe(v: ValidateFunction): string {
  const e = v.errors?.[0];
  return e ? `${e.instancePath || '$'} ${e.message ?? 'is invalid'}` : 'invalid';
}

/** A number a rule masked (now a string) becomes the configured number, walking the changed tree with the original. */
function restoreNumbers(orig: unknown, out: unknown, options: WriteOptions): unknown {
  if (typeof orig === 'number') return typeof out === 'number' ? out : options.numbers;
  if (Array.isArray(orig) && Array.isArray(out)) return orig.length === out.length ? out.map((x, i) => restoreNumbers(orig[i], x, options)) : out;
  if (orig !== null && typeof orig === 'object' && out !== null && typeof out === 'object' && !Array.isArray(out)) {
    const o = orig as Record<string, unknown>;
    return Object.fromEntries(Object.entries(out as Record<string, unknown>).map(([k, x]) => [k, Object.hasOwn(o, k) ? restoreNumbers(o[k], x, options) : x]));
  }
  return out;
}
