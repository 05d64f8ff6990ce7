import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { listSegments } from '../src/audit/spool.ts';
import { createTopics, getInfra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { spawnGateway } from './helpers/gateway-process.ts';
import { ensureKcat, plainJwtAuth, runKcat } from './helpers/kcat.ts';

// Secrets never leave the gateway: bearer tokens, SASL passwords, the tokenization key and
// the audit signing key are absent from every log line (at debug level), audit row,
// metrics label and error message, after successful and failed operations on both
// listeners. Everything the gateway emitted is collected and grepped.

test('tokens, SASL passwords, tokenization, protection and signing keys appear in no log line, audit row, metric or error message', async () => {
  ensureKcat();
  const infra = await getInfra();
  const tokenizationKey = 'leak-canary-tokenization-key-7f3a9c';
  const signingKey = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  // the secrets reach the gateway through its environment, as the example advises
  const protectKey = 'leak-canary-protection-key-0123456789abcdef';
  const subjectKey = 'leak-canary-subjects-key-0123456789abcdef';
  const env = { LEAK_TOKEN_KEY: tokenizationKey, LEAK_SIGNING_KEY: signingKey, LEAK_PROTECT_KEY: protectKey, LEAK_SUBJECT_KEY: subjectKey };
  const { yaml, spoolDir } = testConfig(
    infra,
    (c) => {
      c.inspection!.tokenization!.keys[0]!.secret = '${LEAK_TOKEN_KEY}';
      c.inspection!.protection!.keys![0]!.secret = '${LEAK_PROTECT_KEY}';
      c.inspection!.protection!.subjects = { secret: '${LEAK_SUBJECT_KEY}' };
      c.audit!.spool!.signingKey = '${LEAK_SIGNING_KEY}';
      c.log = { level: 'debug' };
    },
    { env },
  );
  assert.match(yaml, /signingKey: \$\{LEAK_SIGNING_KEY\}/, 'the config under test signs segment heads');
  const gw = await spawnGateway(yaml, { env, wait: ['http', 'kafka', 'admin'] });
  const emitted: string[] = [];
  const used: string[] = [];
  try {
    const alice = await infra.idp.token('alice');
    const bob = await infra.idp.token('bob');
    const ops = await infra.idp.token('ops');
    const foreign = await infra.idp.token('alice', { audience: 'other-service' });
    used.push(alice, bob, ops, foreign);
    await createTopics(infra.kafka, ['customers.leaks', 'payments.leaks', 'cards.leaks']);
    const http = async (topic: string, token: string, data: unknown) => {
      const res = await request(`http://127.0.0.1:${gw.http}/v3/clusters/local/topics/${topic}/records`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ value: { type: 'JSON', data } }),
      });
      const body = await res.body.text();
      emitted.push(body);
      return res.statusCode;
    };
    assert.equal(await http('customers.leaks', ops, { email: 'carol@example.com', password: 'hunter2' }), 200, 'tokenized and hashed');
    assert.equal(await http('customers.leaks', `${alice}x`, { n: 1 }), 401, 'a damaged token');
    assert.equal(await http('customers.leaks', foreign, { n: 1 }), 401, 'a token for another audience');
    assert.equal(await http('payments.leaks', bob, { n: 1 }), 403, 'not allowed');
    assert.equal(await http('customers.leaks', ops, { key: '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----' }), 422, 'blocked');

    // encrypted (FF1, envelope, a data subject's key), one refused for lack of its subject
    assert.equal(await http('cards.leaks', alice, { customer_id: 'c-1', email: 'c1@example.com', card: '4111 1111 1111 1111', ssn: '123-45-6789' }), 200, 'encrypted');
    assert.equal(await http('cards.leaks', alice, { email: 'orphan@example.com' }), 422, 'no data subject');
    const bootstrap = `127.0.0.1:${gw.kafka}`;
    const fran = await infra.idp.token('fran');
    used.push(fran);
    const revealed = await runKcat(bootstrap, plainJwtAuth('fran', fran), ['-C', '-t', 'cards.leaks', '-o', 'beginning', '-c', '1', '-e']);
    assert.equal(revealed.code, 0, revealed.stderr);
    assert.match(revealed.stdout, /4111 1111 1111 1111/, 'revealed to the fraud analyst');
    emitted.push(revealed.stderr);
    const produced = await runKcat(bootstrap, plainJwtAuth('alice', alice), ['-P', '-t', 'payments.leaks'], '{"card":"4111 1111 1111 1111"}\n');
    assert.equal(produced.code, 0, produced.stderr);
    const consumed = await runKcat(bootstrap, plainJwtAuth('bob', bob), ['-C', '-t', 'payments.leaks', '-o', 'beginning', '-c', '1', '-e']);
    assert.equal(consumed.code, 0, consumed.stderr);
    const refused = await runKcat(bootstrap, plainJwtAuth('alice', foreign), ['-L'], undefined, 15_000);
    emitted.push(refused.stderr, produced.stderr, consumed.stderr);

    const metrics = await request(`http://127.0.0.1:${gw.admin}/metrics`);
    emitted.push(await metrics.body.text());
  } finally {
    await gw.stop();
  }
  emitted.push(...gw.logs);
  for (const file of listSegments(spoolDir)) emitted.push(readFileSync(file, 'utf8'));
  const everything = emitted.join('\n');
  assert.ok(everything.includes('"subject":"alice"') || everything.includes('alice'), 'the outputs were collected');

  const secrets: Array<[string, string]> = [
    ['tokenization key', tokenizationKey],
    ['protection key', protectKey],
    ['subjects secret', subjectKey],
    ['signing key', signingKey.split('\n')[1]!],
    ['SASL/bearer password hunter2 (hashed by a rule)', 'hunter2'],
  ];
  for (const token of used) secrets.push(['a token signature', token.split('.')[2]!], ['a token payload', token.split('.')[1]!.slice(-40)]);
  for (const [name, secret] of secrets) assert.ok(!everything.includes(secret), `${name} leaked`);
  // and nothing that looks like a JWT at all (three base64url segments starting with eyJ)
  const jwt = /eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{10,}/.exec(everything);
  assert.equal(jwt, null, `a JWT leaked: ${jwt?.[0].slice(0, 30)}...`);
});
