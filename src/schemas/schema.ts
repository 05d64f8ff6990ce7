import { z } from 'zod';

/**
 * Where record schemas come from (issue 21): a Confluent-compatible schema registry (Confluent
 * Schema Registry, Apicurio's /apis/ccompat/v7, Karapace, Redpanda), or a local catalog of
 * schema files with ids assigned here, for users without a registry.
 */

const schemaType = z.enum(['AVRO', 'PROTOBUF', 'JSON']);

const reference = z.strictObject({
  /** how the referring schema names it (Avro: the full type name; Protobuf: the import path; JSON Schema: the $ref URL) */
  name: z.string().min(1),
  subject: z.string().min(1),
  version: z.int().positive(),
});

export const registrySchema = z.strictObject({
  /** base URL of the Confluent-compatible API, e.g. http://registry:8081 or http://apicurio:8080/apis/ccompat/v7 */
  url: z.url({ protocol: /^https?$/ }),
  auth: z
    .union([
      z.strictObject({ basic: z.strictObject({ username: z.string().min(1), password: z.string() }) }),
      z.strictObject({ bearer: z.string().min(1) }),
    ])
    .optional(),
  /** https: the CA that signed the registry's certificate (PEM file), a client certificate for mTLS, the name to verify */
  tls: z
    .strictObject({ ca: z.string().min(1).optional(), cert: z.string().min(1).optional(), key: z.string().min(1).optional(), serverName: z.string().min(1).optional() })
    .refine((t) => (t.cert === undefined) === (t.key === undefined), 'tls.cert and tls.key go together')
    .optional(),
  /** one request, retries included */
  timeoutMs: z.int().positive().default(5_000),
  /** retries of a request that failed on the network or with 429/5xx, with exponential backoff */
  retries: z.int().min(0).max(10).default(2),
  /** ids the registry said it does not know are remembered, bounded: the ids come from record bytes anyone can write */
  negativeCache: z.strictObject({ size: z.int().positive().default(10_000), ttlMs: z.int().positive().default(30_000) }).prefault({}),
});
export type RegistryConfig = z.infer<typeof registrySchema>;

export const catalogSchema = z.strictObject({
  /** directory of the schema files (relative paths below are resolved against it) */
  dir: z.string().min(1),
  schemas: z
    .array(
      z.strictObject({
        id: z.int().min(0).max(2 ** 31 - 1),
        subject: z.string().min(1),
        version: z.int().positive().default(1),
        type: schemaType.default('AVRO'),
        file: z.string().min(1),
        references: z.array(reference).default([]),
      }),
    )
    .min(1)
    .refine((list) => new Set(list.map((s) => s.id)).size === list.length, 'schema ids must be unique')
    .refine((list) => new Set(list.map((s) => `${s.subject}\n${s.version}`)).size === list.length, 'a subject version may be listed once'),
});
export type CatalogConfig = z.infer<typeof catalogSchema>;

export type SchemaType = z.infer<typeof schemaType>;
export type SchemaReference = z.infer<typeof reference>;
