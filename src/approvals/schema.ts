import { z } from 'zod';

/**
 * Approval rules (`policy.approvals`) and the approval service's own settings (top-level
 * `approvals`). Rules are policy: they hot-reload with it. Durations are milliseconds or
 * a number with a unit (`500ms`, `30s`, `15m`, `1h`, `1d`).
 */

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export const duration = z.union([
  z.int().positive(),
  z
    .string()
    .regex(/^\d+(?:\.\d+)?(?:ms|s|m|h|d)$/, 'expected a duration such as 500ms, 30s, 15m, 1h or 1d')
    .transform((s) => {
      const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s)!;
      return Math.round(Number(m[1]) * UNITS[m[2]!]!);
    }),
]);

const action = z.enum(['produce', 'consume', 'describe', 'admin']);
const globs = z.array(z.string().min(1)).min(1);

export const approvalRuleSchema = z
  .strictObject({
    /** named in approval requests, audit rows and error messages */
    id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'an id is 1-64 characters of [A-Za-z0-9._-]'),
    actions: z.array(action).min(1),
    /** resource globs, as in grants (`*` = any run of characters) */
    topics: globs.optional(),
    groups: globs.optional(),
    transactionalIds: globs.optional(),
    cluster: z.boolean().optional(),
    /** roles the rule applies to (default: every authenticated identity); others are decided by the grants alone */
    requesters: z.array(z.string()).min(1).optional(),
    /** roles whose holders may approve or deny (never their own requests) */
    approvers: z.array(z.string()).min(1),
    /** how long an approval lets the requester repeat the operation on the resource */
    grantTtl: duration.default(3_600_000),
    /** what an approval covers: the resource requested (default), or every resource the rule's globs match */
    grantScope: z.enum(['resource', 'rule']).default('resource'),
    /** how long an operation is held waiting for a decision (Kafka: also below the request's own timeout) */
    maxWait: duration.default(30_000),
    /** how long a request stays pending before it expires by itself */
    expiresAfter: duration.default(3_600_000),
  })
  .refine((r) => r.topics || r.groups || r.transactionalIds || r.cluster, 'an approval rule needs at least one of topics, groups, transactionalIds, cluster')
  .refine((r) => r.expiresAfter >= r.maxWait, { message: 'expiresAfter must not be shorter than maxWait', path: ['expiresAfter'] });

/** optional (not defaulted), so a policy built in code without approvals stays a valid PolicyConfig */
export const approvalRulesSchema = z.array(approvalRuleSchema).optional();

export const approvalsSchema = z.strictObject({
  /**
   * Base URL under which approvers reach the admin listener, named in held operations'
   * errors (`<publicUrl>/v1/approvals/<id>`); default: the admin listener's own address.
   */
  publicUrl: z.url().optional(),
  /** POSTed a JSON body for every new request; never delays the held operation */
  webhook: z
    .strictObject({
      url: z.url(),
      timeoutMs: z.int().positive().default(5000),
      /** attempts in all (first try included), backing off 0.5 s, 1 s, 2 s, ... */
      attempts: z.int().min(1).max(10).default(3),
      /** extra headers, e.g. an authorization for the receiver (use ${ENV} for secrets) */
      headers: z.record(z.string(), z.string()).default({}),
    })
    .optional(),
  /** how often each instance looks for pending requests past their expiry */
  sweepIntervalMs: z.int().positive().default(1000),
});

export type ApprovalRule = z.infer<typeof approvalRuleSchema>;
export type ApprovalsConfig = z.infer<typeof approvalsSchema>;
