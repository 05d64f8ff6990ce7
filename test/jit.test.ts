import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, generateKeyPair, jwtVerify, SignJWT, type JSONWebKeySet } from 'jose';
import { Producer, stringSerializers, type SASLOptions } from '@platformatic/kafka';
import { request } from 'undici';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { ensureKcat, plainJwtAuth, runKcat } from './helpers/kcat.ts';
import { api } from './helpers/approvals.ts';
import { exchange, httpProduce, liveKcatConsumer, untilFetching, samlIdpKeys, signedAssertion, SAML2_TYPE } from './helpers/jit.ts';
import type { Gateway } from '../src/gateway.ts';
import type { AuditRow } from '../src/audit/row.ts';

// Just-in-time credentials against a real gateway, Kafka broker and OIDC provider:
// exchange, use on HTTP and Kafka, the refusals (expired, revoked, forged, over-scoped) and SAML.

const RUN = randomUUID().slice(0, 8);
const TOPIC = `payments.jit-${RUN}`;
const OTHER = `payments.jit-other-${RUN}`;
const SAML_ISSUER = 'https://idp.test/saml';
const SAML_AUDIENCE = 'urn:streamgate:test';

let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let httpBase: string;
let adminUrl: string;
let bootstrap: string;
let saml: { key: string; cert: string };

before(async () => {
  infra = await getInfra();
  ensureKcat();
  await createTopics(infra.kafka, [TOPIC, OTHER]);
  saml = samlIdpKeys();
  const t = testConfig(infra);
  spoolDir = t.spoolDir;
  const config = t.config;
  // expiry is exact here: the expired-credential test waits for it
  config.credentials = { ...config.credentials!, clockToleranceSeconds: 0, saml: { idpCert: saml.cert, idpIssuer: SAML_ISSUER, audience: SAML_AUDIENCE, groupsAttribute: 'groups', issuerName: 'saml', clockToleranceSeconds: 5 } };
  gateway = await startGateway(config);
  httpBase = `http://127.0.0.1:${gateway.addresses.http!.port}`;
  adminUrl = `http://127.0.0.1:${gateway.addresses.admin!.port}`;
  bootstrap = `127.0.0.1:${gateway.addresses.kafka!.port}`;
});

async function credentialFor(who: string, scope: string, extra: Record<string, string> = {}) {
  const res = await exchange(httpBase, { subject_token: await infra.idp.token(who), scope, ...extra });
  assert.equal(res.status, 200, JSON.stringify(res.json));
  return res.json;
}

/** Reads the spool until a row matching `match` shows up (rows of refused logins are written after the client is answered). */
async function auditRow(match: (r: AuditRow) => boolean, what: string, timeoutMs = 5000): Promise<AuditRow> {
  for (let i = 0; i < timeoutMs / 50; i++) {
    const row = readAudit(spoolDir).find(match);
    if (row) return row;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no audit row: ${what}`);
}

type KafkaOutcome = { ok: true } | { ok: false; code: string; message: string };

async function kafkaProduce(sasl: SASLOptions, topic: string, value: string): Promise<KafkaOutcome> {
  const producer = new Producer({ clientId: `jit-${RUN}`, bootstrapBrokers: [bootstrap], sasl, serializers: stringSerializers, retries: 0 });
  try {
    await producer.send({ messages: [{ topic, value }] });
    return { ok: true };
  } catch (err) {
    // platformatic wraps the broker's answer: aggregate errors and `cause` chains down to the protocol error
    type Leaf = { apiId?: string; code?: string; message?: string; serverErrorMessage?: string; errors?: Leaf[]; cause?: Leaf };
    const leaves: Leaf[] = [];
    const walk = (e: Leaf): void => {
      if (e.errors?.length) e.errors.forEach(walk);
      else if (e.cause) walk(e.cause);
      else leaves.push(e);
    };
    walk(err as Leaf);
    const leaf = leaves.find((l) => l.apiId) ?? leaves[0] ?? {};
    return { ok: false, code: leaf.apiId ?? leaf.code ?? 'unknown', message: `${leaf.serverErrorMessage ?? ''} ${leaf.message ?? ''}` };
  } finally {
    await producer.close().catch(() => {});
  }
}

function assertSaslRefused(outcome: KafkaOutcome, why: RegExp): void {
  assert.equal(outcome.ok, false, 'the login must fail');
  assert.ok(!outcome.ok);
  assert.match(`${outcome.code} ${outcome.message}`, /SASL_AUTHENTICATION_FAILED|SASL|authentication/i);
  assert.match(outcome.message, why);
}

test('exchange: an OIDC token becomes a credential cut to the policy; JWKS verifies it; issuance is audited', async () => {
  const cred = await credentialFor('alice', `produce:${TOPIC} produce:*`, { expires_in: '600' });
  assert.equal(cred.scope, `produce:${TOPIC}`, 'produce:* is wider than alice\'s policy and is left out');
  assert.equal(cred.token_type, 'Bearer');
  assert.equal(cred.issued_token_type, 'urn:ietf:params:oauth:token-type:jwt');
  assert.equal(cred.expires_in, 600);
  assert.equal(cred.kafka.sasl_plain.username, cred.credential_id);
  assert.equal(cred.aws.sessionToken, cred.access_token);
  assert.match(cred.aws.accessKeyId, /^SGJ[A-Z0-9]+$/);
  assert.equal(gateway.sigv4Secret(cred.aws.accessKeyId), cred.aws.secretAccessKey, 'the Kinesis listener derives the same secret');

  const jwksRes = await request(`${httpBase}/.well-known/jwks.json`);
  assert.equal(jwksRes.statusCode, 200);
  const jwks = (await jwksRes.body.json()) as JSONWebKeySet;
  const { payload, protectedHeader } = await jwtVerify(cred.access_token, createLocalJWKSet(jwks), { issuer: 'streamgate', audience: 'streamgate' });
  assert.equal(protectedHeader.alg, 'EdDSA');
  assert.equal(payload.jti, cred.credential_id);
  assert.equal(payload.sub, 'alice');
  assert.equal(payload.scope, `produce:${TOPIC}`);
  assert.equal(payload.exp! - payload.iat!, 600);

  const row = await auditRow((r) => r.event === 'credential-issue' && r.credential_id === cred.credential_id, 'issuance');
  assert.equal(row.subject, 'alice');
  assert.equal(row.decision, 'allow');
  assert.equal(row.resource, `produce:${TOPIC}`);
  assert.match(row.message, /produce:\* not allowed/);
  assert.ok(row.roles.includes('payments-writer'));
});

test('exchange: bad requests get OAuth errors (400) and deny audit rows', async () => {
  const alice = await infra.idp.token('alice');
  const cases: Array<[Record<string, string>, string, RegExp]> = [
    [{ grant_type: 'client_credentials', subject_token: alice, scope: `produce:${TOPIC}` }, 'unsupported_grant_type', /grant_type must be/],
    [{ scope: `produce:${TOPIC}` }, 'invalid_request', /subject_token and subject_token_type are required/],
    [{ subject_token: 'not-a-jwt', scope: `produce:${TOPIC}` }, 'invalid_grant', /subject token was refused/],
    [{ subject_token: await infra.idp.token('mallory'), scope: `produce:${TOPIC}` }, 'invalid_scope', /mallory may not be issued/],
    [{ subject_token: alice, scope: 'write:everything' }, 'invalid_scope', /must start with produce:/],
    [{ subject_token: alice, scope: `produce:${TOPIC}`, audience: 'another-service' }, 'invalid_target', /not for "another-service"/],
    [{ subject_token: alice, scope: `produce:${TOPIC}`, subject_token_type: 'urn:x' }, 'invalid_request', /subject_token_type must be/],
  ];
  for (const [params, code, description] of cases) {
    const res = await exchange(httpBase, params);
    assert.equal(res.status, 400, `${code}: ${JSON.stringify(res.json)}`);
    assert.equal(res.json.error, code);
    assert.match(res.json.error_description!, description);
  }
  // a gateway credential cannot be exchanged for a fresh (longer) one
  const cred = await credentialFor('alice', `produce:${TOPIC}`);
  const again = await exchange(httpBase, { subject_token: cred.access_token, scope: `produce:${TOPIC}` });
  assert.equal(again.status, 400);
  assert.equal(again.json.error, 'invalid_grant');
  const json = await request(`${httpBase}/v1/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(json.statusCode, 400);
  assert.equal(((await json.body.json()) as { error: string }).error, 'invalid_request');

  const denied = readAudit(spoolDir).filter((r) => r.event === 'credential-issue' && r.decision === 'deny');
  assert.ok(denied.some((r) => r.reason === 'invalid_scope' && r.subject === 'mallory'), 'the refused subject is audited');
  assert.ok(denied.some((r) => r.reason === 'invalid_target'));
});

test('HTTP: the credential is a bearer token within its scope; outside it 403 names the scope; rows carry credential_id', async () => {
  const cred = await credentialFor('alice', `produce:${TOPIC}`);
  const ok = await httpProduce(httpBase, cred.access_token, TOPIC, { n: 1 });
  assert.equal(ok.status, 200, JSON.stringify(ok.json));
  // alice's policy allows payments.*, the credential does not
  const outside = await httpProduce(httpBase, cred.access_token, OTHER, { n: 2 });
  assert.equal(outside.status, 403);
  assert.equal(outside.json.error_code, 40301);
  assert.match(String(outside.json.message), new RegExp(`outside the credential's scope "produce:${TOPIC.replace(/\./g, '\\.')}"`));
  assert.equal(outside.json.rule, 'credential-scope');

  const rows = readAudit(spoolDir).filter((r) => r.event === 'operation' && r.credential_id === cred.credential_id);
  assert.ok(rows.some((r) => r.resource === TOPIC && r.decision === 'allow' && r.subject === 'alice'));
  assert.ok(rows.some((r) => r.resource === OTHER && r.decision === 'deny' && r.rule === 'credential-scope'));
  const stored = await readTopic(infra.kafka, TOPIC, 1);
  assert.equal(stored[0]!.value, JSON.stringify({ n: 1 }));
});

test('Kafka: PLAIN (user = credential id) with kcat and OAUTHBEARER work in scope; a wrong user name and an over-scoped produce are refused', async () => {
  const cred = await credentialFor('alice', `produce:${TOPIC}`);
  const value = `kcat-${RUN}`;
  const produced = await runKcat(bootstrap, plainJwtAuth(cred.credential_id, cred.access_token), ['-P', '-t', TOPIC], `${value}\n`);
  assert.equal(produced.code, 0, produced.stderr);
  const records = await readTopic(infra.kafka, TOPIC, 2);
  assert.ok(records.some((r) => r.value === value), 'the record written with the credential reached the broker');

  assert.deepEqual(await kafkaProduce({ mechanism: 'OAUTHBEARER', token: cred.access_token }, TOPIC, 'oauth'), { ok: true });

  const wrongUser = await kafkaProduce({ mechanism: 'PLAIN', username: 'alice', password: cred.access_token }, TOPIC, 'x');
  assertSaslRefused(wrongUser, /user name must be the credential id/);

  const over = await kafkaProduce({ mechanism: 'OAUTHBEARER', token: cred.access_token }, OTHER, 'x');
  assert.equal(over.ok, false);
  assert.ok(!over.ok);
  assert.equal(over.code, 'TOPIC_AUTHORIZATION_FAILED');
  const row = await auditRow((r) => r.event === 'operation' && r.protocol === 'kafka' && r.resource === OTHER && r.credential_id === cred.credential_id && r.decision === 'deny', 'over-scoped Kafka produce');
  assert.equal(row.rule, 'credential-scope');
});

test('expired, revoked (by id and by subject) and forged credentials are refused on HTTP and Kafka, with audit rows', async () => {
  // expired
  const short = await credentialFor('alice', `produce:${TOPIC}`, { expires_in: '1' });
  await new Promise((r) => setTimeout(r, 2100));
  const expiredHttp = await httpProduce(httpBase, short.access_token, TOPIC, { late: true });
  assert.equal(expiredHttp.status, 401);
  assert.match(String(expiredHttp.json.message), /credential has expired/);
  assertSaslRefused(await kafkaProduce({ mechanism: 'OAUTHBEARER', token: short.access_token }, TOPIC, 'late'), /expired/);
  const expiredRows = readAudit(spoolDir).filter((r) => r.credential_id === short.credential_id && r.reason === 'unauthenticated');
  assert.ok(expiredRows.some((r) => r.protocol === 'http'), 'the refused HTTP use names the expired credential');
  await auditRow((r) => r.credential_id === short.credential_id && r.protocol === 'kafka' && r.reason === 'unauthenticated', 'expired Kafka login');

  // revoked by id: an admin may, another subject may not
  const cred = await credentialFor('alice', `produce:${TOPIC}`);
  assert.equal((await httpProduce(httpBase, cred.access_token, TOPIC, { before: 'revoke' })).status, 200);
  const bob = await api(adminUrl, await infra.idp.token('bob'), 'POST', `/v1/credentials/${cred.credential_id}/revoke`, { reason: 'not mine' });
  assert.equal(bob.status, 403);
  const unauthenticated = await request(`${adminUrl}/v1/credentials/${cred.credential_id}/revoke`, { method: 'POST' });
  assert.equal(unauthenticated.statusCode, 401);
  await unauthenticated.body.dump();
  const revoked = await api(adminUrl, await infra.idp.token('ops'), 'POST', `/v1/credentials/${cred.credential_id}/revoke`, { reason: 'laptop stolen' });
  assert.equal(revoked.status, 200, JSON.stringify(revoked.json));
  const revokedHttp = await httpProduce(httpBase, cred.access_token, TOPIC, { after: 'revoke' });
  assert.equal(revokedHttp.status, 401);
  assert.match(String(revokedHttp.json.message), new RegExp(`credential ${cred.credential_id} was revoked`));
  assertSaslRefused(await kafkaProduce({ mechanism: 'PLAIN', username: cred.credential_id, password: cred.access_token }, TOPIC, 'x'), /was revoked/);
  const revocationRows = readAudit(spoolDir).filter((r) => r.event === 'credential-revoke' && r.resource === cred.credential_id);
  assert.deepEqual(revocationRows.map((r) => [r.subject, r.decision]).sort(), [['bob', 'deny'], ['ops', 'allow']]);
  assert.equal(revocationRows.find((r) => r.decision === 'allow')!.message, 'laptop stolen');
  assert.equal((await api(adminUrl, await infra.idp.token('ops'), 'POST', `/v1/credentials/${randomUUID()}/revoke`)).status, 404);

  // revoked by subject: every credential alice holds now, not later ones
  const a1 = await credentialFor('alice', `produce:${TOPIC}`);
  const bobCred = await credentialFor('bob', `produce:sandbox.bob.${RUN}`);
  const bySubject = await api(adminUrl, await infra.idp.token('ops'), 'POST', '/v1/subjects/alice/credentials/revoke', { reason: 'offboarding' });
  assert.equal(bySubject.status, 200);
  const a1Http = await httpProduce(httpBase, a1.access_token, TOPIC, {});
  assert.equal(a1Http.status, 401);
  assert.match(String(a1Http.json.message), /credentials of alice issued before .* were revoked/);
  assert.equal((await api(adminUrl, await infra.idp.token('bob'), 'GET', '/v1/credentials?subject=bob')).status, 200, 'a subject may list its own');
  const listed = await api(adminUrl, await infra.idp.token('ops'), 'GET', '/v1/credentials?subject=bob');
  assert.ok((listed.json.credentials as Array<{ id: string }>).some((c) => c.id === bobCred.credential_id));

  // forged: alice's real claims and the gateway's real kid, signed by another key
  await new Promise((r) => setTimeout(r, 1000)); // iat has second resolution: a credential after the subject revocation
  const fresh = await credentialFor('alice', `produce:${TOPIC}`);
  assert.equal((await httpProduce(httpBase, fresh.access_token, TOPIC, { after: 'subject revocation' })).status, 200);
  const { privateKey } = await generateKeyPair('EdDSA');
  const forged = await new SignJWT(decodeJwt(fresh.access_token)).setProtectedHeader({ alg: 'EdDSA', kid: decodeProtectedHeader(fresh.access_token).kid! }).sign(privateKey);
  const forgedHttp = await httpProduce(httpBase, forged, TOPIC, {});
  assert.equal(forgedHttp.status, 401);
  assert.match(String(forgedHttp.json.message), /signature is invalid/);
  assertSaslRefused(await kafkaProduce({ mechanism: 'OAUTHBEARER', token: forged }, TOPIC, 'x'), /signature is invalid/);
  const forgedRows = readAudit(spoolDir).filter((r) => r.event === 'operation' && r.message === 'the credential signature is invalid');
  assert.ok(forgedRows.length >= 1 && forgedRows.every((r) => r.credential_id === '' && r.decision === 'deny'), 'a forged id is never trusted into the audit row');
});

test('a revoked credential closes its open Kafka connection on the instance it is used on', async () => {
  const cred = await credentialFor('alice', `consume:${TOPIC}`);
  const live = liveKcatConsumer(bootstrap, plainJwtAuth(cred.credential_id, cred.access_token), TOPIC);
  try {
    // the consumer is connected and fetching once a record written now reaches it
    const value = `live-${RUN}`;
    await untilFetching(live, infra.kafka, TOPIC, value);
    await api(adminUrl, await infra.idp.token('ops'), 'POST', `/v1/credentials/${cred.credential_id}/revoke`, { reason: 'test' });
    const row = await auditRow((r) => r.credential_id === cred.credential_id && r.meta.api === 'session-revoked', 'the closed session');
    assert.match(row.message, new RegExp(`credential ${cred.credential_id} was revoked`));
    // a new login with it is refused (the closed client itself may reconnect, or give up when every connection dropped at once)
    const relogin = await runKcat(bootstrap, plainJwtAuth(cred.credential_id, cred.access_token), ['-L', '-m', '5'], undefined, 20_000);
    assert.notEqual(relogin.code, 0);
    assert.match(relogin.stderr, /was revoked/);
  } finally {
    await live.stop();
  }
});

test('a Kafka session on a credential ends at its expiry (re-authentication with it is refused)', async () => {
  const cred = await credentialFor('alice', `consume:${TOPIC}`, { expires_in: '2' });
  const live = liveKcatConsumer(bootstrap, plainJwtAuth(cred.credential_id, cred.access_token), TOPIC);
  try {
    await live.waitFor('stderr', /Reached end of topic/, 10_000);
    // KIP-368: the session lifetime is the credential's; afterwards the gateway refuses the session
    const row = await auditRow((r) => r.credential_id === cred.credential_id && r.protocol === 'kafka' && r.reason === 'unauthenticated' && /expired/.test(r.message), 'the expired Kafka session', 15_000);
    assert.equal(row.decision, 'deny');
  } finally {
    await live.stop();
  }
});

test('SAML: a signed assertion is exchanged once; tampered, foreign-signed and replayed assertions are refused', async () => {
  const assertion = signedAssertion({ key: saml.key, issuer: SAML_ISSUER, audience: SAML_AUDIENCE, nameId: 'carol@example.com', groups: ['payments-writers'] });
  const token = Buffer.from(assertion).toString('base64url');
  const res = await exchange(httpBase, { subject_token: token, subject_token_type: SAML2_TYPE, scope: `produce:${TOPIC}` });
  assert.equal(res.status, 200, JSON.stringify(res.json));
  const payload = decodeJwt(res.json.access_token);
  assert.equal(payload.sub, 'carol@example.com');
  assert.equal((payload.src as { iss: string }).iss, 'saml');
  assert.equal((await httpProduce(httpBase, res.json.access_token, TOPIC, { via: 'saml' })).status, 200, 'roles come from the SAML groups attribute');

  const replay = await exchange(httpBase, { subject_token: token, subject_token_type: SAML2_TYPE, scope: `produce:${TOPIC}` });
  assert.equal(replay.status, 400);
  assert.equal(replay.json.error, 'invalid_grant');
  assert.match(replay.json.error_description!, /already exchanged/);

  const fresh = signedAssertion({ key: saml.key, issuer: SAML_ISSUER, audience: SAML_AUDIENCE, nameId: 'carol@example.com', groups: ['payments-writers'] });
  const tampered = fresh.replace('carol@example.com', 'ops');
  const t = await exchange(httpBase, { subject_token: Buffer.from(tampered).toString('base64url'), subject_token_type: SAML2_TYPE, scope: `produce:${TOPIC}` });
  assert.equal(t.status, 400);
  assert.equal(t.json.error, 'invalid_grant');

  const other = samlIdpKeys();
  const foreign = signedAssertion({ key: other.key, issuer: SAML_ISSUER, audience: SAML_AUDIENCE, nameId: 'carol@example.com', groups: ['payments-writers'] });
  const f = await exchange(httpBase, { subject_token: Buffer.from(foreign).toString('base64url'), subject_token_type: SAML2_TYPE, scope: `produce:${TOPIC}` });
  assert.equal(f.status, 400);
  assert.equal(f.json.error, 'invalid_grant');

  const wrongAudience = signedAssertion({ key: saml.key, issuer: SAML_ISSUER, audience: 'urn:someone-else', nameId: 'carol@example.com', groups: ['payments-writers'] });
  const w = await exchange(httpBase, { subject_token: Buffer.from(wrongAudience).toString('base64url'), subject_token_type: SAML2_TYPE, scope: `produce:${TOPIC}` });
  assert.equal(w.status, 400);
  assert.match(w.json.error_description!, /audience/i);

  const otherIdp = signedAssertion({ key: saml.key, issuer: 'https://impostor.test/saml', audience: SAML_AUDIENCE, nameId: 'carol@example.com', groups: ['payments-writers'] });
  const i = await exchange(httpBase, { subject_token: Buffer.from(otherIdp).toString('base64url'), subject_token_type: SAML2_TYPE, scope: `produce:${TOPIC}` });
  assert.equal(i.status, 400);
  assert.match(i.json.error_description!, /from issuer "https:\/\/impostor\.test\/saml"/);
});
