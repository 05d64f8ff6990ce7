// A schema-registry value (Avro, Protobuf, JSON Schema) as the inspection engine sees it: a
// JSON document (the "view") whose field paths are the schema's, so the rule language of JSON
// topics (detectors, `fields` paths, actions) applies unchanged. After the engine has acted on
// the view, the codec writes the changed view back with the writer schema: the same schema
// id, decodable by the producer's own deserializer. Unchanged records are never re-encoded.

/** Why a value could not be read, or could not be written back after the rules acted on it. */
export type ValueProblem =
  /** the bytes do not decode with the writer schema (truncated, trailing bytes, bad tags, ...) */
  | 'undecodable'
  /** the schema itself cannot be compiled (or uses a construct the gateway refuses to decode) */
  | 'schema-unsupported'
  /** after the rules acted, the value no longer fits the schema (a required field dropped, a fixed size changed, ...) */
  | 'unfit';

export class ValueCodecError extends Error {
  override name = 'ValueCodecError';
  readonly problem: ValueProblem;
  /** the field path ($.a.b) where it went wrong, when known */
  readonly path: string | undefined;
  /** the message without the path */
  readonly detail: string;
  constructor(problem: ValueProblem, message: string, path?: string) {
    super(path === undefined ? message : `${path}: ${message}`);
    this.problem = problem;
    this.path = path;
    this.detail = message;
  }

  /**
   * The same error one level down: walks build paths only on the way out of a failure, not for
   * every field they visit. `key` is the field, element index or map key the error came from.
   */
  under(key: string | number): ValueCodecError {
    const rest = this.path === undefined || this.path === '$' ? '' : this.path.slice(1);
    return new ValueCodecError(this.problem, this.detail, childPath('$', key) + rest);
  }
}

/** Rethrows `err` from inside `key` (ValueCodecError gets the key in its path). */
export function rethrowUnder(err: unknown, key: string | number): never {
  throw err instanceof ValueCodecError ? err.under(key) : err;
}

/** A decoded value: the codec's own representation, and its JSON view for the engine. */
export interface DecodedValue {
  readonly native: unknown;
  /** the view as JSON text */
  readonly view: string;
}

/** A leaf of a (parsed, possibly changed) view whose schema field carries tags. */
export interface TaggedLeaf {
  tags: readonly string[];
  /** the leaf as text for the engine: a string as is, a number or boolean in its JSON form */
  text: string;
  /** puts the engine's result back into the view */
  set(text: string): void;
}

/** One step of a field's path in a schema: a named field, an array element, or a map value (any key). */
export type LeafStep = { name: string } | { element: true } | { mapValue: true };

/** A field of the schema that holds a scalar, with the path that reaches it and its tags. */
export interface SchemaLeaf {
  path: LeafStep[];
  /** string-like (string, bytes, fixed) or not (numbers, booleans, enums) */
  kind: 'string' | 'number' | 'boolean' | 'enum';
  tags: readonly string[];
}

/** Schema walks stop this deep (recursive types are walked once per type on a path anyway). */
export const MAX_LEAF_DEPTH = 32;

export interface WriteOptions {
  /** what a number field whose value a rule changed becomes (a masked number is not a number) */
  numbers: number;
}

export interface ValueCodec {
  /** Protobuf: the framing carries message indexes naming the value's message type */
  readonly messageIndexed: boolean;
  /** decodes the payload (the bytes after the registry framing); Protobuf: of the message at `messageIndexes` */
  decode(payload: Uint8Array, messageIndexes?: readonly number[]): DecodedValue;
  /** whether any field of the schema carries tags (else `tagged` always answers []) */
  readonly tagged: boolean;
  /** the tagged leaves of `view` (the parsed view after the engine), walked with the original value */
  taggedLeaves(decoded: DecodedValue, view: unknown): TaggedLeaf[];
  /** the payload for a changed view; throws ValueCodecError('unfit') when it cannot be written with the schema */
  encode(decoded: DecodedValue, view: unknown, options: WriteOptions): Uint8Array;
  /**
   * A value a client sent as JSON data (the Confluent REST Proxy's forms: Avro's JSON
   * encoding, Protobuf's JSON mapping of the file's first message, a JSON Schema value)
   * serialized with the schema; throws ValueCodecError('unfit') when the data does not fit it.
   */
  serialize(data: unknown): { payload: Uint8Array; messageIndexes?: number[] };
  /** the schema's scalar fields (Protobuf: of every message of the file), for checking rules against field types */
  leaves(): SchemaLeaf[];
}

/** `$.a.b[3]`-style paths for error messages. */
export function childPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return /^[A-Za-z_$][\w$-]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

/**
 * A JSON number of the view that the engine left a number is unchanged; one that became a
 * string was masked (or was never a number: NaN and the infinities are written as strings).
 */
export function numberChanged(view: unknown, written: string): boolean {
  if (typeof view === 'number') return false;
  return !(typeof view === 'string' && view === written);
}
