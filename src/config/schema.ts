import { z } from 'zod';

/**
 * The configuration file, schema first: the TypeScript types are inferred from it, so the
 * validator and the code can never disagree. Unknown keys are errors (typos must not be
 * silently ignored in a security policy).
 */

const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, 'expected "host:port"');
const action = z.enum(['produce', 'consume', 'describe', 'admin']);
const byteSize = z.int().positive();

const httpListener = z.strictObject({
  host: z.string().default('127.0.0.1'),
  port: z.int().min(0).max(65535).default(8080),
  /** the {cluster_id} accepted in REST v3 paths */
  clusterId: z.string().min(1).default('streamgate'),
  maxBodyBytes: byteSize.default(8 * 1024 * 1024),
  /** close idle keep-alive connections after this long */
  keepAliveTimeoutMs: z.int().positive().default(65_000),
  requestTimeoutMs: z.int().positive().default(30_000),
});

const kafkaUpstream = z.strictObject({
  bootstrap: z.array(hostPort).min(1),
  clientId: z.string().default('streamgate'),
  /** ms to wait for the broker before answering 503 */
  timeoutMs: z.int().positive().default(10_000),
  /** ack the client only when all in-sync replicas have the record */
  acks: z.union([z.literal(-1), z.literal(0), z.literal(1)]).default(-1),
  compression: z.enum(['none', 'gzip', 'snappy', 'lz4', 'zstd']).default('none'),
});

/** Accepts every write instantly without a broker: isolates gateway cost in benchmarks. */
const ackUpstream = z.strictObject({ kind: z.literal('ack') });

const issuer = z.strictObject({
  issuer: z.url(),
  audience: z.union([z.string(), z.array(z.string()).min(1)]),
  /** defaults to the jwks_uri of the issuer's discovery document */
  jwksUri: z.url().optional(),
  /** explicit allow-list: asymmetric algorithms only, so `none` and HMAC key confusion cannot apply */
  algorithms: z
    .array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']))
    .min(1)
    .default(['RS256', 'ES256']),
  /** claim holding the subject's groups (string or array) */
  groupsClaim: z.string().default('groups'),
  clockToleranceSeconds: z.int().min(0).max(300).default(5),
});

const roleCondition = z
  .strictObject({
    groups: z.array(z.string()).min(1).optional(),
    subjects: z.array(z.string()).min(1).optional(),
    scopes: z.array(z.string()).min(1).optional(),
    issuers: z.array(z.string()).min(1).optional(),
    claims: z.record(z.string(), z.array(z.union([z.string(), z.number(), z.boolean()])).min(1)).optional(),
  })
  .refine((c) => Object.keys(c).length > 0, 'a role condition needs at least one of groups, subjects, scopes, issuers, claims');

const grant = z.strictObject({
  roles: z.array(z.string()).min(1),
  actions: z.array(action).min(1),
  /** glob patterns (`*` = any run of characters); `{sub}` and `{claim:NAME}` expand from the token */
  topics: z.array(z.string().min(1)).min(1),
  effect: z.enum(['allow', 'deny']).default('allow'),
});

const policy = z.strictObject({
  /** role name -> when an identity holds it (all keys must match, any value within a key) */
  roles: z.record(z.string(), z.strictObject({ when: roleCondition })),
  grants: z.array(grant).default([]),
});

const inspectionRule = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/, 'rule ids are lowercase letters, digits, ".", "_" and "-"'),
  /** built-in detector; the engine in this release ships the payment-card detector */
  detector: z.literal('payment-card'),
  action: z.strictObject({ type: z.literal('mask'), keepLast: z.literal(4).default(4) }),
});

const topicInspection = z.strictObject({
  topics: z.array(z.string().min(1)).min(1),
  /** rule ids applied to record values before the broker receives them */
  produce: z.array(z.string()).default([]),
});

const inspection = z.strictObject({
  /** auto: small batches inline on the accept thread, large ones in the pool */
  mode: z.enum(['auto', 'inline', 'pool']).default('auto'),
  /** in auto mode, batches up to this many bytes are inspected inline */
  inlineMaxBytes: byteSize.default(64 * 1024),
  poolThreads: z.int().min(1).max(64).optional(),
  rules: z.array(inspectionRule).default([]),
  topics: z.array(topicInspection).default([]),
  limits: z
    .strictObject({
      maxRecordBytes: byteSize.default(1024 * 1024),
      maxBatchBytes: byteSize.default(8 * 1024 * 1024),
    })
    .prefault({}),
});

const audit = z.strictObject({
  spool: z
    .strictObject({
      dir: z.string().default('./data/audit'),
      segmentBytes: byteSize.default(64 * 1024 * 1024),
      /**
       * write: a row reaches the OS (survives a gateway crash) before the client is answered,
       * and is fsynced every fsyncIntervalMs; fsync: the client waits for the fsync too.
       */
      durability: z.enum(['write', 'fsync']).default('write'),
      fsyncIntervalMs: z.int().positive().default(200),
    })
    .prefault({}),
});

export const configSchema = z.strictObject({
  instance: z.string().min(1).optional(),
  log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).prefault({}),
  listeners: z.strictObject({ http: httpListener.optional() }).refine((l) => l.http, 'at least one listener is required'),
  upstream: z.union([z.strictObject({ kafka: kafkaUpstream }), ackUpstream], { error: 'expected either { kafka: { bootstrap: [...] } } or { kind: ack }' }),
  identity: z.strictObject({ issuers: z.array(issuer).min(1) }),
  policy,
  inspection: inspection.prefault({}),
  audit: audit.prefault({}),
});

export type Config = z.infer<typeof configSchema>;
export type IssuerConfig = z.infer<typeof issuer>;
export type PolicyConfig = z.infer<typeof policy>;
export type InspectionConfig = z.infer<typeof inspection>;
export type AuditConfig = z.infer<typeof audit>;
export type KafkaUpstreamConfig = z.infer<typeof kafkaUpstream>;
export type HttpListenerConfig = z.infer<typeof httpListener>;
