// Values a client sends as JSON with a schema reference (the Confluent REST Proxy's produce
// forms: schema_id, subject + schema_version, or a subject name strategy) serialized with the
// registry's schema and framed as a registry serializer frames them. The gateway never
// registers a schema here: the reference must name one the registry has.

import { APICURIO_KEY_GLOBAL_ID, APICURIO_VALUE_GLOBAL_ID, globalIdHeader, writeFraming, type ValueFraming } from '../formats/schema-framing.ts';
import { CodecCache, ValueCodecError, type ValueCodec } from '../formats/values/index.ts';
import { SchemaError, type RegisteredSchema, type SchemaSource } from './source.ts';

/** Which schema a value is written with. */
export type SchemaRef =
  | { schemaId: number }
  | { subject: string; version: number | 'latest' }
  /** TOPIC_NAME: `<topic>-value` (or -key); RECORD_NAME and TOPIC_RECORD_NAME need the record's name, which JSON data does not carry */
  | { strategy: 'TOPIC_NAME'; topic: string; part: 'key' | 'value' };

export class SchemaSerializer {
  readonly #source: SchemaSource;
  readonly #codecs = new CodecCache(1_000);

  constructor(source: SchemaSource) {
    this.#source = source;
  }

  /** The framed value; rejects with SchemaError (the schema cannot be had) or ValueCodecError (the data does not fit). */
  /** `header`: the record header that names the schema (apicurio-header framing), to add to the record */
  async serialize(ref: SchemaRef, data: unknown, framing: ValueFraming, part: 'key' | 'value' = 'value'): Promise<{ bytes: Uint8Array; format: 'AVRO' | 'PROTOBUF' | 'JSONSCHEMA'; header?: [string, Uint8Array] }> {
    const schema = await this.#schema(ref);
    let codec = this.#codecs.get(schema.id);
    if (codec === undefined) {
      this.#codecs.learn(schema);
      codec = this.#codecs.get(schema.id)!;
    }
    if (codec instanceof ValueCodecError) throw codec;
    const { payload, messageIndexes } = (codec as ValueCodec).serialize(data);
    const format = schema.type === 'JSON' ? 'JSONSCHEMA' : schema.type;
    if (framing === 'apicurio-header') {
      if (messageIndexes) throw new ValueCodecError('schema-unsupported', "Protobuf values with the schema id in a header (Apicurio's own Protobuf framing) are not written; use Confluent framing");
      return { bytes: payload, format, header: [part === 'key' ? APICURIO_KEY_GLOBAL_ID : APICURIO_VALUE_GLOBAL_ID, globalIdHeader(schema.id)] };
    }
    const head = writeFraming(framing, schema.id, messageIndexes);
    const out = new Uint8Array(head.length + payload.length);
    out.set(head);
    out.set(payload, head.length);
    return { bytes: out, format };
  }

  #schema(ref: SchemaRef): Promise<RegisteredSchema> {
    if ('schemaId' in ref) return this.#source.byId(ref.schemaId);
    if ('strategy' in ref) return this.#source.version(`${ref.topic}-${ref.part}`, 'latest');
    return this.#source.version(ref.subject, ref.version);
  }
}

export { SchemaError };
