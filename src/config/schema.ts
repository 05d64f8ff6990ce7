import { z } from 'zod';
import { auditSchema } from '../audit/schema.ts';
import { inspectionSchema } from '../inspect/schema.ts';
import { catalogSchema, registrySchema } from '../schemas/schema.ts';
import { approvalRulesSchema, approvalsSchema } from '../approvals/schema.ts';
import { credentialsSchema } from '../jit/schema.ts';
import { stateSchema } from '../state/schema.ts';
import { recordingSchema } from '../recording/schema.ts';
import { limitsSchema } from '../limits/schema.ts';

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

const kafkaListener = z.strictObject({
  host: z.string().default('127.0.0.1'),
  /** bootstrap port: clients put host:port in bootstrap.servers */
  port: z.int().min(0).max(65535).default(9192),
  /** the host clients are told to connect to in Metadata/FindCoordinator/DescribeCluster answers (default: host) */
  advertisedHost: z.string().min(1).optional(),
  /** broker node N is served on brokerPortBase + N (port per broker); 0 = a free port per broker, picked when first seen */
  brokerPortBase: z.int().min(0).max(65535).default(9200),
  /** highest broker node id that gets a port (bounds the port range) */
  maxNodeId: z.int().min(0).max(10_000).default(99),
  /** larger request frames close the connection (Kafka's socket.request.max.bytes) */
  maxFrameBytes: byteSize.default(100 * 1024 * 1024),
  /**
   * Before a connection has authenticated: larger frames close it, and reading pauses while
   * this many request bytes wait (Kafka's sasl.server.max.receive.size): an anonymous client
   * cannot make the gateway buffer more than this per connection.
   */
  maxFrameBytesBeforeAuth: byteSize.default(512 * 1024),
  /** upper bound of session_lifetime_ms; the token's expiry lowers it (KIP-368 re-authentication) */
  maxSessionLifetimeMs: z.int().positive().default(3_600_000),
  /** Kafka APIs the gateway does not inspect but forwards unchanged (by name, e.g. GetTelemetrySubscriptions); default: none, fail closed */
  passthroughApis: z.array(z.string().min(1)).default([]),
  /** TLS for client connections (PEM file paths); mTLS when clientCa is set */
  tls: z
    .strictObject({
      cert: z.string().min(1),
      key: z.string().min(1),
      /** CA bundle for client certificates; a verified certificate's subject CN becomes the identity */
      clientCa: z.string().min(1).optional(),
    })
    .optional(),
});

/** AWS Kinesis API (JSON 1.1 over HTTP/1.1 and cleartext HTTP/2): SDK clients change only the endpoint and credentials. */
const kinesisListener = z.strictObject({
  host: z.string().default('127.0.0.1'),
  port: z.int().min(0).max(65535).default(9567),
  /** larger request bodies are refused unread (Kinesis itself accepts 5 MiB of records per PutRecords, ~7 MiB as JSON) */
  maxBodyBytes: byteSize.default(8 * 1024 * 1024),
  /** SigV4: largest accepted difference between X-Amz-Date and the gateway's clock; a signature is accepted once within it (replay) */
  maxClockSkewSeconds: z.int().min(1).max(3600).default(300),
  /** HMAC key binding shard iterators and ListShards tokens to their stream; instances behind one balancer need the same (default: random per start) */
  iteratorSecret: z.string().min(32).optional(),
  requestTimeoutMs: z.int().positive().default(30_000),
  /** TLS (PEM file paths): HTTP/2 or HTTP/1.1 by ALPN, what SDKs use against https:// endpoints */
  tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
  /**
   * SigV4 with `x-amz-content-sha256: UNSIGNED-PAYLOAD` (the signature does not cover the
   * body) is refused unless this is true, which needs `tls`: without TLS the body could be
   * changed in transit under a valid signature
   */
  allowUnsignedPayload: z.boolean().default(false),
}).refine((l) => !l.allowUnsignedPayload || l.tls !== undefined, { message: 'allowUnsignedPayload needs tls (an unsigned body is only protected by TLS)', path: ['allowUnsignedPayload'] });

/** Operations endpoints (metrics, liveness, readiness) on their own port, never on a data port. */
const adminListener = z.strictObject({
  host: z.string().default('127.0.0.1'),
  port: z.int().min(0).max(65535).default(9644),
});

const metrics = z.strictObject({
  /** adds a `topic` label to the per-operation series: cardinality grows with the number of topics */
  perTopicLabels: z.boolean().default(false),
});

const kafkaUpstream = z.strictObject({
  bootstrap: z.array(hostPort).min(1),
  clientId: z.string().default('streamgate'),
  /** ms to wait for the broker before answering 503 */
  timeoutMs: z.int().positive().default(10_000),
  /** ack the client only when all in-sync replicas have the record */
  acks: z.union([z.literal(-1), z.literal(0), z.literal(1)]).default(-1),
  compression: z.enum(['none', 'gzip', 'snappy', 'lz4', 'zstd']).default('none'),
  /** how the gateway itself connects to the brokers (the Kafka listener's upstream); client credentials never reach them */
  security: z
    .strictObject({
      /** TLS to the brokers; `ca` is a PEM file path (default: the system CAs) */
      tls: z.strictObject({ ca: z.string().min(1).optional(), serverName: z.string().optional() }).optional(),
      sasl: z.strictObject({ mechanism: z.enum(['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512']), username: z.string().min(1), password: z.string().min(1) }).optional(),
    })
    .optional(),
});

/** Accepts every write instantly without a broker: isolates gateway cost in benchmarks. */
const ackUpstream = z.strictObject({ kind: z.literal('ack') });

/** The Kinesis endpoint behind the Kinesis listener; requests are re-signed with these credentials (never the client's). */
const kinesisUpstream = z.strictObject({
  endpoint: z.url(),
  region: z.string().min(1).default('us-east-1'),
  credentials: z.strictObject({ accessKeyId: z.string().min(1), secretAccessKey: z.string().min(1), sessionToken: z.string().min(1).optional() }),
  /** keep-alive connections in the pool */
  connections: z.int().positive().default(16),
  timeoutMs: z.int().positive().default(10_000),
});

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
  topics: z.array(z.string().min(1)).min(1).optional(),
  /** Kafka consumer group id globs (consume: join/commit/fetch offsets; describe; admin: delete) */
  groups: z.array(z.string().min(1)).min(1).optional(),
  /** Kafka transactional id globs (produce: transactions; describe) */
  transactionalIds: z.array(z.string().min(1)).min(1).optional(),
  /** the Kafka cluster itself (broker configs, cluster-wide describe) */
  cluster: z.boolean().optional(),
  effect: z.enum(['allow', 'deny']).default('allow'),
}).refine((g) => g.topics || g.groups || g.transactionalIds || g.cluster, 'a grant needs at least one of topics, groups, transactionalIds, cluster');

const policy = z.strictObject({
  /** role name -> when an identity holds it (all keys must match, any value within a key) */
  roles: z.record(z.string(), z.strictObject({ when: roleCondition })),
  grants: z.array(grant).default([]),
  /** operations that wait for a human approval (src/approvals) */
  approvals: approvalRulesSchema,
});

export const configSchema = z.strictObject({
  instance: z.string().min(1).optional(),
  log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).prefault({}),
  listeners: z.strictObject({ http: httpListener.optional(), kafka: kafkaListener.optional(), admin: adminListener.optional(), kinesis: kinesisListener.optional() }).refine((l) => l.http || l.kafka || l.kinesis, 'at least one listener is required'),
  metrics: metrics.prefault({}),
  // kinesis may sit beside either (the Kinesis listener's upstream) or stand alone
  upstream: z.union([z.strictObject({ kafka: kafkaUpstream, kinesis: kinesisUpstream.optional() }), ackUpstream.extend({ kinesis: kinesisUpstream.optional() }), z.strictObject({ kinesis: kinesisUpstream })], {
    error: 'expected { kafka: { bootstrap: [...] } }, { kind: ack } or { kinesis: { endpoint, credentials } } (kinesis may accompany either of the first two)',
  }),
  identity: z.strictObject({ issuers: z.array(issuer).min(1) }),
  policy,
  inspection: inspectionSchema.prefault({}),
  /** where the schemas of schema-registry values come from (topics with a `schema` section): a registry or a local catalog */
  schemas: z.union([z.strictObject({ registry: registrySchema }), z.strictObject({ catalog: catalogSchema })], { error: 'expected { registry: {...} } or { catalog: {...} }' }).optional(),
  audit: auditSchema.prefault({}),
  /** session recording for replay (src/recording); absent: nothing is recorded */
  recording: recordingSchema.optional(),
  /** shared state (revocations, signing keys, approvals): memory (one instance) or redis (several) */
  state: stateSchema.default({ kind: 'memory' }),
  /** just-in-time credentials (POST /v1/token); absent = not issued */
  credentials: credentialsSchema.optional(),
  /** connection counts, timeouts and per-identity rates (src/limits) */
  limits: limitsSchema.prefault({}),
  /** approval service settings: public URL, webhook (the rules are policy.approvals) */
  approvals: approvalsSchema.prefault({}),
}).superRefine((c, ctx) => {
  const i = c.inspection.topics.findIndex((t) => t.schema);
  if (i >= 0 && !c.schemas) ctx.addIssue({ code: 'custom', path: ['inspection', 'topics', i, 'schema'], message: 'topics with schema-registry values need a top-level schemas section (a registry or a catalog)' });
});

export type Config = z.infer<typeof configSchema>;
export type IssuerConfig = z.infer<typeof issuer>;
export type PolicyConfig = z.infer<typeof policy>;
export type { InspectionConfig } from '../inspect/schema.ts';
export type { AuditConfig } from '../audit/schema.ts';
export type { StateConfig } from '../state/schema.ts';
export type { CredentialsConfig } from '../jit/schema.ts';
export type { LimitsConfig } from '../limits/schema.ts';
export type KafkaUpstreamConfig = z.infer<typeof kafkaUpstream>;
export type HttpListenerConfig = z.infer<typeof httpListener>;
export type KafkaListenerConfig = z.infer<typeof kafkaListener>;
export type AdminListenerConfig = z.infer<typeof adminListener>;
export type KinesisListenerConfig = z.infer<typeof kinesisListener>;
export type KinesisUpstreamConfig = z.infer<typeof kinesisUpstream>;
export type MetricsConfig = z.infer<typeof metrics>;
