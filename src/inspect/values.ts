// Schema-registry values (Avro, ...) on topics whose inspection entry has a `schema` section:
// each framed value is decoded with its writer schema and shown to the engine as a JSON view
// (formats/values), so the topic's rules act on schema fields by path; rules that select
// fields by schema tags run in a second engine call over the tagged leaves; a changed view
// is written back with the same schema and framing. A value that cannot be read, or whose
// schema is unknown, is refused (fail closed) or scanned as bytes, as the topic says.
//
// Runs wherever the engine runs (the accept thread or a pool worker). Schemas come from the
// accept thread, which fetches them from the registry: a task that meets an id this thread
// has not compiled answers `needSchemas`, and is run again with them.

import { APICURIO_KEY_GLOBAL_ID, APICURIO_VALUE_GLOBAL_ID, FramingError, readFraming, readGlobalIdHeader, type ValueFraming } from '../formats/schema-framing.ts';
import { CodecCache, ValueCodecError, type DecodedValue, type ValueCodec } from '../formats/values/index.ts';
import type { LeafStep } from '../formats/values/codec.ts';
import { parseJsonPath, type Step } from './compile/jsonpath.ts';
import type { RegisteredSchema, SchemaErrorCode } from '../schemas/source.ts';
import { FLAG_BLOCKED, FLAG_CHANGED, outputOf, type EngineResult, type WasmEngine } from './engine.ts';

/** The per-record engine facts (inspect/key-headers.ts PerRecord). */
type PerRecord = Pick<EngineResult, 'flags' | 'stopRule' | 'hitStart' | 'hitCount' | 'hits'>;

/** The `schema` section of a topic's inspection entry, as the engine's thread needs it. */
export interface ValueSpec {
  framing: ValueFraming;
  /** every value must be framed with a schema the source knows */
  required: boolean;
  /** a value that cannot be read: refused, or scanned as bytes under the topic's format */
  undecodable: 'refuse' | 'scan';
  /** what a number field a rule changed becomes */
  numbers: number;
  /** produce: the subjects a value's schema must be registered under ({topic}: the topic); checked on the accept thread (inspector.ts) */
  subjects: readonly string[] | null;
  /** the rules that hash or tokenize whole fields (by path or tag): they need string fields */
  typedRules: readonly TypedRule[];
  /** the engine ruleset for views (the topic's rules in JSON mode) */
  viewRuleset: number;
  /** rules selecting fields by tags, in config order: bit i of a leaf's mask is tagRules[i] */
  tagRules: ReadonlyArray<readonly string[]>;
  /** text-mode ruleset per non-empty subset of tagRules (index = bit mask) */
  tagRulesets: readonly number[];
}

/** A rule whose action turns a whole field into a string of another shape (hash, tokenize). */
export interface TypedRule {
  id: string;
  action: string;
  fields: readonly string[] | null;
  tags: readonly string[] | null;
}

const typeChecks = new WeakMap<ValueCodec, Map<string, string | null>>();

/**
 * Why `rules` cannot act on a schema: a hash or tokenize rule reaches a field that holds a
 * number, boolean or enum (its result is a string the schema has no room for). Null when they can.
 */
export function typeProblem(codec: ValueCodec, rules: readonly TypedRule[], schemaId: number): string | null {
  if (rules.length === 0) return null;
  const key = rules.map((r) => r.id).join(',');
  let memo = typeChecks.get(codec);
  if (!memo) typeChecks.set(codec, (memo = new Map()));
  const known = memo.get(key);
  if (known !== undefined) return known;
  let problem: string | null = null;
  const leaves = codec.leaves();
  search: for (const rule of rules) {
    const paths = rule.fields?.map(parseJsonPath) ?? [];
    for (const leaf of leaves) {
      if (leaf.kind === 'string') continue;
      const reached = rule.tags ? rule.tags.some((t) => leaf.tags.includes(t)) : paths.some((steps) => pathReaches(steps, 0, leaf.path, 0));
      if (reached) {
        problem = `rule "${rule.id}" would ${rule.action} ${leafPathText(leaf.path)}, a ${leaf.kind} in schema ${schemaId}; ${rule.action} needs a string field (mask or redact it instead, or select string fields)`;
        break search;
      }
    }
  }
  memo.set(key, problem);
  return problem;
}

/** Whether JSON path `steps` (from `si`) can reach the schema field at `path` (from `pi`): map keys are any name, array indexes any index. */
function pathReaches(steps: readonly Step[], si: number, path: readonly LeafStep[], pi: number): boolean {
  if (si === steps.length) return pi === path.length;
  const step = steps[si]!;
  for (let at = pi; at < path.length; at++) {
    const seg = path[at]!;
    const fits = step.kind === 'any' || (step.kind === 'name' ? 'mapValue' in seg || ('name' in seg && seg.name === step.name) : 'element' in seg);
    if (fits && pathReaches(steps, si + 1, path, at + 1)) return true;
    if (!step.desc) return false;
  }
  return false;
}

function leafPathText(path: readonly LeafStep[]): string {
  return '$' + path.map((s) => ('name' in s ? `.${s.name}` : 'element' in s ? '[*]' : '.*')).join('');
}

/**
 * Whether a record key is written with a registry serializer. Keys are not decoded (only
 * values are): a rule that rewrites such a key's bytes could break its length prefixes, so a
 * changed framed key refuses its record (schema.key) instead of being forwarded.
 */
export function framedKey(key: Uint8Array | null, headers: ReadonlyArray<readonly [string, Uint8Array]>, framing: ValueFraming): boolean {
  if (key === null || key.length === 0) return false;
  if (framing === 'apicurio-header') return headers.some(([name]) => name === APICURIO_KEY_GLOBAL_ID);
  return key[0] === 0 && key.length >= (framing === 'confluent' ? 5 : 9);
}

export const FRAMED_KEY_CHANGED = 'a rule changed the record key, which is written with a schema registry serializer; keys are not decoded, so the change cannot be written back safely (refused)';

/** A schema the accept thread could not get: the records naming it are refused or scanned. */
export interface SchemaFailure {
  id: number;
  code: SchemaErrorCode;
  message: string;
}

/** What the thread needs from the accept thread before it can inspect the task. */
export interface SchemaNeeds {
  needSchemas: number[];
}

/** The stop rule of a value refused by this step (no rule index); the record's problem says why. */
export const STOP_VALUE = 0xfffffffe;

export interface ValueProblemReport {
  record: number;
  /** schema.unframed, schema.unknown, schema.unavailable, schema.undecodable, schema.unsupported, schema.unfit */
  rule: string;
  message: string;
}

const codecs = new CodecCache();
const utf8 = new TextEncoder();

/** Per record: how its value goes through the engine. */
type Opened =
  | { kind: 'plain' }
  | { kind: 'refused'; rule: string; message: string }
  | { kind: 'view'; codec: ValueCodec; decoded: DecodedValue; head: Uint8Array; id: number };

export interface OpenedValues {
  /** the engine's inputs for the values (views, or the values themselves) */
  inputs: Array<Uint8Array | null>;
  /** per value: the schema id it was decoded with, -1 for none */
  schemaIds: number[];
  /** per value: its ruleset */
  rulesets: Uint32Array;
  opened: Opened[];
}

/**
 * Decodes the framed values of a batch. `schemas` are ones the accept thread sends along (to
 * be compiled here); `failures` ids it could not get. Answers SchemaNeeds when a value names
 * an id that is neither.
 */
export function openValues(
  values: ReadonlyArray<Uint8Array | null>,
  spec: ValueSpec,
  plainRuleset: number,
  epoch: string,
  schemas: readonly RegisteredSchema[] = [],
  failures: readonly SchemaFailure[] = [],
  /** per value, its record's headers (the apicurio-header framing reads the id there) */
  headers?: ReadonlyArray<ReadonlyArray<readonly [string, Uint8Array]> | undefined>,
): OpenedValues | SchemaNeeds {
  codecs.useEpoch(epoch);
  for (const s of schemas) codecs.learn(s);
  const n = values.length;
  const inputs = new Array<Uint8Array | null>(n);
  const rulesets = new Uint32Array(n);
  const opened = new Array<Opened>(n);
  const schemaIds = new Array<number>(n).fill(-1);
  let missing: Set<number> | null = null;
  const failed = failures.length > 0 ? new Map(failures.map((f) => [f.id, f])) : null;
  for (let i = 0; i < n; i++) {
    const v = values[i] ?? null;
    inputs[i] = v;
    rulesets[i] = plainRuleset;
    opened[i] = { kind: 'plain' };
    // tombstones are no schema's value
    if (v === null) continue;
    let id: number;
    let bodyOffset: number;
    try {
      if (spec.framing === 'apicurio-header') {
        const header = headers?.[i]?.find(([name]) => name === APICURIO_VALUE_GLOBAL_ID);
        if (!header) throw new FramingError('not-framed', `the record has no ${APICURIO_VALUE_GLOBAL_ID} header`);
        id = readGlobalIdHeader(header[1]);
        bodyOffset = 0;
      } else ({ schemaId: id, bodyOffset } = readFraming(v, spec.framing, false));
    } catch (err) {
      if (!(err instanceof FramingError)) throw err;
      if (spec.required) opened[i] = { kind: 'refused', rule: 'schema.unframed', message: `record ${i}: this topic requires values written with a registered schema (${spec.framing} framing): ${err.message}` };
      continue;
    }
    const codec = codecs.get(id);
    if (codec === undefined) {
      const failure = failed?.get(id);
      if (failure) {
        const rule = failure.code === 'SCHEMA_NOT_FOUND' ? 'schema.unknown' : 'schema.unavailable';
        if (spec.required || spec.undecodable === 'refuse') opened[i] = { kind: 'refused', rule, message: `record ${i}: schema ${id}: ${failure.message}` };
        continue;
      }
      (missing ??= new Set()).add(id);
      continue;
    }
    // a topic that requires registered schemas refuses what does not decode with one, whatever `undecodable` says
    const refuse = spec.required || spec.undecodable === 'refuse';
    if (codec instanceof ValueCodecError) {
      if (refuse) opened[i] = { kind: 'refused', rule: 'schema.unsupported', message: `record ${i}: ${codec.message}` };
      continue;
    }
    // rules that would write strings into number fields of this schema: refused before they run
    const unfit = typeProblem(codec, spec.typedRules, id);
    if (unfit) {
      opened[i] = { kind: 'refused', rule: 'schema.unfit', message: `record ${i}: ${unfit}` };
      continue;
    }
    try {
      let messageIndexes: number[] | undefined;
      // Protobuf values list the message type after the id
      if (codec.messageIndexed) {
        if (spec.framing === 'apicurio-header') throw new ValueCodecError('schema-unsupported', "Protobuf values with the schema id in a header (Apicurio's own Protobuf framing) are not read; use Confluent framing");
        ({ bodyOffset, messageIndexes } = readFraming(v, spec.framing, true));
      }
      const decoded = codec.decode(v.subarray(bodyOffset), messageIndexes);
      opened[i] = { kind: 'view', codec, decoded, head: v.subarray(0, bodyOffset), id };
      schemaIds[i] = id;
      inputs[i] = Buffer.from(decoded.view, 'utf8');
      rulesets[i] = spec.viewRuleset;
    } catch (err) {
      if (!(err instanceof ValueCodecError) && !(err instanceof FramingError)) throw err;
      if (refuse) opened[i] = { kind: 'refused', rule: 'schema.undecodable', message: `record ${i}: schema ${id}: ${err.message}` };
    }
  }
  if (missing) return { needSchemas: [...missing] };
  return { inputs, rulesets, opened, schemaIds };
}

export interface ClosedValues {
  /** per value: the value to forward (null: unchanged, or refused) */
  outputs: Array<Uint8Array | null>;
  /** the facts per record, with refusals and the tag rules' actions merged in */
  facts: PerRecord;
  problems: ValueProblemReport[];
}

const utf8Decode = new TextDecoder();

/**
 * After the engine's call over the inputs: runs the tag rules, writes changed views back with
 * their schema, and folds refusals and the tag rules' actions into the per-record `facts`.
 * `output(i)` is value i as the engine rewrote it (null: unchanged); it is read before any further engine call
 * (the engine's views are valid until its next call), as are `facts`.
 */
export function closeValues(engine: WasmEngine, open: OpenedValues, facts: PerRecord, output: (i: number) => Uint8Array | null, spec: ValueSpec): ClosedValues {
  const { opened } = open;
  const n = opened.length;
  const flags = facts.flags.slice(0, n);
  const stopRule = facts.stopRule.slice(0, n);
  const hitStart = facts.hitStart.slice(0, n);
  const hitCount = facts.hitCount.slice(0, n);
  let hits = facts.hits.slice();
  const outputs = new Array<Uint8Array | null>(n).fill(null);
  const problems: ValueProblemReport[] = [];
  const trees = new Array<unknown>(n);
  /** per value: its view changed and is written back */
  const rewrite = new Uint8Array(n);
  // tag rules: the tagged leaves of every view, in one engine call
  const leafOf: Array<{ record: number; set(text: string): void }> = [];
  const leafInputs: Uint8Array[] = [];
  const leafRulesets: number[] = [];
  for (let i = 0; i < n; i++) {
    const o = opened[i]!;
    if (o.kind === 'refused') {
      flags[i] = (flags[i]! | FLAG_BLOCKED) & ~FLAG_CHANGED;
      stopRule[i] = STOP_VALUE;
      problems.push({ record: i, rule: o.rule, message: o.message });
      continue;
    }
    if ((flags[i]! & FLAG_BLOCKED) !== 0) continue;
    const out = output(i);
    if (o.kind === 'plain') {
      if (out) outputs[i] = out.slice();
      continue;
    }
    if (out) {
      trees[i] = JSON.parse(Buffer.from(out.buffer, out.byteOffset, out.byteLength).toString('utf8'));
      rewrite[i] = 1;
    }
    if (!o.codec.tagged || spec.tagRules.length === 0) continue;
    trees[i] ??= JSON.parse(o.decoded.view);
    for (const leaf of o.codec.taggedLeaves(o.decoded, trees[i])) {
      let mask = 0;
      spec.tagRules.forEach((tags, b) => {
        if (tags.some((t) => leaf.tags.includes(t))) mask |= 1 << b;
      });
      if (mask === 0) continue;
      leafOf.push({ record: i, set: (t) => leaf.set(t) });
      leafInputs.push(utf8.encode(leaf.text));
      leafRulesets.push(spec.tagRulesets[mask]!);
    }
  }
  if (leafInputs.length > 0) {
    const t = engine.inspect(leafInputs, Uint32Array.from(leafRulesets));
    const extra: number[][] = Array.from({ length: n }, () => []);
    for (let j = 0; j < leafOf.length; j++) {
      const { record } = leafOf[j]!;
      const f = t.flags[j]!;
      for (let k = t.hitStart[j]!; k < t.hitStart[j]! + t.hitCount[j]!; k++) extra[record]!.push(t.hits[k]!);
      if ((f & FLAG_BLOCKED) !== 0 && (flags[record]! & FLAG_BLOCKED) === 0) {
        flags[record] = flags[record]! | FLAG_BLOCKED;
        stopRule[record] = t.stopRule[j]!;
      }
      if ((f & FLAG_CHANGED) !== 0) {
        leafOf[j]!.set(utf8Decode.decode(outputOf(t, j, leafInputs[j]!)!));
        flags[record] = flags[record]! | FLAG_CHANGED;
        rewrite[record] = 1;
      }
    }
    // per record: its first-call actions, then its leaves'
    const all: number[] = [];
    for (let i = 0; i < n; i++) {
      const from = all.length;
      for (let k = hitStart[i]!; k < hitStart[i]! + hitCount[i]!; k++) all.push(hits[k]!);
      all.push(...extra[i]!);
      hitStart[i] = from;
      hitCount[i] = all.length - from;
    }
    hits = Uint32Array.from(all);
  }
  for (let i = 0; i < n; i++) {
    const o = opened[i]!;
    if (o.kind !== 'view' || (flags[i]! & FLAG_BLOCKED) !== 0 || rewrite[i] === 0) continue;
    try {
      const body = o.codec.encode(o.decoded, trees[i], { numbers: spec.numbers });
      const out = new Uint8Array(o.head.length + body.length);
      out.set(o.head);
      out.set(body, o.head.length);
      outputs[i] = out;
    } catch (err) {
      if (!(err instanceof ValueCodecError)) throw err;
      flags[i] = (flags[i]! | FLAG_BLOCKED) & ~FLAG_CHANGED;
      stopRule[i] = STOP_VALUE;
      problems.push({ record: i, rule: 'schema.unfit', message: `record ${i}: schema ${o.id}: after the rules acted the value cannot be written with its schema: ${err.message}` });
    }
  }
  return { outputs, facts: { flags, stopRule, hitStart, hitCount, hits }, problems };
}
