import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Dispatcher } from '../src/dispatcher.ts';
import { GatewayError, type Identity, type Operation, type Session } from '../src/operation.ts';
import { Login } from '../src/protocols/kafka/login.ts';

// Unit level: SASL on a Kafka connection against a fake login chain: mechanisms, failures
// that close the connection (audited), the session lifetime and re-authentication.

const session: Session = { id: 's', protocol: 'kafka', client: { address: '' }, startedAt: 0 };
const bearer = (token: string) => Buffer.from(`n,,\x01auth=Bearer ${token}\x01\x01`);

function setup(tokens: Record<string, Identity>, maxSessionLifetimeMs = 3_600_000) {
  const refused: string[] = [];
  let current: Identity | undefined;
  const dispatcher = {
    newOperation: (s: Session, action: string, resource: unknown) => ({ session: s, action, resource, meta: {} }) as unknown as Operation,
    login: async (op: Operation) => {
      const c = op.credential;
      const id = c?.scheme === 'bearer' ? tokens[c.token] : undefined;
      if (!id) throw new GatewayError('unauthenticated', 'the token signature is invalid');
      return id;
    },
    refuse: async (_op: Operation, err: unknown) => {
      refused.push((err as Error).message);
      throw err;
    },
  } as unknown as Dispatcher;
  const login = new Login({ dispatcher, session, maxSessionLifetimeMs, identity: () => current, loggedIn: (i) => (current = i), closed: () => false, expired: () => {} });
  return { login, refused, identity: () => current };
}

const id = (subject: string, expiresInS: number): Identity => ({ subject, issuer: 'i', roles: [], groups: [], claims: {}, expiresAt: Math.floor(Date.now() / 1000) + expiresInS });

test('an unknown mechanism is answered UNSUPPORTED_SASL_MECHANISM; authenticating without a handshake fails, closes and is audited', async () => {
  const { login, refused } = setup({});
  assert.equal(login.handshake('GSSAPI').ErrorCode, 33);
  const answer = await login.authenticate(bearer('x'));
  assert.equal(answer.close, true);
  assert.equal(answer.body.ErrorCode, 58);
  assert.deepEqual(refused, ['SaslAuthenticate without a SaslHandshake']);
});

test('OAUTHBEARER: the session lives as long as the token (capped), re-authentication must keep the principal', async () => {
  const { login, identity } = setup({ alice: id('alice', 120), bob: id('bob', 120), later: id('alice', 7200) }, 600_000);
  assert.equal(login.handshake('OAUTHBEARER').ErrorCode, 0);
  const first = await login.authenticate(bearer('alice'));
  assert.equal(first.close, false);
  const lifetime = Number(first.body.SessionLifetimeMs);
  assert.ok(lifetime > 110_000 && lifetime <= 120_000, `bounded by the token (${lifetime})`);
  assert.equal(identity()?.subject, 'alice');
  assert.ok(login.expiresAt > Date.now() + 100_000);

  login.handshake('OAUTHBEARER');
  const longer = await login.authenticate(bearer('later'));
  assert.equal(Number(longer.body.SessionLifetimeMs), 600_000, 'capped at maxSessionLifetimeMs');

  login.handshake('OAUTHBEARER');
  const switched = await login.authenticate(bearer('bob'));
  assert.equal(switched.close, true);
  assert.match(String(switched.body.ErrorMessage), /must keep the principal \(alice\)/);
  login.stop();
});

test('a malformed client response is refused with the SASL parser reason (audited); a bad token gets OAUTHBEARER failure bytes', async () => {
  const { login, refused } = setup({});
  login.handshake('OAUTHBEARER');
  const malformed = await login.authenticate(Buffer.from('garbage'));
  assert.equal(malformed.close, true);
  assert.equal(refused.length, 1, 'the parser refusal is audited');
  login.handshake('OAUTHBEARER');
  const bad = await login.authenticate(bearer('nobody'));
  assert.equal(bad.body.ErrorCode, 58);
  assert.ok((bad.body.AuthBytes as Uint8Array).byteLength > 0, 'RFC 7628 error bytes');
  login.handshake('PLAIN');
  const plain = await login.authenticate(Buffer.from('\0alice\0nobody'));
  assert.equal(plain.body.ErrorCode, 58);
});
