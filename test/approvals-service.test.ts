import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../src/log.ts';
import { MemoryStore } from '../src/state/store.ts';
import { ApprovalRules } from '../src/approvals/rules.ts';
import { ApprovalApiError, ApprovalService } from '../src/approvals/service.ts';
import type { AuditRow } from '../src/audit/row.ts';
import type { Identity, Operation } from '../src/operation.ts';
import { rule } from './helpers/approvals.ts';

// The workflow on the in-memory store: no services needed.

const who = (subject: string, roles: string[]): Identity => ({ subject, issuer: 'https://idp', roles, groups: [], claims: {} });
const alice = who('alice', ['writer']);
const carol = who('carol', ['approver']);
const dave = who('dave', ['approver']);

function op(identity: Identity, topic: string): Operation {
  return {
    id: 'op',
    receivedAt: Date.now(),
    startedAt: performance.now(),
    session: { id: 's', protocol: 'http', client: { address: '127.0.0.1' }, startedAt: Date.now() },
    protocol: 'http',
    action: 'produce',
    resource: { kind: 'topic', name: topic },
    identity,
    meta: { justification: 'because' },
  };
}

function service(rules = [rule('r', ['t.*'], { grantTtl: 60_000 })]) {
  const rows: Array<{ event: string; fields: Partial<AuditRow> }> = [];
  const s = new ApprovalService({
    store: new MemoryStore(),
    rules: () => new ApprovalRules(rules),
    config: () => ({ sweepIntervalMs: 20 }),
    baseUrl: () => 'http://admin:9644',
    instance: 'test',
    record: (event, fields) => {
      rows.push({ event, fields });
      return Promise.resolve();
    },
    log: createLogger('silent'),
  });
  return { s, rows, rule: rules[0]! };
}

test('concurrent identical operations share one request; a different resource gets its own', async () => {
  const { s, rows, rule: r } = service();
  await s.start();
  const opened = await Promise.all([s.open(op(alice, 't.a'), r, 'h'), s.open(op(alice, 't.a'), r, 'h'), s.open(op(alice, 't.a'), r, 'h')]);
  assert.equal(new Set(opened.map((o) => o.request.id)).size, 1);
  assert.deepEqual(opened.map((o) => o.created).sort(), [false, false, true]);
  const other = await s.open(op(alice, 't.b'), r, 'h');
  assert.notEqual(other.request.id, opened[0]!.request.id);
  assert.equal(rows.filter((x) => x.event === 'approval-request').length, 2);
  assert.equal(opened[0]!.request.justification, 'because');
  assert.equal(s.url(other.request.id), `http://admin:9644/v1/approvals/${other.request.id}`);
  await s.close();
});

test('the first decision wins; a waiter is woken by it; the grant covers the subject, action and resource only', async () => {
  const { s, rule: r } = service();
  await s.start();
  const { request } = await s.open(op(alice, 't.a'), r, 'h');
  const waiting = s.waitForDecision(request.id, 60_000);
  const [approve, deny] = await Promise.allSettled([s.decide(request.id, carol, 'approve', 'ok'), s.decide(request.id, dave, 'deny', 'no')]);
  assert.equal(approve.status, 'fulfilled');
  assert.equal(deny.status, 'rejected');
  assert.equal(((deny as PromiseRejectedResult).reason as ApprovalApiError).status, 409);
  assert.equal((await waiting)?.status, 'approved');
  const grant = await s.activeGrant(alice, 'produce', { kind: 'topic', name: 't.a' });
  assert.equal(grant?.id, request.id);
  assert.equal(grant?.approvedBy, 'carol');
  assert.equal(await s.activeGrant(alice, 'produce', { kind: 'topic', name: 't.b' }), undefined);
  assert.equal(await s.activeGrant(alice, 'consume', { kind: 'topic', name: 't.a' }), undefined);
  assert.equal(await s.activeGrant(who('alice', ['writer']), 'produce', { kind: 'topic', name: 't.a' }).then((g) => g?.id), request.id);
  assert.equal(await s.activeGrant({ ...alice, issuer: 'https://other-idp' }, 'produce', { kind: 'topic', name: 't.a' }), undefined, 'the same name from another issuer is someone else');
  // decided: a new operation opens a new request
  const again = await s.open(op(alice, 't.a'), r, 'h');
  assert.notEqual(again.request.id, request.id);
  await s.close();
});

test('grantScope rule: one approval covers every resource of the rule, only for that subject and action', async () => {
  const r = rule('r', ['t.*'], { grantScope: 'rule' });
  const { s } = service([r]);
  await s.start();
  const { request } = await s.open(op(alice, 't.a'), r, 'h');
  await s.decide(request.id, carol, 'approve', '');
  assert.equal((await s.activeGrant(alice, 'produce', { kind: 'topic', name: 't.zzz' }, r))?.id, request.id);
  assert.equal(await s.activeGrant(alice, 'produce', { kind: 'topic', name: 't.zzz' }, { ...r, grantScope: 'resource' }), undefined, 'a resource-scoped lookup does not see it');
  assert.equal(await s.activeGrant(who('bob', ['writer']), 'produce', { kind: 'topic', name: 't.a' }, r), undefined);
  await s.close();
});

test('refusals: not an approver, own request, unknown id; each audited where a request exists', async () => {
  const { s, rows, rule: r } = service([rule('r', ['t.*'], { approvers: ['approver'] })]);
  await s.start();
  const { request } = await s.open(op(carol, 't.a'), r, 'h');
  await assert.rejects(s.decide(request.id, alice, 'approve', ''), (e: ApprovalApiError) => e.status === 403 && /none of the approver roles/.test(e.message));
  await assert.rejects(s.decide(request.id, carol, 'approve', ''), (e: ApprovalApiError) => e.status === 403 && /own request/.test(e.message));
  await assert.rejects(s.decide('01a20000-0000-7000-8000-000000000000', carol, 'approve', ''), (e: ApprovalApiError) => e.status === 404);
  const steps = rows.filter((x) => x.event === 'approval-decision').map((x) => x.fields.meta!.step);
  assert.deepEqual(steps, ['not-approver', 'self-approval']);
  // withdrawing your own request is allowed
  assert.equal((await s.decide(request.id, carol, 'deny', 'withdrawn')).status, 'denied');
  await s.close();
});

test('a request nobody decides expires by itself: the waiter sees it, one expiry row, the API shows expired', async () => {
  const { s, rows, rule: r } = service([rule('r', ['t.*'], { maxWait: 100, expiresAfter: 100 })]);
  await s.start();
  const { request } = await s.open(op(alice, 't.a'), r, 'h');
  const seen = await s.waitForDecision(request.id, 5000);
  assert.equal(seen?.status, 'expired');
  const deadline = Date.now() + 5000;
  while (!rows.some((x) => x.fields.meta?.step === 'expired') && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  await new Promise((res) => setTimeout(res, 100)); // more sweeps: still one row
  assert.equal(rows.filter((x) => x.fields.meta?.step === 'expired').length, 1);
  assert.deepEqual((await s.list('expired')).map((x) => x.id), [request.id]);
  assert.deepEqual(await s.list('pending'), []);
  await assert.rejects(s.decide(request.id, carol, 'approve', ''), (e: ApprovalApiError) => e.status === 409);
  await s.close();
});

test('a waiter stops when its signal aborts (the client is gone)', async () => {
  const { s, rule: r } = service();
  await s.start();
  const { request } = await s.open(op(alice, 't.a'), r, 'h');
  const abort = new AbortController();
  const waiting = s.waitForDecision(request.id, 60_000, abort.signal);
  abort.abort();
  assert.equal((await waiting)?.status, 'pending');
  await s.close();
});
