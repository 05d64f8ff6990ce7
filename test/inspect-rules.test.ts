// Policy wiring: the inspection config, rule resolution per topic/side/role, and the
// Inspect control (blocking, fail-closed, consume side, audit summary).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ConfigError, parseConfig } from '../src/config/load.ts';
import { inspectionSchema, type InspectionConfig } from '../src/inspect/schema.ts';
import { RuleBook } from '../src/inspect/rules.ts';
import { Inspector } from '../src/inspect/inspector.ts';
import { Inspect } from '../src/controls/inspect.ts';
import { GatewayError, type Operation, type StreamRecord } from '../src/operation.ts';

const example = readFileSync(new URL('../streamgate.example.yaml', import.meta.url), 'utf8');
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | null) => (b === null ? null : new TextDecoder().decode(b));

function config(inspection: unknown): InspectionConfig {
  return inspectionSchema.parse(inspection);
}

const base = {
  tokenization: { keys: [{ version: 1, secret: 'test-secret-0123456789' }] },
  rules: [
    { id: 'card', detector: 'payment-card', action: { type: 'mask' } },
    { id: 'email', detector: 'email', action: { type: 'tokenize' } },
    { id: 'ssn', detector: 'us-ssn', action: { type: 'redact', replacement: '[ssn]' } },
    { id: 'keys', detector: 'pem-private-key', action: { type: 'block', reason: 'no keys here' } },
    { id: 'pw', fields: ['$..password'], action: { type: 'drop' } },
  ],
  topics: [
    {
      topics: ['pay.*'],
      format: 'json',
      produce: ['card', 'keys', 'pw'],
      consume: [{ roles: ['fraud'], rules: [] }, { roles: ['analyst', 'support'], rules: ['email', 'ssn'] }, { rules: ['card', 'email', 'ssn'] }],
      limits: { maxRecordBytes: 100 },
    },
    { topics: ['pay.ledger', 'logs'], produce: ['ssn'] },
  ],
};

test('the example config compiles: detectors, patterns, fields, tokenization, consume roles', () => {
  const c = parseConfig(example, 'example.yaml');
  const book = new RuleBook(c.inspection);
  assert.ok(book.program.stats.patterns >= 4);
  assert.deepEqual(book.rulesFor('payments.cards', 'produce')?.rules, ['pci.card-number']);
  assert.deepEqual(book.rulesFor('payments.cards', 'consume', ['analyst'])?.rules, ['pii.email']);
  assert.equal(book.rulesFor('payments.cards', 'consume', ['platform-admin']), null);
  assert.equal(book.rulesFor('orders', 'produce'), null);
});

test('config errors name the rule and the reason, with the file line', () => {
  const bad = (patch: (y: string) => string, why: RegExp) =>
    assert.throws(() => parseConfig(patch(example), 'gw.yaml'), (e: unknown) => e instanceof ConfigError && why.test(e.message), String(why));
  bad((y) => y.replace("pattern: 'INT-\\d{6}'", "pattern: '(a)\\1'"), /^gw\.yaml:\d+: inspection\.rules\[5\]\.pattern: not in the supported pattern subset: backreferences/m);
  bad((y) => y.replace("pattern: 'INT-\\d{6}'", "pattern: 'a*?'"), /lazy quantifiers are not supported/);
  bad((y) => y.replace('detector: us-ssn', 'detector: ssn'), /inspection\.rules\[1\]\.detector: .*expected one of/);
  bad((y) => y.replace('fields: ["$..password"]', 'fields: ["password"]'), /fields\[0\]: "password": a field path starts with "\$"/);
  bad((y) => y.replace('roles: [platform-admin]    # reads', 'roles: [fraud]    # reads'), /inspection\.topics\[0\]\.consume\[0\]\.roles: unknown role "fraud"/);
  bad((y) => y.replace('rules: [pii.email]', 'rules: [pii.nope]'), /unknown rule "pii\.nope"/);
  bad((y) => y.replace('replacement: "***-**-****"', 'replacement: "say \\"hi\\""'), /no double quote/);
  bad((y) => y.replace(/ {2}tokenization:\n(.*\n){5}/, ''), /tokenize needs inspection\.tokenization\.keys/);
  bad((y) => y.replace('${STREAMGATE_TOKEN_KEY_V1:-dev-only-tokenization-key-change-me}', 'short'), /at least 16 characters/);
});

test('rulesFor: first matching topic entry, produce list, consume by role with a default, cached', () => {
  const book = new RuleBook(config(base));
  assert.deepEqual(book.rulesFor('pay.cards', 'produce')?.rules, ['card', 'keys', 'pw']);
  assert.deepEqual(book.rulesFor('pay.ledger', 'produce')?.rules, ['card', 'keys', 'pw'], 'the first entry wins');
  assert.deepEqual(book.rulesFor('logs', 'produce')?.rules, ['ssn']);
  assert.equal(book.rulesFor('logs', 'consume', ['analyst']), null, 'no consume entries: records as stored');
  assert.equal(book.rulesFor('other', 'produce'), null);
  assert.equal(book.rulesFor('pay.cards', 'consume', ['fraud']), null, 'fraud reads raw');
  assert.equal(book.rulesFor('pay.cards', 'consume', ['analyst', 'fraud']), null, 'the first entry sharing a role wins');
  assert.deepEqual(book.rulesFor('pay.cards', 'consume', ['support'])?.rules, ['email', 'ssn']);
  assert.deepEqual(book.rulesFor('pay.cards', 'consume', ['intern'])?.rules, ['card', 'email', 'ssn'], 'everyone else: the default entry');
  assert.deepEqual(book.rulesFor('pay.cards', 'consume', [])?.rules, ['card', 'email', 'ssn']);
  assert.equal(book.rulesFor('pay.cards', 'consume', ['support']), book.rulesFor('pay.cards', 'consume', ['support']), 'cached');
  assert.deepEqual(book.limitsFor('pay.x'), { maxRecordBytes: 100, maxBatchBytes: 8 * 1024 * 1024 });
  assert.deepEqual(book.limitsFor('logs'), { maxRecordBytes: 1024 * 1024, maxBatchBytes: 8 * 1024 * 1024 });
});

// ---- the control ----

function op(action: 'produce' | 'consume', topic: string, values: Array<string | null>, roles: string[] = []): Operation {
  return {
    id: 'op', receivedAt: 0, startedAt: 0, protocol: 'http', action, meta: {},
    session: { id: 's', protocol: 'http', client: { address: '127.0.0.1' }, startedAt: 0 },
    resource: { kind: 'topic', name: topic },
    identity: { subject: 'u', issuer: 'i', roles, groups: [], claims: {} },
    records: values.map((v): StreamRecord => ({ key: null, value: v === null ? null : enc(v), headers: [] })),
  };
}

const cfg = config({ ...base, mode: 'inline' });
const book = new RuleBook(cfg);
const inspector = new Inspector(cfg, book.program);
after(() => inspector.close());
const control = new Inspect(inspector, () => book, () => cfg.limits);

async function through(o: Operation): Promise<{ forwarded: Operation | null; error: unknown }> {
  let forwarded: Operation | null = null;
  try {
    await control.handle(o, async (x) => { forwarded = x; return {}; });
    return { forwarded, error: null };
  } catch (error) {
    return { forwarded, error };
  }
}

test('produce: records are rewritten before the upstream, the audit summary counts rule ids', async () => {
  const o = op('produce', 'pay.cards', ['{"c":"4111 1111 1111 1111","password":"x"}', null, '{"n":1}']);
  const { forwarded, error } = await through(o);
  assert.equal(error, null);
  assert.ok(forwarded);
  assert.deepEqual(o.records!.map((r) => dec(r.value)), ['{"c":"**** **** **** 1111"}', null, '{"n":1}']);
  assert.deepEqual(o.inspection?.masking, { card: 1, pw: 1 });
  assert.equal(o.inspection?.where, 'inline');
  assert.equal(o.inspection?.hashes.length, 3);
  assert.equal(o.inspection?.maskedHashes.filter((h) => h !== null).length, 1);
});

test('a blocked record refuses the whole operation with the rule id, nothing is forwarded', async () => {
  const o = op('produce', 'pay.cards', ['{"ok":1}', '{"k":"-----BEGIN PRIVATE KEY-----\\nMIIB\\n-----END PRIVATE KEY-----"}']);
  const { forwarded, error } = await through(o);
  assert.equal(forwarded, null);
  assert.ok(error instanceof GatewayError);
  assert.equal(error.kind, 'blocked');
  assert.equal(error.rule, 'keys');
  assert.match(error.message, /record 1 was blocked by inspection rule "keys": no keys here/);
  assert.equal(o.inspection?.hashes.length, 2, 'the audit row still gets the hashes');
});

test('size limits per topic are enforced before inspection', async () => {
  const { error } = await through(op('produce', 'pay.cards', ['x'.repeat(101)]));
  assert.ok(error instanceof GatewayError && error.kind === 'too-large' && error.rule === 'limits.maxRecordBytes');
});

test('consume: records a listener fetched are masked per reader role', async () => {
  const stored = '{"card":"4111111111111111","mail":"ann@example.com","ssn":"123-45-6789"}';
  const read = async (roles: string[]) => {
    const o = op('consume', 'pay.cards', [stored], roles);
    const { error } = await through(o);
    assert.equal(error, null);
    return JSON.parse(dec(o.records![0]!.value)!) as Record<string, string>;
  };
  assert.deepEqual(await read(['fraud']), JSON.parse(stored));
  const analyst = await read(['analyst']);
  assert.equal(analyst.card, '4111111111111111');
  assert.match(analyst.mail!, /^tok_v1_[\w-]{22}$/);
  assert.equal(analyst.ssn, '[ssn]');
  const other = await read(['intern']);
  assert.equal(other.card, '************1111');
});

test('malformed JSON is noted in the audit summary; refused where a whole-value field rule is in force', async () => {
  // pay.* drops "$..password" fields: a value that does not parse could hide one (fail closed)
  const o = op('produce', 'pay.cards', ['{"c":"4111111111111111"', '{"ok":true}']);
  const { forwarded, error } = await through(o);
  assert.equal(forwarded, null);
  assert.ok(error instanceof GatewayError && error.kind === 'blocked' && error.rule === 'inspection.malformedJson', String(error));
  assert.match(error.message, /^record 0 was blocked by inspection rule "inspection\.malformedJson": the value is not valid JSON/);
  assert.deepEqual(o.inspection?.notes, ['json-fallback:1']);
  // logs has detectors only: the value is scanned as bytes
  const logs = op('produce', 'logs', ['{"s":"123-45-6789"', '{"ok":true}']);
  assert.equal((await through(logs)).error, null);
  assert.deepEqual(logs.inspection?.notes, ['json-fallback:1']);
  assert.equal(dec(logs.records![0]!.value), '{"s":"[ssn]"');
});

test('fail closed: an inspection failure refuses the write and never forwards raw bytes', async () => {
  const broken = new Inspect({ inspect: async () => { throw new GatewayError('internal', 'inspection failed; the records were not forwarded'); } } as unknown as Inspector, () => book, () => cfg.limits);
  const o = op('produce', 'pay.cards', ['{"c":"4111111111111111"}']);
  let forwarded = false;
  await assert.rejects(broken.handle(o, async () => { forwarded = true; return {}; }), (e: unknown) => e instanceof GatewayError && e.kind === 'internal');
  assert.equal(forwarded, false);
  // and the real inspector turns an engine error into the same refusal
  const badRuleset = new Inspector(cfg, book.program);
  await assert.rejects(badRuleset.inspect([enc('x')], 999), (e: unknown) => e instanceof GatewayError && e.kind === 'internal' && /not forwarded/.test(e.message));
  await badRuleset.close();
});

test('pool mode: requests of one event-loop turn share one task, each gets its own result', async () => {
  const pcfg = config({ ...base, mode: 'pool', poolThreads: 1 });
  const pbook = new RuleBook(pcfg);
  const pool = new Inspector(pcfg, pbook.program);
  try {
    await pool.warmUp();
    const produce = pbook.rulesFor('pay.cards', 'produce')!.ruleset;
    const consume = pbook.rulesFor('pay.cards', 'consume', ['analyst'])!.ruleset;
    const value = enc('{"c":"4111111111111111","m":"ann@example.com","password":"p"}');
    const [a, b, c] = await Promise.all([pool.inspect([value, null], produce), pool.inspect([value], consume), pool.inspect([], produce)]);
    assert.equal(a.where, 'pool');
    assert.deepEqual(a.result.values.map(dec), ['{"c":"************1111","m":"ann@example.com"}', null]);
    assert.deepEqual(Array.from(a.result.hits).map((r) => pbook.ruleId(r)), ['card', 'pw']);
    assert.match(dec(b.result.values[0]!)!, /"m":"tok_v1_[\w-]{22}","password":"p"/);
    assert.deepEqual(Array.from(b.result.hits).map((r) => pbook.ruleId(r)), ['email']);
    assert.equal(c.result.values.length, 0);
  } finally {
    await pool.close();
  }
});
