import { z } from 'zod';

/**
 * The `state` section: where revocations, signing keys, approval requests and grants live.
 * memory: this instance only (default). redis: shared by every instance pointing at the
 * same Redis and prefix; changes propagate through Redis pub/sub.
 */
export const stateSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('memory') }),
  z.strictObject({
    kind: z.literal('redis'),
    url: z.string().regex(/^rediss?:\/\//, 'expected redis://host:port[/db] or rediss://...').default('redis://127.0.0.1:6379'),
    /** prepended to every key and channel: deployments (and tests) sharing one Redis stay apart */
    prefix: z.string().default('streamgate:'),
  }),
]);

export type StateConfig = z.infer<typeof stateSchema>;
