import { z } from 'zod';

/** The `inspection` section of the config file: rules, where they apply, limits. */

const byteSize = z.int().positive();

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

export const inspectionSchema = z
  .strictObject({
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
  })
  .superRefine((c, ctx) => {
    const ids = new Set<string>();
    c.rules.forEach((r, i) => {
      if (ids.has(r.id)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'id'], message: `duplicate rule id "${r.id}"` });
      ids.add(r.id);
    });
    c.topics.forEach((t, i) =>
      t.produce.forEach((id, j) => {
        if (!ids.has(id)) ctx.addIssue({ code: 'custom', path: ['topics', i, 'produce', j], message: `unknown rule "${id}"` });
      }),
    );
  });

export type InspectionConfig = z.infer<typeof inspectionSchema>;
