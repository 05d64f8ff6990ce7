import { z } from 'zod';

/** The `recording` section of the config file: which sessions' payloads are kept for replay. */

const byteSize = z.int().positive();

/** One selector: every key given must match (any value within a key); `{}` matches everything. */
const selector = z.strictObject({
  /** topic / stream globs (`*` = any run of characters) */
  topics: z.array(z.string().min(1)).min(1).optional(),
  /** token subjects, exactly */
  subjects: z.array(z.string().min(1)).min(1).optional(),
  /** roles the policy derived for the identity */
  roles: z.array(z.string().min(1)).min(1).optional(),
  /** produce, consume or both (default) */
  actions: z.array(z.enum(['produce', 'consume'])).min(1).optional(),
});

const rawSchema = z
  .strictObject({
    /**
     * dir: `key` is a 256-bit secret (base64url, 43 characters, e.g. from ${RECORDING_KEY}) used
     * directly with A256GCM; ECDH-ES: `key` is a public key (PEM text or file path, EC P-256 or
     * X25519) and only the private key's holder can decrypt (the gateway itself cannot).
     */
    alg: z.enum(['dir', 'ECDH-ES']).default('dir'),
    key: z.string().min(1),
    /** key id written into every JWE header and every segment head; pick the key by it when decrypting */
    kid: z.string().min(1),
  });

export const recordingSchema = z.strictObject({
  /** segment files (gzip JSON lines) are written here; give it its own directory next to the audit spool */
  dir: z.string().default('./data/recordings'),
  /** `all`, or selectors (a record is kept when any selector matches its topic, identity and action) */
  sessions: z.union([z.literal('all'), z.array(selector).min(1)]),
  /** a session stops being recorded past this many payload bytes (an audit row notes it) */
  maxSessionBytes: byteSize.default(64 * 1024 * 1024),
  /** recording stops for every session once the segment files hold this many bytes (an audit row notes it) */
  maxTotalBytes: byteSize.default(10 * 1024 * 1024 * 1024),
  /** entries waiting to be written beyond this are dropped (and noted): recording never applies backpressure */
  maxQueueBytes: byteSize.default(64 * 1024 * 1024),
  /** a new segment file after this many bytes of JSON (before gzip: what a reader holds in memory per segment) */
  segmentBytes: byteSize.default(64 * 1024 * 1024),
  /** recorded rows are written (one gzip member) at most this long after their operation */
  flushIntervalMs: z.int().positive().default(50),
  /** gzip level of each write (1 = fastest) */
  gzipLevel: z.int().min(1).max(9).default(1),
  /** also keep the original (pre-masking) payloads, encrypted with JWE; never written in plaintext */
  raw: rawSchema.optional(),
  /** with audit.clickhouse configured, recordings are also copied into this table of its database (ZSTD codecs, TTL) */
  clickhouse: z
    .strictObject({
      enabled: z.boolean().default(true),
      table: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a plain identifier').default('recordings'),
      ttlDays: z.int().positive().default(30),
    })
    .prefault({}),
});

export type RecordingConfig = z.infer<typeof recordingSchema>;
export type RecordingSelector = z.infer<typeof selector>;
export type RawRecordingConfig = z.infer<typeof rawSchema>;
