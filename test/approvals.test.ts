import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Producer, stringSerializers, type SASLOptions } from '@platformatic/kafka';
import { Agent, request } from 'undici';
import { stringify } from 'yaml';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig, type ConfigInput } from './helpers/config.ts';
import { api, cli, pendingFor, rule, sleep, type Listed } from './helpers/approvals.ts';
import type { Gateway } from '../src/gateway.ts';
import { ApprovalRules } from '../src/approvals/rules.ts';
import { parseConfig } from '../src/config/load.ts';

// Integration: approval rules on one gateway (memory state) in front of the real Kafka
// broker, real OIDC tokens; approvers use the admin API and the real CLI process.
// alice (payments-writer) requests, ops (approver, platform-admin) decides, bob (analyst) may not.

const run = `${process.pid}-${Date.now() % 100000}`;
const KAFKA_TOPIC = `payouts.kafka-${run}`;
const SELF_TOPIC = `payouts.kafka-self-${run}`;
const HTTP_TOPIC = `payouts.http-${run}`;
const ASYNC_TOPIC = `payouts.async-${run}`;
const DENY_TOPIC = `payouts.deny-${run}`;
const EXPIRE_TOPIC = `payouts.expire-${run}`;
const GONE_TOPIC = `payouts.gone-${run}`;
const GRANT_TTL_MS = 4000;

let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let adminUrl: string;
let httpUrl: string;
let bootstrap: string;
let webhook: Server;
const hooks: Array<Record<string, unknown>> = [];

before(async () => {
  infra = await getInfra();
  await createTopics(infra.kafka, [KAFKA_TOPIC, SELF_TOPIC, HTTP_TOPIC, ASYNC_TOPIC, DENY_TOPIC, EXPIRE_TOPIC, GONE_TOPIC]);
  // the webhook receiver fails its first call: the gateway must retry
  let calls = 0;
  webhook = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (calls++ === 0) return void res.writeHead(503).end();
      hooks.push(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
  const made = testConfig(infra);
  spoolDir = made.spoolDir;
  const config = made.config;
  config.policy.approvals = [
    rule('kafka-writes', ['payouts.kafka-*'], { requesters: ['payments-writer', 'platform-admin'], grantTtl: GRANT_TTL_MS, maxWait: 1500 }),
    rule('expiring', [EXPIRE_TOPIC], { maxWait: 800, expiresAfter: 800 }),
    rule('http-writes', ['payouts.*'], { requesters: ['payments-writer'] }),
  ];
  config.approvals = { ...config.approvals, sweepIntervalMs: 200, webhook: { url: `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/hook`, timeoutMs: 2000, attempts: 3, headers: { 'x-test': 'yes' } } };
  gateway = await startGateway(config);
  adminUrl = `http://127.0.0.1:${gateway.addresses.admin!.port}`;
  httpUrl = `http://127.0.0.1:${gateway.addresses.http!.port}/v3/clusters/local/topics`;
  bootstrap = `127.0.0.1:${gateway.addresses.kafka!.port}`;
});

after(() => new Promise<void>((r) => webhook.close(() => r())));

const oauth = async (who: string): Promise<SASLOptions> => ({ mechanism: 'OAUTHBEARER', token: await infra.idp.token(who) });

async function kafkaProduce(who: string, topic: string, value: string): Promise<{ ok: true } | { ok: false; code: string; message: string }> {
  const producer = new Producer({ clientId: `${who}-approvals`, bootstrapBrokers: [bootstrap], sasl: await oauth(who), serializers: stringSerializers, retries: 0 });
  try {
    await producer.send({ messages: [{ topic, value }] });
    return { ok: true };
  } catch (err) {
    type Leaf = { apiId?: string; serverErrorMessage?: string; errors?: Leaf[] };
    const leaves: Leaf[] = [];
    const walk = (e: Leaf) => (e.errors?.length ? e.errors.forEach(walk) : leaves.push(e));
    walk(err as Leaf);
    const leaf = leaves.find((l) => l.apiId) ?? {};
    return { ok: false, code: leaf.apiId ?? String(err), message: leaf.serverErrorMessage ?? '' };
  } finally {
    await producer.close();
  }
}

async function httpProduce(who: string, topic: string, value: unknown, headers: Record<string, string> = {}) {
  const res = await request(`${httpUrl}/${topic}/records`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await infra.idp.token(who)}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ value: { type: 'JSON', data: value } }),
  });
  return { status: res.statusCode, headers: res.headers, json: (await res.body.json()) as Record<string, unknown> };
}

test('unit: rules match by action, resource glob and requester role; config refuses unknown approver roles', () => {
  const rules = new ApprovalRules([rule('a', ['payouts.*'], { requesters: ['writer'] }), { ...rule('b', [], { actions: ['admin'] }), topics: undefined, cluster: true }]);
  const who = (roles: string[]) => ({ subject: 's', issuer: 'i', roles, groups: [], claims: {} });
  assert.equal(rules.match(who(['writer']), 'produce', { kind: 'topic', name: 'payouts.x' })?.id, 'a');
  assert.equal(rules.match(who(['reader']), 'produce', { kind: 'topic', name: 'payouts.x' }), undefined, 'not a requester of the rule');
  assert.equal(rules.match(who(['writer']), 'consume', { kind: 'topic', name: 'payouts.x' }), undefined);
  assert.equal(rules.match(who(['writer']), 'produce', { kind: 'topic', name: 'orders' }), undefined);
  assert.equal(rules.match(who([]), 'admin', { kind: 'cluster', name: 'kafka' })?.id, 'b');
  type RuleInput = NonNullable<ConfigInput['policy']['approvals']>[number];
  const withRule = (edit: Partial<RuleInput>) => {
    const config: ConfigInput = {
      listeners: { http: { port: 0 } },
      upstream: { kind: 'ack' },
      identity: { issuers: [{ issuer: 'http://x', audience: 'a' }] },
      policy: { roles: { r: { when: { groups: ['g'] } } }, approvals: [{ id: 'x', actions: ['produce'], topics: ['t'], approvers: ['nobody'], maxWait: '30s', grantTtl: '1h', ...edit }] },
    };
    return parseConfig(stringify(config), 'a.yaml');
  };
  assert.throws(() => withRule({}), /policy\.approvals\[0\]\.approvers: unknown role "nobody"/);
  const ok = withRule({ approvers: ['r'] });
  assert.deepEqual([ok.policy.approvals![0]!.maxWait, ok.policy.approvals![0]!.grantTtl], [30_000, 3_600_000]);
  assert.throws(() => withRule({ approvers: ['r'], maxWait: '2h' }), /expiresAfter must not be shorter than maxWait/);
});

test('Kafka: a write beyond the baseline is refused naming the approval; approved by CLI it goes through; after the grant expires it is refused again', async () => {
  const first = await kafkaProduce('alice', KAFKA_TOPIC, 'payout-1');
  assert.equal(first.ok, false);
  assert.ok(!first.ok);
  assert.equal(first.code, 'TOPIC_AUTHORIZATION_FAILED');
  const m = /approval ([0-9a-f-]{36}) is pending at (http:\/\/\S+\/v1\/approvals\/[0-9a-f-]{36})/.exec(first.message);
  assert.ok(m, `the error names the approval: ${first.message}`);
  const id = m[1]!;
  assert.equal(m[2], `${adminUrl}/v1/approvals/${id}`);

  const ops = await infra.idp.token('ops');
  const listed = await cli(['approvals', 'list', '--token', ops, '--admin-url', adminUrl]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, new RegExp(`${id}\\s+pending\\s+alice produce topic:${KAFKA_TOPIC.replace(/\./g, '\\.')}`));

  // bob holds no approver role
  const bobTry = await cli(['approvals', 'approve', id, '--token', await infra.idp.token('bob'), '--admin-url', adminUrl]);
  assert.notEqual(bobTry.code, 0);
  assert.match(bobTry.stderr, /HTTP 403: bob holds none of the approver roles/);

  const approved = await cli(['approvals', 'approve', id, '--reason', 'quarterly payout run', '--token', ops, '--admin-url', adminUrl]);
  assert.equal(approved.code, 0, approved.stderr);
  assert.match(approved.stdout, new RegExp(`approved ${id}: alice may produce ${KAFKA_TOPIC.replace(/\./g, '\\.')} until`));

  const second = await kafkaProduce('alice', KAFKA_TOPIC, 'payout-2');
  assert.deepEqual(second, { ok: true });
  const onBroker = await readTopic(infra.kafka, KAFKA_TOPIC, 1);
  assert.deepEqual(onBroker.map((r) => r.value), ['payout-2'], 'only the approved write reached the broker');

  const shown = await api(adminUrl, ops, 'GET', `/v1/approvals/${id}`);
  const grantEnds = (shown.json as unknown as Listed).grantExpiresAt!;
  await sleep(Math.max(0, grantEnds - Date.now()) + 300);
  const third = await kafkaProduce('alice', KAFKA_TOPIC, 'payout-3');
  assert.ok(!third.ok);
  assert.equal(third.code, 'TOPIC_AUTHORIZATION_FAILED');
  const again = /approval ([0-9a-f-]{36}) is pending/.exec(third.message);
  assert.ok(again && again[1] !== id, 'after the grant expired a new approval is needed');

  const rows = readAudit(spoolDir).filter((r) => r.resource === KAFKA_TOPIC);
  const ops2 = rows.filter((r) => r.event === 'operation' && r.action === 'produce');
  assert.ok(ops2.some((r) => r.decision === 'deny' && r.approval_id === id && r.meta.approval_outcome === 'pending' && r.meta.baseline === 'beyond'));
  assert.ok(ops2.some((r) => r.decision === 'allow' && r.approval_id === id && r.rule === 'approval:kafka-writes' && r.offsets.length === 1), 'the approved write carries the grant id');
  const requested = rows.find((r) => r.event === 'approval-request' && r.approval_id === id)!;
  assert.equal(requested.subject, 'alice');
  assert.equal(requested.decision, 'pending');
  assert.equal(requested.client_id, 'alice-approvals');
  assert.match(requested.meta.sample_hash!, /^[0-9a-f]{64}$/);
  const decisions = rows.filter((r) => r.event === 'approval-decision' && r.approval_id === id);
  assert.ok(decisions.some((r) => r.subject === 'ops' && r.decision === 'allow' && r.meta.step === 'approved' && r.message === 'quarterly payout run' && r.meta.requester === 'alice'));
  assert.ok(decisions.some((r) => r.subject === 'bob' && r.decision === 'deny' && r.meta.step === 'not-approver'));
});

test('Kafka: an approver cannot approve their own request (refused, audited); another approver can', async () => {
  const held = await kafkaProduce('ops', SELF_TOPIC, 'self');
  assert.ok(!held.ok);
  const id = /approval ([0-9a-f-]{36})/.exec(held.message)![1]!;
  const ops = await infra.idp.token('ops');
  const self = await cli(['approvals', 'approve', id, '--token', ops, '--admin-url', adminUrl]);
  assert.notEqual(self.code, 0);
  assert.match(self.stderr, /HTTP 403: ops may not approve their own request/);
  const still = await api(adminUrl, ops, 'GET', `/v1/approvals/${id}`);
  assert.equal(still.json.status, 'pending');
  assert.equal(still.json.canDecide, false);
  const row = readAudit(spoolDir).find((r) => r.event === 'approval-decision' && r.approval_id === id);
  assert.ok(row);
  assert.equal(row.subject, 'ops');
  assert.equal(row.reason, 'self-approval');
  assert.equal(row.meta.step, 'self-approval');

  const carol = await cli(['approvals', 'approve', id, '--token', await infra.idp.token('carol'), '--admin-url', adminUrl]);
  assert.equal(carol.code, 0, carol.stderr);
  assert.deepEqual(await kafkaProduce('ops', SELF_TOPIC, 'self-2'), { ok: true });
});

test('HTTP: a held request is released by an approval; concurrent identical requests share it; the webhook is told', async () => {
  const value = { payout: 1, to: 'DE89370400440532013000' };
  const justification = 'refund for ticket 4711';
  const writes = [httpProduce('alice', HTTP_TOPIC, value, { 'x-streamgate-justification': justification }), httpProduce('alice', HTTP_TOPIC, value)];
  const ops = await infra.idp.token('ops');
  const pending = await pendingFor(adminUrl, ops, HTTP_TOPIC);
  assert.equal(pending.subject, 'alice');
  assert.equal(pending.protocol, 'http');
  assert.equal(pending.canDecide, true);
  assert.equal(pending.sampleHash, createHash('sha256').update(JSON.stringify(value)).digest('hex'));
  // both writes are held on the one request (the second may arrive first: its justification is then empty)
  await sleep(300);
  const all = await api(adminUrl, ops, 'GET', '/v1/approvals?status=pending');
  assert.equal((all.json.approvals as Listed[]).filter((a) => a.resource.name === HTTP_TOPIC).length, 1);
  const decided = await api(adminUrl, ops, 'POST', `/v1/approvals/${pending.id}/approve`, { reason: 'ok' });
  assert.equal(decided.status, 200);
  const results = await Promise.all(writes);
  for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal((await readTopic(infra.kafka, HTTP_TOPIC, 2)).length, 2);
  const rows = readAudit(spoolDir).filter((r) => r.event === 'operation' && r.resource === HTTP_TOPIC);
  assert.equal(rows.filter((r) => r.decision === 'allow' && r.approval_id === pending.id && r.meta.approval_outcome === 'released').length, 2);
  const req = readAudit(spoolDir).filter((r) => r.event === 'approval-request' && r.resource === HTTP_TOPIC);
  assert.equal(req.length, 1, 'one approval request for the two identical writes');
  // webhook: retried after a 503, body names the request
  const deadline = Date.now() + 10_000;
  while (!hooks.some((h) => (h.approval as Listed).id === pending.id) && Date.now() < deadline) await sleep(100);
  const hook = hooks.find((h) => (h.approval as Listed).id === pending.id);
  assert.ok(hook, 'the webhook received the new request');
  assert.equal(hook.type, 'approval.requested');
  assert.equal((hook.approval as Listed).url, `${adminUrl}/v1/approvals/${pending.id}`);
});

test('HTTP: Prefer: respond-async answers 202 with the status URL; a denial is final and refuses the held write', async () => {
  const accepted = await httpProduce('alice', ASYNC_TOPIC, { n: 1 }, { prefer: 'respond-async' });
  assert.equal(accepted.status, 202);
  const location = accepted.headers.location as string;
  assert.match(location, /\/v1\/approvals\/[0-9a-f-]{36}$/);
  const alice = await infra.idp.token('alice');
  const status = await request(location, { headers: { authorization: `Bearer ${alice}` } });
  const shown = (await status.body.json()) as Listed;
  assert.equal(status.statusCode, 200, 'the requester may read their own request');
  assert.equal(shown.status, 'pending');
  assert.equal(shown.canDecide, false);
  const mallory = await api(adminUrl, await infra.idp.token('mallory'), 'GET', new URL(location).pathname);
  assert.equal(mallory.status, 404, 'others do not see it');
  const anonymous = await request(location);
  assert.equal(anonymous.statusCode, 401);
  await anonymous.body.dump();

  // a synchronous write waits; the denial refuses it with the reason
  const held = httpProduce('alice', DENY_TOPIC, { n: 2 });
  const ops = await infra.idp.token('ops');
  const pending = await pendingFor(adminUrl, ops, DENY_TOPIC);
  const noReason = await api(adminUrl, ops, 'POST', `/v1/approvals/${pending.id}/deny`, {});
  assert.equal(noReason.status, 400);
  const denied = await api(adminUrl, ops, 'POST', `/v1/approvals/${pending.id}/deny`, { reason: 'not in the change window' });
  assert.equal(denied.status, 200);
  const refused = await held;
  assert.equal(refused.status, 403);
  assert.match(refused.json.message as string, /was denied by ops \(not in the change window\)/);
  assert.deepEqual(refused.json.approval, { id: pending.id, url: `${adminUrl}/v1/approvals/${pending.id}`, status: 'denied' });
  const late = await api(adminUrl, ops, 'POST', `/v1/approvals/${pending.id}/approve`, {});
  assert.equal(late.status, 409, 'a decided request cannot be decided again');
  assert.equal((await readTopic(infra.kafka, DENY_TOPIC, 1, 2000)).length, 0);
});

test('HTTP: a request nobody decides expires by itself (audited once) and the held write is refused', async () => {
  const res = await httpProduce('alice', EXPIRE_TOPIC, { n: 3 });
  assert.equal(res.status, 403);
  assert.match(res.json.message as string, /expired without a decision|is pending/);
  const id = (res.json.approval as { id: string }).id;
  const deadline = Date.now() + 10_000;
  let shown;
  do {
    shown = await api(adminUrl, await infra.idp.token('ops'), 'GET', `/v1/approvals/${id}`);
    if (shown.json.status === 'expired') break;
    await sleep(100);
  } while (Date.now() < deadline);
  assert.equal(shown.json.status, 'expired');
  while (!readAudit(spoolDir).some((r) => r.approval_id === id && r.meta.step === 'expired') && Date.now() < deadline) await sleep(100);
  assert.equal(readAudit(spoolDir).filter((r) => r.approval_id === id && r.meta.step === 'expired').length, 1);
});

test('HTTP: a client that hangs up while held is dropped: a later approval does not write its record', async () => {
  const abort = new AbortController();
  // its own connection pool, destroyed below: after an abort undici opens a spare connection that
  // would hold the gateway's graceful close until the header timeout
  const agent = new Agent();
  const held = request(`${httpUrl}/${GONE_TOPIC}/records`, {
    dispatcher: agent,
    method: 'POST',
    headers: { authorization: `Bearer ${await infra.idp.token('alice')}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value: { type: 'JSON', data: { n: 4 } } }),
    signal: abort.signal,
  }).catch((err: unknown) => err);
  const ops = await infra.idp.token('ops');
  const pending = await pendingFor(adminUrl, ops, GONE_TOPIC);
  abort.abort();
  await held;
  await agent.destroy();
  const deadline = Date.now() + 10_000;
  const dropped = () => readAudit(spoolDir).find((r) => r.event === 'operation' && r.resource === GONE_TOPIC && r.meta.approval_outcome === 'client-gone');
  while (!dropped() && Date.now() < deadline) await sleep(100);
  assert.equal(dropped()?.decision, 'deny');
  assert.equal((await api(adminUrl, ops, 'POST', `/v1/approvals/${pending.id}/approve`, {})).status, 200);
  assert.equal((await readTopic(infra.kafka, GONE_TOPIC, 1, 2000)).length, 0, 'nothing was written for the client that left');
});

test('approval rules reload with the policy: a write refused by default waits once a rule covers it', async () => {
  const topic = `analytics.reload-${run}`;
  const before = await httpProduce('alice', topic, { n: 5 });
  assert.equal(before.status, 403);
  assert.equal(before.json.rule, 'default-deny');
  const original = gateway.config;
  const next = { ...original, policy: { ...original.policy, approvals: [...(original.policy.approvals ?? []), rule('reloaded', ['analytics.reload-*'], { maxWait: 300 })] } };
  assert.deepEqual((await gateway.reload(next)).applied, ['policy']);
  const held = await httpProduce('alice', topic, { n: 6 });
  assert.equal(held.status, 403);
  assert.equal(held.json.rule, 'approval:reloaded');
  assert.equal((held.json.approval as { status: string }).status, 'pending');
  await gateway.reload(original);
  assert.equal((await httpProduce('alice', topic, { n: 7 })).json.rule, 'default-deny');
});

test('approval metrics: steps by kind', async () => {
  const res = await request(`${adminUrl}/metrics`);
  const text = await res.body.text();
  const count = (step: string) => Number(new RegExp(`^streamgate_approval_steps_total\\{step="${step}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  assert.ok(count('requested') >= 6, text.slice(0, 200));
  assert.ok(count('approved') >= 3);
  assert.ok(count('denied') >= 1);
  assert.ok(count('self-approval') >= 1);
  assert.ok(count('expired') >= 1);
  assert.match(text, /^streamgate_approval_held_operations 0$/m);
});

test('the approvals page is served with a strict CSP and no inline script', async () => {
  const res = await request(`${adminUrl}/approvals`);
  const html = await res.body.text();
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-security-policy']), /default-src 'none'; script-src 'self'/);
  assert.ok(!/<script>/.test(html) && !/ on[a-z]+=/.test(html), 'no inline script or handlers');
  const js = await request(`${adminUrl}/approvals/app.js`);
  assert.equal(js.statusCode, 200);
  assert.ok(!(await js.body.text()).includes('innerHTML'), 'request fields are set as text');
});
