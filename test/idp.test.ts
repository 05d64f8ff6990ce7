// Exercises the development IdP end to end: real HTTP token requests, real signatures,
// verification through the published JWKS exactly as the gateway will do it.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors, jwtVerify } from 'jose';
import { DEV_CLIENTS, startIdp, type RunningIdp } from '../src/dev/idp.ts';

let idp: RunningIdp;
let jwks: ReturnType<typeof createRemoteJWKSet>;

before(async () => {
  idp = await startIdp({ port: 0 });
  jwks = createRemoteJWKSet(new URL(idp.jwksUri));
});

after(async () => {
  await idp?.stop();
});

test('alice gets a signed JWT with sub, groups and the gateway audience', async () => {
  const token = await idp.token('alice');
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer: idp.issuer,
    audience: 'streamgate',
    typ: 'at+jwt',
  });
  assert.equal(payload.sub, 'alice');
  assert.deepEqual(payload['groups'], ['payments-writers', 'analysts']);
  assert.equal(payload['client_id'], 'alice');
  assert.equal(protectedHeader.alg, 'ES256');
  assert.ok(typeof protectedHeader.kid === 'string' && protectedHeader.kid.length > 0);
  assert.ok(typeof payload.exp === 'number' && typeof payload.iat === 'number');
  assert.equal(payload.exp - payload.iat, 3600);
  if (process.env['IDP_TEST_VERBOSE']) {
    console.log(JSON.stringify({ header: decodeProtectedHeader(token), payload: decodeJwt(token) }, null, 2));
  }
});

test('a client with no groups still gets an explicit empty groups array', async () => {
  const { payload } = await jwtVerify(await idp.token('mallory'), jwks, {
    issuer: idp.issuer,
    audience: 'streamgate',
  });
  assert.equal(payload.sub, 'mallory');
  assert.deepEqual(payload['groups'], []);
});

test('a token minted for another audience is valid but rejected for streamgate', async () => {
  const token = await idp.token('alice', { audience: 'other-service' });
  const { payload } = await jwtVerify(token, jwks, { issuer: idp.issuer, audience: 'other-service' });
  assert.equal(payload.aud, 'other-service');
  await assert.rejects(
    jwtVerify(token, jwks, { issuer: idp.issuer, audience: 'streamgate' }),
    (err: unknown) => err instanceof errors.JWTClaimValidationFailed && err.claim === 'aud',
  );
});

test('unknown audiences and unknown clients are refused by the IdP', async () => {
  await assert.rejects(idp.token('alice', { audience: 'nobody' }), /invalid_target/);
  await assert.rejects(idp.token('eve'), /unknown dev client/);
});

test('wrong client secret is refused at the token endpoint', async () => {
  const res = await fetch(idp.tokenEndpoint, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from('alice:wrong').toString('base64')}` },
    body: new URLSearchParams({ grant_type: 'client_credentials' }),
  });
  assert.equal(res.status, 401);
  assert.equal(((await res.json()) as { error: string }).error, 'invalid_client');
});

test('a short-lived token really expires', async () => {
  const shortlived = DEV_CLIENTS.find((c) => c.id === 'shortlived');
  assert.equal(shortlived?.tokenTtlSeconds, 2);
  const token = await idp.token('shortlived');
  const { payload } = await jwtVerify(token, jwks, { issuer: idp.issuer, audience: 'streamgate' });
  assert.equal(payload.sub, 'shortlived');
  assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 2);
  // jose treats a token as expired once floor(now) >= exp (no clock tolerance by default).
  const waitMs = (payload.exp ?? 0) * 1000 - Date.now() + 100;
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, waitMs)));
  await assert.rejects(
    jwtVerify(token, jwks, { issuer: idp.issuer, audience: 'streamgate' }),
    (err: unknown) => err instanceof errors.JWTExpired && err.code === 'ERR_JWT_EXPIRED',
  );
});

test('discovery document advertises jwks_uri, token_endpoint and client_credentials', async () => {
  const res = await fetch(idp.discoveryUrl);
  assert.equal(res.status, 200);
  const doc = (await res.json()) as Record<string, unknown>;
  assert.equal(doc['issuer'], idp.issuer);
  assert.equal(doc['jwks_uri'], idp.jwksUri);
  assert.equal(doc['token_endpoint'], idp.tokenEndpoint);
  assert.ok((doc['grant_types_supported'] as string[]).includes('client_credentials'));
});

test('two IdPs in one process have independent keys', async () => {
  const other = await startIdp({ port: 0, clients: [{ id: 'x', secret: 'x-secret', groups: ['g'] }] });
  try {
    const foreign = await other.token('x');
    await assert.rejects(
      jwtVerify(foreign, jwks, { audience: 'streamgate' }),
      (err: unknown) => err instanceof errors.JWKSNoMatchingKey,
    );
  } finally {
    await other.stop();
  }
});
