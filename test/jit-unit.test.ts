import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyPair, SignJWT, decodeProtectedHeader, decodeJwt } from 'jose';
import { MemoryStore } from '../src/state/store.ts';
import { SigningKeys } from '../src/jit/keys.ts';
import { inScope, parseScope, formatScope, scopeRefusal } from '../src/jit/scope.ts';
import { JitCredentials, CredentialRefused, TokenError } from '../src/jit/credentials.ts';
import { AccessKeys, accessKeyIdFor } from '../src/jit/access-keys.ts';
import { Policy } from '../src/policy/policy.ts';
import { credentialsSchema } from '../src/jit/schema.ts';
import { createLogger } from '../src/log.ts';

test('scope: parse, format, match topics, groups, cluster; produce/consume imply describe', () => {
  const items = parseScope('produce:orders consume:payments.* consume:group:analytics-* admin:cluster');
  assert.equal(formatScope(items), 'produce:orders consume:payments.* consume:group:analytics-* admin:cluster');
  assert.ok(inScope(items, 'produce', { kind: 'topic', name: 'orders' }));
  assert.ok(inScope(items, 'describe', { kind: 'topic', name: 'orders' }), 'produce implies describe');
  assert.ok(!inScope(items, 'consume', { kind: 'topic', name: 'orders' }));
  assert.ok(inScope(items, 'consume', { kind: 'stream', name: 'payments.eu' }), 'streams are scoped like topics');
  assert.ok(!inScope(items, 'produce', { kind: 'topic', name: 'payments.eu' }));
  assert.ok(inScope(items, 'consume', { kind: 'group', name: 'analytics-1' }));
  assert.ok(!inScope(items, 'consume', { kind: 'group', name: 'payments' }));
  assert.ok(inScope(items, 'admin', { kind: 'cluster', name: 'kafka' }));
  assert.ok(!inScope(items, 'describe', { kind: 'cluster', name: 'kafka' }));
  assert.throws(() => parseScope('write:orders'), /must start with produce:, consume:, describe: or admin:/);
  assert.throws(() => parseScope('produce:'), /names no topic/);
  const identity = { subject: 'a', issuer: 'i', roles: [], groups: [], claims: {}, credentialScope: items };
  assert.match(scopeRefusal(identity, 'produce', { kind: 'topic', name: 'x' })!.message, /outside the credential's scope "produce:orders/);
  assert.equal(scopeRefusal({ ...identity, credentialScope: undefined }, 'produce', { kind: 'topic', name: 'x' }), undefined, 'identity-provider tokens are not scoped');
});

test('signing keys: instances sharing a store agree; rotation signs with a new key while the old one keeps verifying until it expires', async () => {
  const store = new MemoryStore();
  const rotationMs = 400;
  const options = { store, alg: 'EdDSA' as const, rotationMs, maxLifetimeMs: 100 };
  const a = new SigningKeys(options);
  const b = new SigningKeys(options);
  // start right after a period boundary so both calls land in the same period
  await sleep(rotationMs - (Date.now() % rotationMs) + 5);
  const [ka, kb] = await Promise.all([a.current(), b.current()]);
  assert.equal(ka.kid, kb.kid, 'concurrent instances use one key per period');
  const signed = await new SignJWT({}).setProtectedHeader({ alg: ka.alg, kid: ka.kid }).setExpirationTime('1m').sign(ka.privateKey);

  await sleep(rotationMs + 10);
  const next = await b.current();
  assert.notEqual(next.kid, ka.kid, 'a new period signs with a new key');
  assert.ok(await a.verificationKey(ka.kid), 'the previous key still verifies');
  assert.ok(await a.verificationKey(next.kid), 'an instance learns a key another instance made (unknown kid reloads)');
  const jwks = await a.jwks();
  assert.deepEqual(jwks.keys.map((k) => k.kid), [next.kid, ka.kid], 'JWKS lists live keys, newest first');
  assert.ok(jwks.keys.every((k) => k.d === undefined), 'no private parts in the JWKS');
  assert.equal(decodeProtectedHeader(signed).kid, ka.kid);

  // the first key lives 2 rotations + the longest lifetime, then stops verifying
  await sleep(2 * rotationMs + 200);
  await a.reload();
  assert.equal(await a.verificationKey(ka.kid), undefined, 'an expired key no longer verifies');
});

function credentials(store = new MemoryStore()) {
  const policy = new Policy({
    roles: { writer: { when: { groups: ['writers'] } } },
    grants: [{ roles: ['writer'], actions: ['produce', 'describe'], topics: ['orders', 'payments.*'], effect: 'allow' }, { roles: ['writer'], actions: ['produce'], topics: ['payments.ledger'], effect: 'deny' }],
    approvals: [],
  } as never);
  const events: Array<{ event: string }> = [];
  const jit = new JitCredentials({
    config: credentialsSchema.parse({ clockToleranceSeconds: 0 }),
    store,
    policy: () => policy,
    accessKeys: new AccessKeys(Buffer.alloc(32, 7)),
    record: (event) => {
      events.push({ event });
      return Promise.resolve();
    },
    log: createLogger('silent'),
  });
  return { jit, store };
}
const subject = { subject: 'alice', issuer: 'https://idp', groups: ['writers'], scopes: [], expiresAt: undefined, claims: { sub: 'alice', iss: 'https://idp', groups: ['writers'], tenant: 't1' } };

test('credentials: issued scope is the requested scope cut to the policy; the identity re-derives roles and carries id and scope', async () => {
  const { jit } = credentials();
  await jit.start();
  try {
    const issued = await jit.issue(subject, 'oidc', 'produce:orders produce:* consume:orders produce:payments.*');
    assert.equal(formatScope(issued.scope), 'produce:orders produce:payments.*');
    assert.deepEqual(issued.dropped, ['produce:*', 'consume:orders']);
    assert.equal(issued.accessKeyId, accessKeyIdFor(issued.credentialId));
    await assert.rejects(jit.issue(subject, 'oidc', 'consume:orders'), (e: unknown) => e instanceof TokenError && e.code === 'invalid_scope');
    await assert.rejects(jit.issue(subject, 'oidc', 'write:orders'), (e: unknown) => e instanceof TokenError && e.code === 'invalid_scope');
    const identity = await jit.verify(issued.token);
    assert.equal(identity.subject, 'alice');
    assert.equal(identity.issuer, 'https://idp');
    assert.deepEqual(identity.roles, ['writer']);
    assert.equal(identity.credentialId, issued.credentialId);
    assert.equal(identity.claims.tenant, 't1', 'claims for {claim:...} templates travel with the credential');
    assert.equal(formatScope(identity.credentialScope!), 'produce:orders produce:payments.*');
    await assert.rejects(jit.verify(issued.token, 'someone-else'), /user name must be the credential id/);
    assert.ok(await jit.verify(issued.token, issued.credentialId));
  } finally {
    await jit.close();
  }
});

test('credentials: a token signed by another key under a real kid, or an unknown kid, is refused', async () => {
  const { jit } = credentials();
  await jit.start();
  try {
    const issued = await jit.issue(subject, 'oidc', 'produce:orders');
    const { kid } = decodeProtectedHeader(issued.token);
    const claims = decodeJwt(issued.token);
    const { privateKey } = await generateKeyPair('EdDSA');
    const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: kid! }).sign(privateKey);
    await assert.rejects(jit.verify(forged), (e: unknown) => e instanceof CredentialRefused && /signature is invalid/.test(e.message));
    const unknown = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: 'not-ours' }).sign(privateKey);
    await assert.rejects(jit.verify(unknown), /not signed by a key of this gateway/);
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', kid })).toString('base64url')}.${issued.token.split('.')[1]}.`;
    await assert.rejects(jit.verify(none), CredentialRefused);
  } finally {
    await jit.close();
  }
});

test('credentials: revocation by id and by subject reaches another instance on the same store', async () => {
  const store = new MemoryStore();
  const { jit: one } = credentials(store);
  const { jit: two } = credentials(store);
  await one.start();
  await two.start();
  try {
    const seen: string[] = [];
    two.onRevoked((r) => seen.push(r.kind));
    const a = await one.issue(subject, 'oidc', 'produce:orders');
    const b = await one.issue(subject, 'oidc', 'produce:orders');
    await two.verify(a.token);
    assert.ok(await one.revokeCredential(a.credentialId, 'ops', 'test'));
    for (let i = 0; i < 50 && seen.length === 0; i++) await sleep(10);
    await assert.rejects(two.verify(a.token), /was revoked/);
    await two.verify(b.token);
    assert.equal(await one.revokeCredential('no-such-id', 'ops', 'test'), undefined);
    await one.revokeSubject('alice', 'ops', 'test');
    for (let i = 0; i < 50 && seen.length < 2; i++) await sleep(10);
    await assert.rejects(two.verify(b.token), /credentials of alice issued before/);
    // a credential issued after the subject's revocation works
    await sleep(1100); // iat has second resolution
    const c = await one.issue(subject, 'oidc', 'produce:orders');
    await two.verify(c.token);
    assert.deepEqual(seen, ['credential', 'subject']);
  } finally {
    await one.close();
    await two.close();
  }
});
