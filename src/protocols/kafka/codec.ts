// Schema-driven codec for the Kafka wire protocol. It interprets Kafka's own JSON message
// definitions (see messages.ts for where they come from) instead of generated code: one
// interpreter covers every version of every message, and a Kafka upgrade is a jar bump.
// Per (message, version) the field list is compiled once into a plan; decoding walks the
// plan. `records` fields stay opaque: they decode to a view of the frame, never a copy.

import { readStruct, Reader } from './wire-read.ts';
import { defaultsOf, inRange, rangeBounds, ZERO_UUID, type FieldPlan, type Plan, type Prim, type Struct } from './wire-types.ts';
import { writeStruct, Writer } from './wire-write.ts';

export { Reader } from './wire-read.ts';
export { Writer } from './wire-write.ts';
export { inRange, KafkaProtocolError, rangeBounds, type Struct } from './wire-types.ts';

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


// ---------------------------------------------------------------------------
// plans

const PRIMS = new Set<string>(['int8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'float64', 'bool', 'uuid', 'string', 'bytes', 'records']);

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

