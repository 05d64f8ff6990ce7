import type { SchemaReference, SchemaType } from './schema.ts';

/** A schema as registered: immutable once it has an id. */
export interface RegisteredSchema {
  id: number;
  type: SchemaType;
  /** the schema text as registered (Avro JSON, Protobuf IDL, JSON Schema) */
  schema: string;
  references: SchemaReference[];
  /** every schema it references, directly or not, by the name it is referenced with */
  resolved: ReadonlyMap<string, RegisteredSchema>;
}

/** A schema under a subject and version. */
export interface SubjectVersion extends RegisteredSchema {
  subject: string;
  version: number;
}

/** Where schemas come from: a registry (registry.ts) or a local catalog (catalog.ts). */
export interface SchemaSource {
  /** the schema with this id; rejects with SchemaError (SCHEMA_NOT_FOUND, REGISTRY_UNAVAILABLE, ...) */
  byId(id: number): Promise<RegisteredSchema>;
  /** a version of a subject, or its latest */
  version(subject: string, version: number | 'latest'): Promise<SubjectVersion>;
  /** the subject versions the schema with this id is registered as (a list that can grow: cached briefly) */
  subjectsOf(id: number): Promise<Array<{ subject: string; version: number }>>;
  /** whether schemas can be read now (readiness) */
  ready(): Promise<boolean>;
  close(): Promise<void>;
}

export type SchemaErrorCode =
  /** the registry (or catalog) does not know the id, subject or version */
  | 'SCHEMA_NOT_FOUND'
  /** the registry cannot be reached or answers 5xx / 429 (after retries), or times out */
  | 'REGISTRY_UNAVAILABLE'
  /** the registry refused the gateway's credentials (401/403) */
  | 'REGISTRY_REFUSED'
  /** the registry refused a schema the gateway sent: invalid (422) or incompatible with the subject (409) */
  | 'SCHEMA_REJECTED'
  /** the registry answered something that is not a schema (or references nest past the bound) */
  | 'REGISTRY_INVALID_ANSWER';

/** A failure to get a schema: a stable `code` and typed fields, never text to parse. */
export class SchemaError extends Error {
  readonly code: SchemaErrorCode;
  readonly schemaId: number | undefined;
  readonly subject: string | undefined;
  /** the registry's HTTP status, when it answered */
  readonly status: number | undefined;

  constructor(code: SchemaErrorCode, message: string, fields: { schemaId?: number; subject?: string; status?: number; cause?: unknown } = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = 'SchemaError';
    this.code = code;
    this.schemaId = fields.schemaId;
    this.subject = fields.subject;
    this.status = fields.status;
  }
}

/** Schema ids are 32-bit signed in the wire format; anything else names no schema. */
export function validSchemaId(id: number): boolean {
  return Number.isInteger(id) && id >= 0 && id <= 0x7fffffff;
}
