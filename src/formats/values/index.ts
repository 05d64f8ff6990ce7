// Value codecs by schema type. A codec is compiled once per schema id and thread (schemas
// are immutable once registered) and kept while the process lives, bounded.

import type { RegisteredSchema } from '../../schemas/source.ts';
import { AvroCodec } from './avro.ts';
import { JsonSchemaCodec } from './json-schema.ts';
import { ProtobufCodec } from './protobuf.ts';
import { ValueCodecError, type ValueCodec } from './codec.ts';

export { ValueCodecError, type DecodedValue, type TaggedLeaf, type ValueCodec, type ValueProblem, type WriteOptions } from './codec.ts';

export function compileValueCodec(schema: RegisteredSchema): ValueCodec {
  switch (schema.type) {
    case 'AVRO':
      return new AvroCodec(schema);
    case 'PROTOBUF':
      return new ProtobufCodec(schema);
    case 'JSON':
      return new JsonSchemaCodec(schema);
    default:
      throw new ValueCodecError('schema-unsupported', `schema ${schema.id} has the unknown type ${String(schema.type)}`);
  }
}

/** Compiled codecs (or why a schema does not compile) by id, for one thread. */
export class CodecCache {
  readonly #codecs = new Map<number, ValueCodec | ValueCodecError>();
  readonly #max: number;
  #epoch = '';

  constructor(max = 10_000) {
    this.#max = max;
  }

  /** Schemas of another source (a reload, another registry) mean other things by the same ids. */
  useEpoch(epoch: string): void {
    if (epoch !== this.#epoch) {
      this.#codecs.clear();
      this.#epoch = epoch;
    }
  }

  get(id: number): ValueCodec | ValueCodecError | undefined {
    return this.#codecs.get(id);
  }

  learn(schema: RegisteredSchema): void {
    if (this.#codecs.has(schema.id)) return;
    if (this.#codecs.size >= this.#max) this.#codecs.delete(this.#codecs.keys().next().value!);
    let codec: ValueCodec | ValueCodecError;
    try {
      codec = compileValueCodec(schema);
    } catch (err) {
      codec = err instanceof ValueCodecError ? err : new ValueCodecError('schema-unsupported', `schema ${schema.id} does not compile: ${(err as Error).message}`);
    }
    this.#codecs.set(schema.id, codec);
  }
}
