// Schemas without a registry: files in a directory, each given its id, subject and version in
// the configuration (what a registry would have assigned). Records framed with those ids are
// decoded with these schemas exactly as with a registry's.

import { readFileSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import type { CatalogConfig } from './schema.ts';
import { SchemaError, type RegisteredSchema, type SchemaSource, type SubjectVersion } from './source.ts';

export class SchemaCatalog implements SchemaSource {
  readonly #byId = new Map<number, SubjectVersion>();
  readonly #bySubject = new Map<string, SubjectVersion[]>();

  /** Reads every file now: a missing file or a reference to an unlisted version is a configuration error. */
  constructor(config: CatalogConfig) {
    const plain = new Map<string, Omit<SubjectVersion, 'resolved'>>();
    for (const entry of config.schemas) {
      const path = isAbsolute(entry.file) ? entry.file : join(config.dir, entry.file);
      if (!isAbsolute(entry.file) && relative(config.dir, path).startsWith('..')) throw new Error(`schema file ${entry.file} is outside the catalog directory`);
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (err) {
        throw new Error(`schema ${entry.id} (${entry.subject} v${entry.version}): cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      }
      plain.set(`${entry.subject}\n${entry.version}`, { id: entry.id, type: entry.type, schema: text, references: entry.references, subject: entry.subject, version: entry.version });
    }
    const resolving = new Set<string>();
    const resolve = (key: string): SubjectVersion => {
      const done = this.#byId.get(plain.get(key)!.id);
      if (done) return done;
      if (resolving.has(key)) throw new Error(`schema references loop through ${key.replace('\n', ' v')}`);
      resolving.add(key);
      const entry = plain.get(key)!;
      const resolved = new Map<string, RegisteredSchema>();
      for (const ref of entry.references) {
        const target = `${ref.subject}\n${ref.version}`;
        if (!plain.has(target)) throw new Error(`schema ${entry.id} references ${ref.subject} v${ref.version}, which the catalog does not list`);
        const found = resolve(target);
        resolved.set(ref.name, found);
        for (const [name, nested] of found.resolved) if (!resolved.has(name)) resolved.set(name, nested);
      }
      resolving.delete(key);
      const schema: SubjectVersion = { ...entry, resolved };
      this.#byId.set(entry.id, schema);
      const versions = this.#bySubject.get(entry.subject) ?? [];
      versions.push(schema);
      versions.sort((a, b) => a.version - b.version);
      this.#bySubject.set(entry.subject, versions);
      return schema;
    };
    for (const key of plain.keys()) resolve(key);
  }

  /** Every schema of the catalog, with its subject and version. */
  all(): SubjectVersion[] {
    return [...this.#byId.values()];
  }

  byId(id: number): Promise<RegisteredSchema> {
    const found = this.#byId.get(id);
    return found ? Promise.resolve(found) : Promise.reject(new SchemaError('SCHEMA_NOT_FOUND', `the schema catalog has no schema ${id}`, { schemaId: id }));
  }

  version(subject: string, version: number | 'latest'): Promise<SubjectVersion> {
    const versions = this.#bySubject.get(subject) ?? [];
    const found = version === 'latest' ? versions.at(-1) : versions.find((v) => v.version === version);
    return found ? Promise.resolve(found) : Promise.reject(new SchemaError('SCHEMA_NOT_FOUND', `the schema catalog has no ${subject} v${version}`, { subject }));
  }

  subjectsOf(id: number): Promise<Array<{ subject: string; version: number }>> {
    const found = this.#byId.get(id);
    return found ? Promise.resolve([{ subject: found.subject, version: found.version }]) : Promise.reject(new SchemaError('SCHEMA_NOT_FOUND', `the schema catalog has no schema ${id}`, { schemaId: id }));
  }

  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
