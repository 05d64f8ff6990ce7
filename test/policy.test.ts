import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Policy } from '../src/policy/policy.ts';
import type { VerifiedToken } from '../src/identity/oidc.ts';
import type { Identity } from '../src/operation.ts';

const policy = new Policy({
  roles: {
    writer: { when: { groups: ['writers'] } },
    tenant: { when: { claims: { tier: ['gold'] }, issuers: ['https://idp'] } },
    robot: { when: { subjects: ['svc-1'], scopes: ['kafka:write'] } },
  },
  grants: [
    { roles: ['writer'], actions: ['produce'], topics: ['payments.*', 'orders'], effect: 'allow' },
    { roles: ['writer'], actions: ['produce'], topics: ['payments.ledger'], effect: 'deny' },
    { roles: ['tenant'], actions: ['produce', 'consume'], topics: ['tenant-{claim:tenant}.*', '{sub}.inbox'], effect: 'allow' },
    { roles: ['robot'], actions: ['produce'], topics: ['literal.dot'], effect: 'allow' },
  ],
});

function token(p: Partial<VerifiedToken>): VerifiedToken {
  return { subject: 's', issuer: 'https://idp', groups: [], scopes: [], expiresAt: undefined, claims: {}, ...p };
}
function identity(t: VerifiedToken): Identity {
  return { subject: t.subject, issuer: t.issuer, groups: t.groups, roles: policy.rolesFor(t), claims: t.claims };
}

test('roles come from groups, claims, issuers, subjects and scopes (all keys must match)', () => {
  assert.deepEqual(policy.rolesFor(token({ groups: ['writers', 'x'] })), ['writer']);
  assert.deepEqual(policy.rolesFor(token({ claims: { tier: 'gold' } })), ['tenant']);
  assert.deepEqual(policy.rolesFor(token({ claims: { tier: ['silver', 'gold'] } })), ['tenant']);
  assert.deepEqual(policy.rolesFor(token({ claims: { tier: 'gold' }, issuer: 'https://other' })), []);
  assert.deepEqual(policy.rolesFor(token({ subject: 'svc-1', scopes: ['kafka:write'] })), ['robot']);
  assert.deepEqual(policy.rolesFor(token({ subject: 'svc-1' })), [], 'scope missing');
});

test('globs, default deny and explicit deny', () => {
  const writer = identity(token({ groups: ['writers'] }));
  assert.deepEqual(policy.decide(writer, 'produce', 'payments.cards'), { allowed: true, rule: 'grants[0]' });
  assert.deepEqual(policy.decide(writer, 'produce', 'orders'), { allowed: true, rule: 'grants[0]' });
  assert.deepEqual(policy.decide(writer, 'produce', 'orders2'), { allowed: false, rule: 'default-deny' });
  assert.deepEqual(policy.decide(writer, 'consume', 'payments.cards'), { allowed: false, rule: 'default-deny' });
  assert.deepEqual(policy.decide(writer, 'produce', 'payments.ledger'), { allowed: false, rule: 'grants[1]' });
  const robot = identity(token({ subject: 'svc-1', scopes: ['kafka:write'] }));
  assert.equal(policy.decide(robot, 'produce', 'literal.dot').allowed, true);
  assert.equal(policy.decide(robot, 'produce', 'literalXdot').allowed, false, '. is literal, not a regex wildcard');
});

test('topic templates isolate tenants and treat claim values as literals', () => {
  const acme = identity(token({ subject: 'alice', claims: { tier: 'gold', tenant: 'acme' } }));
  assert.equal(policy.decide(acme, 'produce', 'tenant-acme.events').allowed, true);
  assert.equal(policy.decide(acme, 'produce', 'tenant-globex.events').allowed, false);
  assert.equal(policy.decide(acme, 'consume', 'alice.inbox').allowed, true);
  assert.equal(policy.decide(acme, 'consume', 'bob.inbox').allowed, false);
  const wildcard = identity(token({ subject: '*', claims: { tier: 'gold', tenant: '*' } }));
  assert.equal(policy.decide(wildcard, 'produce', 'tenant-acme.events').allowed, false, 'a "*" claim must not become a wildcard');
  assert.equal(policy.decide(wildcard, 'produce', 'tenant-*.events').allowed, true);
  const noTenant = identity(token({ subject: 'x', claims: { tier: 'gold' } }));
  assert.equal(policy.decide(noTenant, 'produce', 'tenant-.events').allowed, false, 'an unfilled template never matches');
});

test('the policy version changes with the policy', () => {
  const a = new Policy({ roles: {}, grants: [] });
  const b = new Policy({ roles: { r: { when: { groups: ['g'] } } }, grants: [] });
  assert.match(a.version, /^[0-9a-f]{12}$/);
  assert.notEqual(a.version, b.version);
});
