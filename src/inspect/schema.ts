import { z } from 'zod';
import { DETECTOR_IDS } from './detectors.ts';
import { parseJsonPath } from './compile/jsonpath.ts';
import { nullable, parseFlags, parsePattern } from './compile/regex.ts';
import { readKeyring } from '../protect/keyring-file.ts';

/** The `inspection` section of the config file: rules, where they apply, keys, limits. */

const byteSize = z.int().positive();
const ruleId = z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/, 'rule ids are lowercase letters, digits, ".", "_" and "-"');
/** text written into payloads: no quote, backslash or control characters (it may land inside a JSON string) */
const safeText = (max: number) =>
  z.string().max(max).regex(/^[^"\\\u0000-\u001f]*$/, 'no double quote, backslash or control characters (it is written into JSON strings)');

const action = z.discriminatedUnion('type', [
  /** replace the match (or field value) with fixed text */
  z.strictObject({ type: z.literal('redact'), replacement: safeText(256).default('[REDACTED]') }),
  /** replace letters and digits with `char`, keeping the first/last few; separators stay */
  z.strictObject({
    type: z.literal('mask'),
    keepLast: z.int().min(0).max(64).default(4),
    keepFirst: z.int().min(0).max(64).default(0),
    char: z.string().length(1).regex(/^[\x21\x23-\x5b\x5d-\x7e]$/, 'one printable ASCII character other than " and \\').default('*'),
  }),
  /** lowercase hex SHA-256 of the value, optionally truncated */
  z.strictObject({ type: z.literal('hash'), length: z.int().min(8).max(64).default(64) }),
  /**
   * deterministic keyed token (HMAC-SHA256 with the active tokenization key): equal
   * values give equal tokens. token: `<prefix>v<version>_<22 base64url chars>`;
   * preserve: same length and character classes, last `keepLast` kept, the first
   * replaced character carries the key version
   */
  z.strictObject({
    type: z.literal('tokenize'),
    format: z.enum(['token', 'preserve']).default('token'),
    keepLast: z.int().min(0).max(64).default(0),
    prefix: safeText(32).regex(/^[A-Za-z0-9_.:-]*$/, 'letters, digits, "_", ".", ":", "-"').default('tok_'),
  }),
  /** remove the JSON member (or array element) holding the match; in text, the match itself */
  z.strictObject({ type: z.literal('drop') }),
  /** refuse the whole message; `reason` is returned to the client with the rule id */
  z.strictObject({ type: z.literal('block'), reason: z.string().min(1).max(200).default('blocked by an inspection rule') }),
  /**
   * reversible encryption with the protection keyring (docs/inspection.md "Reversible
   * protection"). envelope: AES-256-GCM, written as `sge1.<key version>.<base64url>`, random
   * (equal values differ), bound to this rule; preserve: FF1 (NIST SP 800-38G), same length and
   * character classes, deterministic per rule (equal values stay equal, joins keep working)
   */
  z.strictObject({
    type: z.literal('encrypt'),
    format: z.enum(['envelope', 'preserve']).default('envelope'),
    /** preserve: letters and digits left in clear at the start (a card's issuer prefix: card detectors then still find it) */
    keepFirst: z.int().min(0).max(64).default(0),
    /** preserve: letters and digits left in clear at the end (the last four of a card) */
    keepLast: z.int().min(0).max(64).default(0),
    /** preserve: the value ends with a Luhn check digit; the result is made Luhn-valid again */
    luhn: z.boolean().default(false),
    /** preserve: the key version (an FF1 ciphertext has no room to say which key made it) */
    keyVersion: z.int().min(1).max(65535).optional(),
    /**
     * envelope: the record field naming its data subject (`$.customer_id`); each value is
     * encrypted under that subject's own key, and erasing the subject makes all of them
     * unreadable (crypto-shredding; needs protection.subjects)
     */
    subject: z.string().regex(/^\$(\.[A-Za-z_][A-Za-z0-9_-]*)+$/, 'a member path like $.customer_id or $.customer.id').optional(),
  }),
  /**
   * reveals what encrypt rule `rule` wrote (consume rules, for the roles that may see the
   * original); a value that does not decrypt becomes `onFailure`, and the audit row says why
   */
  z.strictObject({
    type: z.literal('decrypt'),
    rule: ruleId,
    onFailure: safeText(256).default('[UNREADABLE]'),
  }),
]);

/**
 * Where in a record a rule applies: `key`, `value`, `headers.*` (every header value) or
 * `headers.<name>` (the values of headers with that exact name).
 */
const target = z.string().regex(/^(?:key|value|headers\..+)$/, 'a target is key, value, headers.* or headers.<name>');

const inspectionRule = z
  .strictObject({
    id: ruleId,
    /** a built-in detector (see README "Inspection") */
    detector: z.enum(DETECTOR_IDS as [string, ...string[]]).optional(),
    /** a pattern in the rule subset of regular expressions (see README "Inspection") */
    pattern: z.string().min(1).max(4096).optional(),
    /** pattern flags: i (ASCII case-insensitive), s (. matches newlines) */
    flags: z.string().regex(/^[is]*$/, 'flags are "i" and/or "s"').optional(),
    /** JSON field paths the rule is limited to ($.a.b, $..name, $.items[*].x); without a detector/pattern the action applies to the whole value */
    fields: z.array(z.string().min(1)).min(1).optional(),
    /**
     * where the rule applies; without targets: values, and its detector or pattern also to
     * keys, header names and header values (a card is a card wherever it is)
     */
    targets: z.array(target).min(1).optional(),
    /**
     * schema-registry topics: the rule acts on the fields whose schema tags them with one of
     * these (Avro field attribute `confluent:tags`); without a detector or pattern on the
     * whole field
     */
    tags: z.array(z.string().min(1).max(128)).min(1).optional(),
    action,
  })
  .superRefine((r, ctx) => {
    if (r.detector && r.pattern) ctx.addIssue({ code: 'custom', path: ['pattern'], message: 'a rule has either a detector or a pattern, not both' });
    if (!r.detector && !r.pattern && !r.fields && !r.tags && r.action.type !== 'decrypt') ctx.addIssue({ code: 'custom', path: ['detector'], message: 'a rule needs a detector, a pattern, fields or tags' });
    if (r.tags && (r.fields || r.targets)) ctx.addIssue({ code: 'custom', path: ['tags'], message: 'a rule selecting fields by tags has no fields or targets: the schema says where it applies' });
    if (r.flags !== undefined && !r.pattern) ctx.addIssue({ code: 'custom', path: ['flags'], message: 'flags apply to a pattern' });
    if (r.pattern) {
      try {
        const ast = parsePattern(r.pattern, parseFlags(r.flags ?? ''));
        if (nullable(ast)) ctx.addIssue({ code: 'custom', path: ['pattern'], message: 'the pattern can match the empty string' });
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['pattern'], message: `not in the supported pattern subset: ${(err as Error).message}` });
      }
    }
    r.fields?.forEach((f, i) => {
      try {
        parseJsonPath(f);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['fields', i], message: (err as Error).message });
      }
    });
  });

const limits = z.strictObject({
  maxRecordBytes: byteSize.default(1024 * 1024),
  maxBatchBytes: byteSize.default(8 * 1024 * 1024),
});

const format = z.enum(['auto', 'json', 'text']);
/**
 * A value that should be JSON (format json, or auto and it starts with {, [ or ") and does
 * not parse: `scan` it as bytes with JSON escapes decoded (refused all the same when a rule
 * acting on whole fields is in force: it cannot apply to bytes), or `block` it.
 */
const malformedJson = z.enum(['scan', 'block']);

/**
 * Values written with a schema registry's framing (Avro): decoded with the writer schema so
 * rules act on schema fields, and written back with the same schema id.
 */
const topicSchema = z.strictObject({
  /**
   * confluent: magic byte 0 and a 4-byte schema id; apicurio: magic byte 0 and an 8-byte global
   * id; apicurio-header: the global id in the record header apicurio.value.globalId (Apicurio
   * serdes 2.x's default), the value holds only the body
   */
  framing: z.enum(['confluent', 'apicurio', 'apicurio-header']).default('confluent'),
  /** produce: every value must be framed with a schema the registry (or catalog) knows; others are refused per record */
  required: z.boolean().default(false),
  /** a framed value that does not decode, or whose schema cannot be had: refused (fail closed) or scanned as bytes */
  undecodable: z.enum(['refuse', 'scan']).default('refuse'),
  /** what a number field a rule changed becomes (a masked number is no number) */
  numbers: z.number().default(0),
  /**
   * produce: the value's schema must be registered under one of these subjects (`{topic}` is the
   * topic's name, e.g. "{topic}-value" for the topic name strategy); others are refused per
   * record. Without it any registered schema is accepted, including one without the tags a
   * tag rule relies on.
   */
  subjects: z.array(z.string().min(1).max(255)).min(1).optional(),
});

const topicInspection = z.strictObject({
  /** topic globs (`*` = any run of characters); the first entry that matches a topic wins */
  topics: z.array(z.string().min(1)).min(1),
  /** payload format; auto: JSON when the value starts with {, [ or " */
  format: format.optional(),
  /** overrides inspection.malformedJson for these topics */
  malformedJson: malformedJson.optional(),
  /** rule ids applied to record values before the broker receives them */
  produce: z.array(z.string()).default([]),
  /**
   * rules applied to records as a reader receives them, per reader role: the first entry
   * sharing a role with the reader wins, an entry without roles is the default; no
   * matching entry = records as stored
   */
  consume: z.array(z.strictObject({ roles: z.array(z.string().min(1)).min(1).optional(), rules: z.array(z.string()).default([]) })).default([]),
  /** overrides the global limits for these topics (produce side) */
  limits: limits.partial().optional(),
  /** the values are schema-registry values (needs a top-level `schemas` source) */
  schema: topicSchema.optional(),
});

const protectKey = z.strictObject({
  version: z.int().min(1).max(65535),
  /** a random secret of at least 32 characters (`openssl rand -base64 32`); keep it in the environment (${PROTECT_KEY_1}) or a file */
  secret: z.string().min(32, 'a protection secret needs at least 32 characters (openssl rand -base64 32)'),
});

const tokenKey = z.strictObject({
  version: z.int().min(1).max(1_000_000),
  /** HMAC key; keep it in the environment (${TOKEN_KEY}); at least 16 characters */
  secret: z.string().min(16, 'a tokenization secret needs at least 16 characters'),
});

export const inspectionSchema = z
  .strictObject({
    /** auto: small batches inline on the accept thread, large ones in the pool */
    mode: z.enum(['auto', 'inline', 'pool']).default('auto'),
    /** in auto mode, batches up to this many bytes are inspected inline */
    inlineMaxBytes: byteSize.default(64 * 1024),
    poolThreads: z.int().min(1).max(64).optional(),
    /** default payload format of topics that do not set one */
    format: format.default('auto'),
    /** what happens to a value that should be JSON and does not parse (topics may override) */
    malformedJson: malformedJson.default('scan'),
    /** keys for the tokenize action; tokens carry the version they were made with */
    tokenization: z
      .strictObject({
        keys: z.array(tokenKey).min(1),
        /** version used for new tokens (default: the highest) */
        active: z.int().optional(),
      })
      .optional(),
    /**
     * keys of the encrypt and decrypt actions: numbered versions, the active one encrypts
     * (default: the highest); a version left out is retired and what it wrote is unreadable
     */
    protection: z
      .strictObject({
        keys: z.array(protectKey).min(1).optional(),
        /** or a keyring file managed by `streamgate keys` (secrets wrapped by `kek`, which is kept elsewhere: the environment) */
        keyring: z.strictObject({ file: z.string().min(1), kek: z.string().min(32, 'the key-encryption key needs at least 32 characters (openssl rand -base64 32)') }).optional(),
        active: z.int().optional(),
        /** share of a key version's AES-GCM invocation limit (2^32) after which `streamgate keys status` says rotate */
        rotateAt: z.number().gt(0).max(1).default(0.5),
        /** data subjects' keys (encrypt rules with `subject`): this secret names subjects and wraps their keys in the state store */
        subjects: z.strictObject({ secret: z.string().min(32, 'the subjects secret needs at least 32 characters (openssl rand -base64 32)') }).optional(),
      })
      .transform((p, ctx) => {
        if ((p.keys === undefined) === (p.keyring === undefined)) {
          ctx.addIssue({ code: 'custom', message: 'protection has either keys or a keyring file' });
          return z.NEVER;
        }
        if (p.keys) return { ...p, keys: p.keys };
        try {
          const ring = readKeyring(p.keyring!.file, p.keyring!.kek);
          return { ...p, keys: ring.keys, active: p.active ?? ring.active };
        } catch (err) {
          ctx.addIssue({ code: 'custom', path: ['keyring', 'file'], message: (err as Error).message });
          return z.NEVER;
        }
      })
      .optional(),
    rules: z.array(inspectionRule).default([]),
    topics: z.array(topicInspection).default([]),
    limits: limits.prefault({}),
  })
  .superRefine((c, ctx) => {
    const ids = new Set<string>();
    c.rules.forEach((r, i) => {
      if (ids.has(r.id)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'id'], message: `duplicate rule id "${r.id}"` });
      ids.add(r.id);
      if (r.action.type === 'tokenize' && !c.tokenization) {
        ctx.addIssue({ code: 'custom', path: ['rules', i, 'action'], message: 'tokenize needs inspection.tokenization.keys' });
      }
    });
    checkProtection(c, ctx);
    const tagRules = new Set(c.rules.filter((r) => r.tags).map((r) => r.id));
    c.topics.forEach((t, i) => {
      const checkTags = (list: string[], path: Array<string | number>) => {
        const tagged = list.filter((id) => tagRules.has(id));
        if (tagged.length > 0 && !t.schema) ctx.addIssue({ code: 'custom', path, message: `rule "${tagged[0]}" selects fields by schema tags; these topics have no schema section` });
        if (tagged.length > 4) ctx.addIssue({ code: 'custom', path, message: 'at most 4 rules selecting by tags per topic entry and reader' });
      };
      checkTags(t.produce, ['topics', i, 'produce']);
      t.consume.forEach((entry, k) => checkTags(entry.rules, ['topics', i, 'consume', k, 'rules']));
      t.produce.forEach((id, j) => {
        if (!ids.has(id)) ctx.addIssue({ code: 'custom', path: ['topics', i, 'produce', j], message: `unknown rule "${id}"` });
      });
      t.consume.forEach((entry, k) =>
        entry.rules.forEach((id, j) => {
          if (!ids.has(id)) ctx.addIssue({ code: 'custom', path: ['topics', i, 'consume', k, 'rules', j], message: `unknown rule "${id}"` });
        }),
      );
    });
    const tk = c.tokenization;
    if (tk) {
      const versions = new Set<number>();
      tk.keys.forEach((k, i) => {
        if (versions.has(k.version)) ctx.addIssue({ code: 'custom', path: ['tokenization', 'keys', i, 'version'], message: `duplicate key version ${k.version}` });
        versions.add(k.version);
      });
      if (tk.active !== undefined && !versions.has(tk.active)) {
        ctx.addIssue({ code: 'custom', path: ['tokenization', 'active'], message: `no key with version ${tk.active}` });
      }
    }
  });

export type InspectionConfig = z.infer<typeof inspectionSchema>;
export type InspectionRuleConfig = InspectionConfig['rules'][number];
export type TopicEntryConfig = InspectionConfig['topics'][number];

interface InspectionInput {
  rules: Array<Pick<z.infer<typeof inspectionRule>, 'id' | 'detector' | 'pattern' | 'fields' | 'tags' | 'action'>>;
  protection?: { keys: Array<{ version: number }>; active?: number | undefined; subjects?: { secret: string } | undefined } | undefined;
}

/** The encrypt and decrypt rules agree with each other and the keyring. */
function checkProtection(c: InspectionInput, ctx: z.RefinementCtx): void {
  const versions = new Set<number>();
  c.protection?.keys.forEach((k, i) => {
    if (versions.has(k.version)) ctx.addIssue({ code: 'custom', path: ['protection', 'keys', i, 'version'], message: `duplicate key version ${k.version}` });
    versions.add(k.version);
  });
  if (c.protection?.active !== undefined && !versions.has(c.protection.active)) ctx.addIssue({ code: 'custom', path: ['protection', 'active'], message: `no key with version ${c.protection.active}` });
  const byId = new Map(c.rules.map((r) => [r.id, r]));
  c.rules.forEach((r, i) => {
    const a = r.action;
    const path = ['rules', i, 'action'];
    if ((a.type === 'encrypt' || a.type === 'decrypt') && !c.protection) ctx.addIssue({ code: 'custom', path, message: `${a.type} needs inspection.protection.keys` });
    if (a.type === 'encrypt' && a.format === 'preserve') {
      if (a.keyVersion === undefined) ctx.addIssue({ code: 'custom', path: [...path, 'keyVersion'], message: 'a preserve rule names its key version: an FF1 ciphertext has no room to say which key made it' });
      else if (c.protection && !versions.has(a.keyVersion)) ctx.addIssue({ code: 'custom', path: [...path, 'keyVersion'], message: `no protection key with version ${a.keyVersion}` });
      if (a.luhn && a.keepLast > 0) ctx.addIssue({ code: 'custom', path: [...path, 'luhn'], message: 'a Luhn check digit is recomputed from the encrypted digits: luhn and keepLast do not combine' });
    }
    if (a.type === 'encrypt' && a.subject !== undefined) {
      if (a.format !== 'envelope') ctx.addIssue({ code: 'custom', path: [...path, 'subject'], message: 'subject keys apply to format envelope' });
      if (c.protection && !c.protection.subjects) ctx.addIssue({ code: 'custom', path: [...path, 'subject'], message: 'subject needs inspection.protection.subjects.secret' });
      if (!r.fields) ctx.addIssue({ code: 'custom', path: ['rules', i], message: 'a rule with a data subject names the fields it encrypts (fields), so it never acts on keys or headers, which have no subject' });
    }
    if (a.type === 'encrypt' && a.format === 'envelope' && (a.keyVersion !== undefined || a.luhn || a.keepLast > 0 || a.keepFirst > 0)) {
      ctx.addIssue({ code: 'custom', path, message: 'keyVersion, luhn, keepFirst and keepLast apply to format preserve' });
    }
    if (a.type === 'decrypt') {
      const target = byId.get(a.rule);
      if (!target || target.action.type !== 'encrypt') return void ctx.addIssue({ code: 'custom', path: [...path, 'rule'], message: `"${a.rule}" is not an encrypt rule` });
      // an envelope is found by its shape; an FF1 ciphertext looks like the original
      if (target.action.format === 'preserve' && !r.detector && !r.pattern && !r.fields && !r.tags) {
        ctx.addIssue({ code: 'custom', path: ['rules', i], message: `"${a.rule}" keeps the values' shape, so this rule needs a detector, pattern, fields or tags to find them` });
      }
    }
  });
}
