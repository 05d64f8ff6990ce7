import { z } from 'zod';

/** The `audit` section of the config file. */

const byteSize = z.int().positive();

export const auditSchema = z.strictObject({
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

export type AuditConfig = z.infer<typeof auditSchema>;
