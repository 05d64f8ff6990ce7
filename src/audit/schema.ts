import { z } from 'zod';

/** The `audit` section of the config file. */

const byteSize = z.int().positive();

export const spoolSchema = z.strictObject({
  dir: z.string().default('./data/audit'),
  segmentBytes: byteSize.default(64 * 1024 * 1024),
  /**
   * write: a row reaches the OS (survives a gateway crash) before the client is answered,
   * and is fsynced every fsyncIntervalMs; fsync: the client waits for the fsync too.
   */
  durability: z.enum(['write', 'fsync']).default('write'),
  fsyncIntervalMs: z.int().positive().default(200),
  /** Ed25519 private key (PEM text, e.g. from ${AUDIT_SIGNING_KEY}, or a PEM file path) that signs segment heads */
  signingKey: z.string().min(1).optional(),
  /** with ClickHouse shipping: the spool is full when this many bytes are not yet shipped */
  maxUnshippedBytes: byteSize.default(1024 * 1024 * 1024),
  /**
   * fail-closed: a full spool refuses new operations (503) until the shipper catches up;
   * fail-open: operations go on without audit rows, with an error log, a counter and a
   * `spool-gap` row that records how many rows are missing.
   */
  whenFull: z.enum(['fail-closed', 'fail-open']).default('fail-closed'),
  /**
   * Closed segments are deleted when older than maxAgeHours or beyond maxTotalBytes
   * (oldest first); with ClickHouse shipping, only segments already shipped.
   */
  retention: z
    .strictObject({
      maxAgeHours: z.number().positive().optional(),
      maxTotalBytes: byteSize.optional(),
      checkIntervalMs: z.int().positive().default(60_000),
    })
    .prefault({}),
});

export const clickhouseSchema = z.strictObject({
  url: z.url(),
  database: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a plain identifier').default('streamgate'),
  username: z.string().default('default'),
  password: z.string().default(''),
  /** an insert is sent when this many rows are waiting ... */
  batchRows: z.int().positive().default(20_000),
  /** ... or this many bytes ... */
  batchBytes: byteSize.default(16 * 1024 * 1024),
  /** ... or the oldest waiting row is this old */
  flushIntervalMs: z.int().positive().default(1000),
  /** inserts in flight at once (a legacy server parses each insert on one core) */
  concurrency: z.int().min(1).max(8).default(2),
  requestTimeoutMs: z.int().positive().default(30_000),
  /** retry backoff: doubles from retryInitialMs up to retryMaxMs, with jitter */
  retryInitialMs: z.int().positive().default(250),
  retryMaxMs: z.int().positive().default(30_000),
  /** run `audit migrate` when the shipper starts */
  autoMigrate: z.boolean().default(false),
  /** TTL of audit rows on servers that support TTL (19.6+) */
  ttlDays: z.int().positive().default(400),
});

export const auditSchema = z.strictObject({
  spool: spoolSchema.prefault({}),
  /** optional: without it the spool is the audit store (query it with `streamgate audit query`) */
  clickhouse: clickhouseSchema.optional(),
});

export type AuditConfig = z.infer<typeof auditSchema>;
export type SpoolConfig = z.infer<typeof spoolSchema>;
export type ClickHouseConfig = z.infer<typeof clickhouseSchema>;
