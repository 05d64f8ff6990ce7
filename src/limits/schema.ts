import { z } from 'zod';

/**
 * Resource limits: what one client, or one identity, may take from a gateway process.
 * Kafka's own names are used where a broker has the same knob.
 */
export const limitsSchema = z.strictObject({
  connections: z
    .strictObject({
      /** open client connections per listener and process; the next one is closed at once (audited) */
      max: z.int().positive().default(10_000),
      /**
       * connections one authenticated subject may hold per listener and process: Kafka refuses
       * the SASL login over it, HTTP and Kinesis answer 429 / ProvisionedThroughputExceededException
       */
      perIdentity: z.int().positive().default(1_000),
    })
    .prefault({}),
  /** a Kafka connection must finish SASL (or present a client certificate) this soon: slow-loris and port scans cost a timer, not a session */
  authTimeoutMs: z.int().positive().default(10_000),
  /** a Kafka connection with no request for this long is closed (Kafka's connections.max.idle.ms) */
  idleTimeoutMs: z.int().positive().default(600_000),
  /** request bytes a Kafka connection may have read but not yet handled; reading pauses above it (backpressure, bounded memory per connection) */
  maxInflightBytes: z.int().positive().default(64 * 1024 * 1024),
  /**
   * Per-identity rates, per process (token buckets holding `burstSeconds` of the rate);
   * 0 = unlimited. Over the rate, Kafka clients are throttled the way brokers throttle
   * (KIP-219: the answer carries throttle_time_ms and the connection is muted that long),
   * HTTP clients get 429 with Retry-After, Kinesis clients ProvisionedThroughputExceededException.
   */
  rate: z
    .strictObject({
      requestsPerSecond: z.number().min(0).default(0),
      /** record bytes produced per second */
      bytesPerSecond: z.number().min(0).default(0),
      burstSeconds: z.number().positive().max(60).default(1),
    })
    .prefault({}),
});

export type LimitsConfig = z.infer<typeof limitsSchema>;
