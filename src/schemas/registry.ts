// A client of the Confluent-compatible schema registry API (Confluent Schema Registry,
// Apicurio's /apis/ccompat/v7, Karapace, Redpanda): schemas by id with their references,
// subject versions, and the two writes the gateway may make (register, compatibility check).
// Schemas are immutable once they have an id, so every one fetched is kept; ids the registry
// does not know are remembered for a while, bounded, because they come from record bytes
// anyone can write. Requests go through one undici Agent composed with its retry interceptor.

import { readFileSync } from 'node:fs';
import { Agent, interceptors, type Dispatcher } from 'undici';
import type { RegistryConfig, SchemaReference, SchemaType } from './schema.ts';
import { SchemaError, validSchemaId, type RegisteredSchema, type SchemaSource, type SubjectVersion } from './source.ts';

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';
/** references nest (a schema's reference has references); past this depth the answer is refused */
const MAX_REFERENCE_DEPTH = 16;
const SCHEMA_TYPES = new Set<SchemaType>(['AVRO', 'PROTOBUF', 'JSON']);
/** how long the subjects of an id are believed (a schema may be registered under a new subject at any time) */
const SUBJECTS_TTL_MS = 30_000;
const MAX_SUBJECT_LISTS = 10_000;

/** The subjects of an id: the last answer (and when), and the request for a fresh one. */
interface SubjectsEntry {
  at: number;
  list: Array<{ subject: string; version: number }> | undefined;
  pending: Promise<Array<{ subject: string; version: number }>> | undefined;
}

interface SchemaAnswer {
  schema?: unknown;
  schemaType?: unknown;
  references?: unknown;
  id?: unknown;
  subject?: unknown;
  version?: unknown;
}

export class RegistryClient implements SchemaSource {
  readonly #origin: string;
  /** the API's path under the origin, without a trailing slash */
  readonly #prefix: string;
  readonly #config: RegistryConfig;
  readonly #agent: Agent;
  readonly #dispatcher: Dispatcher;
  readonly #headers: Record<string, string>;
  /** id -> schema (or the request for it, so concurrent lookups share one) */
  readonly #byId = new Map<number, Promise<RegisteredSchema>>();
  /** "subject\nversion" -> a registered version (immutable, like ids); settled ones only, so references that loop end at the depth bound instead of waiting on each other */
  readonly #versions = new Map<string, SubjectVersion>();
  /** id -> its subject versions and when they were asked (the list grows when the schema is registered under another subject) */
  readonly #subjects = new Map<number, SubjectsEntry>();
  /** id -> until when the registry's "not found" is believed, oldest first */
  readonly #missing = new Map<number, number>();

  constructor(config: RegistryConfig) {
    this.#config = config;
    const base = new URL(config.url);
    this.#origin = base.origin;
    this.#prefix = base.pathname.replace(/\/+$/, '');
    const tls = config.tls;
    this.#agent = new Agent({
      connect: {
        ...(tls?.ca ? { ca: readFileSync(tls.ca) } : {}),
        ...(tls?.cert && tls.key ? { cert: readFileSync(tls.cert), key: readFileSync(tls.key) } : {}),
        ...(tls?.serverName ? { servername: tls.serverName } : {}),
      },
      headersTimeout: config.timeoutMs,
      bodyTimeout: config.timeoutMs,
    });
    this.#dispatcher = this.#agent.compose(
      interceptors.retry({ maxRetries: config.retries, minTimeout: 100, maxTimeout: 1_000, timeoutFactor: 2, methods: ['GET', 'POST'], throwOnError: false }),
    );
    const auth = config.auth;
    this.#headers = {
      accept: `${CONTENT_TYPE}, application/json`,
      ...(auth && 'basic' in auth ? { authorization: `Basic ${Buffer.from(`${auth.basic.username}:${auth.basic.password}`).toString('base64')}` } : {}),
      ...(auth && 'bearer' in auth ? { authorization: `Bearer ${auth.bearer}` } : {}),
    };
  }

  byId(id: number): Promise<RegisteredSchema> {
    if (!validSchemaId(id)) return Promise.reject(new SchemaError('SCHEMA_NOT_FOUND', `${id} is not a schema id`, { schemaId: id }));
    const known = this.#byId.get(id);
    if (known) return known;
    const until = this.#missing.get(id);
    if (until !== undefined) {
      if (until > Date.now()) return Promise.reject(new SchemaError('SCHEMA_NOT_FOUND', `the schema registry has no schema ${id}`, { schemaId: id }));
      this.#missing.delete(id);
    }
    const pending = this.#fetchById(id);
    this.#byId.set(id, pending);
    // only schemas are kept: a failure is asked again next time (a "not found" after the negative cache's time)
    pending.catch((err: unknown) => {
      this.#byId.delete(id);
      if (err instanceof SchemaError && err.code === 'SCHEMA_NOT_FOUND') this.#rememberMissing(id);
    });
    return pending;
  }

  version(subject: string, version: number | 'latest'): Promise<SubjectVersion> {
    return this.#versionAt(subject, version, 0);
  }

  subjectsOf(id: number): Promise<Array<{ subject: string; version: number }>> {
    if (!validSchemaId(id)) return Promise.reject(new SchemaError('SCHEMA_NOT_FOUND', `${id} is not a schema id`, { schemaId: id }));
    const known = this.#subjects.get(id);
    if (known && (known.pending || Date.now() - known.at < SUBJECTS_TTL_MS)) return known.pending ?? Promise.resolve(known.list!);
    const pending = this.#call('GET', `/schemas/ids/${id}/versions`, undefined, { schemaId: id }).then((answer) => {
      if (!Array.isArray(answer)) throw new SchemaError('REGISTRY_INVALID_ANSWER', 'the schema registry answered the versions of an id with something else than a list', { schemaId: id });
      return (answer as Array<{ subject?: unknown; version?: unknown }>).map((v) => {
        if (typeof v?.subject !== 'string' || !Number.isInteger(v.version)) throw new SchemaError('REGISTRY_INVALID_ANSWER', 'the schema registry answered a subject version without subject and version', { schemaId: id });
        return { subject: v.subject, version: v.version as number };
      });
    });
    const entry: SubjectsEntry = { at: known?.at ?? 0, list: known?.list, pending: undefined };
    if (!known && this.#subjects.size >= MAX_SUBJECT_LISTS) this.#subjects.delete(this.#subjects.keys().next().value!);
    this.#subjects.set(id, entry);
    // concurrent lookups share the request, and its fallback
    entry.pending = pending.then(
      (list) => {
        Object.assign(entry, { at: Date.now(), list, pending: undefined });
        return list;
      },
      (err: unknown) => {
        entry.pending = undefined;
        // while the registry is away, what it said last still holds (registrations are not withdrawn that fast)
        if (entry.list && err instanceof SchemaError && err.code === 'REGISTRY_UNAVAILABLE') return entry.list;
        if (!entry.list) this.#subjects.delete(id);
        throw err;
      },
    );
    return entry.pending;
  }

  /** Registers `schema` under `subject` (or finds it registered): its id. Only under a configured subject strategy. */
  async register(subject: string, type: SchemaType, schema: string, references: SchemaReference[] = []): Promise<number> {
    const answer = await this.#call('POST', `/subjects/${encodeURIComponent(subject)}/versions`, { schema, schemaType: type, references }, { subject });
    if (!validSchemaId(Number(answer.id))) throw new SchemaError('REGISTRY_INVALID_ANSWER', 'the schema registry answered a registration without an id', { subject });
    return Number(answer.id);
  }

  /** Whether `schema` may follow the subject's latest version under its compatibility rule. */
  async compatible(subject: string, type: SchemaType, schema: string, references: SchemaReference[] = []): Promise<boolean> {
    const answer = (await this.#call('POST', `/compatibility/subjects/${encodeURIComponent(subject)}/versions/latest`, { schema, schemaType: type, references }, { subject })) as { is_compatible?: unknown };
    if (typeof answer.is_compatible !== 'boolean') throw new SchemaError('REGISTRY_INVALID_ANSWER', 'the schema registry answered a compatibility check without is_compatible', { subject });
    return answer.is_compatible;
  }

  async ready(): Promise<boolean> {
    try {
      await this.#call('GET', '/schemas/types', undefined, {});
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  #rememberMissing(id: number): void {
    this.#missing.set(id, Date.now() + this.#config.negativeCache.ttlMs);
    if (this.#missing.size > this.#config.negativeCache.size) this.#missing.delete(this.#missing.keys().next().value!);
  }

  async #fetchById(id: number): Promise<RegisteredSchema> {
    const answer = await this.#call('GET', `/schemas/ids/${id}`, undefined, { schemaId: id });
    return this.#schemaOf(answer, id, { schemaId: id }, 0);
  }

  async #versionAt(subject: string, version: number | 'latest', depth: number): Promise<SubjectVersion> {
    const known = version === 'latest' ? undefined : this.#versions.get(`${subject}\n${version}`);
    if (known) return known;
    const answer = await this.#call('GET', `/subjects/${encodeURIComponent(subject)}/versions/${version}`, undefined, { subject });
    const id = Number(answer.id);
    const number = Number(answer.version);
    if (!validSchemaId(id) || !Number.isInteger(number) || number < 1) throw new SchemaError('REGISTRY_INVALID_ANSWER', `the schema registry answered ${subject} version ${version} without an id and version`, { subject });
    const schema = await this.#schemaOf(answer, id, { subject }, depth);
    // the same id may already be known; the version's content is the id's
    if (!this.#byId.has(id)) this.#byId.set(id, Promise.resolve(schema));
    const found = { ...schema, subject, version: number };
    this.#versions.set(`${subject}\n${number}`, found);
    return found;
  }

  async #schemaOf(answer: SchemaAnswer, id: number, about: { schemaId?: number; subject?: string }, depth: number): Promise<RegisteredSchema> {
    if (typeof answer.schema !== 'string') throw new SchemaError('REGISTRY_INVALID_ANSWER', 'the schema registry answered without a schema', about);
    // Confluent leaves schemaType out for Avro
    const type = (answer.schemaType ?? 'AVRO') as SchemaType;
    if (!SCHEMA_TYPES.has(type)) throw new SchemaError('REGISTRY_INVALID_ANSWER', `the schema registry answered an unknown schema type`, about);
    const references = referencesOf(answer.references, about);
    const resolved = new Map<string, RegisteredSchema>();
    if (references.length > 0) {
      if (depth >= MAX_REFERENCE_DEPTH) throw new SchemaError('REGISTRY_INVALID_ANSWER', `schema references nest deeper than ${MAX_REFERENCE_DEPTH}`, about);
      for (const ref of references) {
        const target = await this.#versionAt(ref.subject, ref.version, depth + 1);
        resolved.set(ref.name, target);
        for (const [name, nested] of target.resolved) if (!resolved.has(name)) resolved.set(name, nested);
      }
    }
    return { id, type, schema: answer.schema, references, resolved };
  }

  async #call(method: 'GET' | 'POST', path: string, body: unknown, about: { schemaId?: number; subject?: string }): Promise<SchemaAnswer> {
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#dispatcher.request({
        origin: this.#origin,
        path: `${this.#prefix}${path}`,
        method,
        headers: body === undefined ? this.#headers : { ...this.#headers, 'content-type': CONTENT_TYPE },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.#config.timeoutMs),
      });
    } catch (err) {
      // a code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, ...), not the message: it may name addresses
      const code = (err as { code?: unknown; name?: unknown }).code ?? (err as { name?: unknown }).name;
      throw new SchemaError('REGISTRY_UNAVAILABLE', `the schema registry cannot be reached (${typeof code === 'string' ? code : 'error'})`, { ...about, cause: err });
    }
    let answer: unknown;
    try {
      answer = await res.body.json();
    } catch {
      answer = undefined;
    }
    const status = res.statusCode;
    if (status >= 200 && status < 300) {
      if (answer === null || typeof answer !== 'object') throw new SchemaError('REGISTRY_INVALID_ANSWER', `the schema registry answered ${status} without a JSON object`, { ...about, status });
      return answer as SchemaAnswer;
    }
    // 40401 subject, 40402 version, 40403 schema: all "not found" to the gateway
    if (status === 404) throw new SchemaError('SCHEMA_NOT_FOUND', about.schemaId !== undefined ? `the schema registry has no schema ${about.schemaId}` : `the schema registry has no such subject or version`, { ...about, status });
    if (status === 401 || status === 403) throw new SchemaError('REGISTRY_REFUSED', `the schema registry refused the gateway's credentials (${status})`, { ...about, status });
    if (status === 409 || status === 422) throw new SchemaError('SCHEMA_REJECTED', `the schema registry refused the schema (${status === 409 ? 'incompatible with the subject' : 'invalid'})`, { ...about, status });
    if (status === 429 || status >= 500) throw new SchemaError('REGISTRY_UNAVAILABLE', `the schema registry answered ${status}`, { ...about, status });
    throw new SchemaError('REGISTRY_INVALID_ANSWER', `the schema registry answered ${status}`, { ...about, status });
  }
}

function referencesOf(raw: unknown, about: { schemaId?: number; subject?: string }): SchemaReference[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new SchemaError('REGISTRY_INVALID_ANSWER', 'the schema registry answered references that are not a list', about);
  return raw.map((r: { name?: unknown; subject?: unknown; version?: unknown }) => {
    if (typeof r?.name !== 'string' || typeof r.subject !== 'string' || !Number.isInteger(r.version)) {
      throw new SchemaError('REGISTRY_INVALID_ANSWER', 'the schema registry answered a reference without name, subject and version', about);
    }
    return { name: r.name, subject: r.subject, version: r.version as number };
  });
}
