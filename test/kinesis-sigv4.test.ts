import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { DescribeStreamSummaryCommand, ListStreamsCommand } from '@aws-sdk/client-kinesis';
import { request } from 'undici';
import { SigV4Verifier } from '../src/protocols/kinesis/sigv4.ts';
import { TokenBinder } from '../src/protocols/kinesis/tokens.ts';
import { accessKeyIdFor } from '../src/jit/access-keys.ts';
import { getInfra, readAudit, startGateway } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { jitCredentials, kinesisClient, startCapturedKinesis, withKinesis, type CapturedKinesis } from './helpers/kinesis.ts';
import type { RunningIdp } from '../src/dev/idp.ts';

const KEY_ID = 'SGJTESTKEY';
const SECRET = 'test-secret-access-key';
const NOW = Date.UTC(2026, 10, 24, 12, 0, 0);

/** A request signed by the same signer the AWS SDK uses. */
async function signed(opts: { body?: string; secret?: string; at?: number; token?: string; payloadHash?: string } = {}) {
  const body = opts.body ?? '{"StreamName":"s"}';
  const signer = new SignatureV4({
    credentials: { accessKeyId: KEY_ID, secretAccessKey: opts.secret ?? SECRET, ...(opts.token ? { sessionToken: opts.token } : {}) },
    region: 'eu-west-1',
    service: 'kinesis',
    sha256: Sha256,
  });
  const req = await signer.sign(
    { method: 'POST', protocol: 'http:', hostname: 'gw', path: '/', headers: { host: 'gw:9567', 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'Kinesis_20131202.ListShards', ...(opts.payloadHash ? { 'x-amz-content-sha256': opts.payloadHash } : {}) }, body },
    { signingDate: new Date(opts.at ?? NOW) },
  );
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) headers[k.toLowerCase()] = v;
  return { method: 'POST', path: '/', headers, body: Buffer.from(body) };
}

function verifier(now = NOW, allowUnsignedPayload = false) {
  return new SigV4Verifier({ secretFor: (id) => (id === KEY_ID ? SECRET : undefined), maxSkewSeconds: 300, service: 'kinesis', now: () => now, allowUnsignedPayload });
}

describe('SigV4 verification (unit)', () => {
  test('accepts what the AWS signer produced, with the session token', async () => {
    const r = await verifier().verify(await signed({ token: 'jwt.token.here' }));
    assert.ok(!('error' in r), JSON.stringify(r));
    assert.equal(r.accessKeyId, KEY_ID);
    assert.equal(r.sessionToken, 'jwt.token.here');
    assert.equal(r.region, 'eu-west-1');
  });

  test('a wrong secret, a changed body or a changed signed header is InvalidSignatureException', async () => {
    assert.equal(((await verifier().verify(await signed({ secret: 'other' }))) as { error: string }).error, 'InvalidSignatureException');
    const tampered = await signed();
    tampered.body = Buffer.from('{"StreamName":"t"}');
    delete tampered.headers['x-amz-content-sha256'];
    assert.equal(((await verifier().verify(tampered)) as { error: string }).error, 'InvalidSignatureException');
    const target = await signed();
    target.headers['x-amz-target'] = 'Kinesis_20131202.DeleteStream';
    assert.equal(((await verifier().verify(target)) as { error: string }).error, 'InvalidSignatureException');
  });

  test('x-amz-content-sha256 must be the body hash', async () => {
    const r = await signed();
    r.headers['x-amz-content-sha256'] = 'a'.repeat(64);
    const out = (await verifier().verify(r)) as { error: string; message: string };
    assert.equal(out.error, 'InvalidSignatureException');
    assert.match(out.message, /x-amz-content-sha256/);
  });

  test('UNSIGNED-PAYLOAD is refused from the headers alone, unless allowed (then the body is not covered)', async () => {
    const unsigned = await signed({ payloadHash: 'UNSIGNED-PAYLOAD' });
    const refused = verifier().check(unsigned.headers) as { error: string; message: string };
    assert.equal(refused.error, 'InvalidSignatureException');
    assert.match(refused.message, /UNSIGNED-PAYLOAD/);
    assert.equal(((await verifier().verify(unsigned)) as { error: string }).error, 'InvalidSignatureException');
    unsigned.body = Buffer.from('{"StreamName":"another"}');
    assert.ok(!('error' in (await verifier(NOW, true).verify(unsigned))), 'allowed: a changed body still verifies, which is why it needs TLS');
    assert.deepEqual(verifier().check((await signed({ token: 't' })).headers), { accessKeyId: KEY_ID, sessionToken: 't', region: 'eu-west-1' });
  });

  test('an unknown access key is UnrecognizedClientException', async () => {
    const v = new SigV4Verifier({ secretFor: () => undefined, maxSkewSeconds: 300, service: 'kinesis', now: () => NOW });
    assert.equal(((await v.verify(await signed())) as { error: string }).error, 'UnrecognizedClientException');
  });

  test('outside the clock-skew window either way: Signature expired', async () => {
    for (const at of [NOW - 301_000, NOW + 301_000]) {
      const out = (await verifier().verify(await signed({ at }))) as { error: string; message: string };
      assert.equal(out.error, 'InvalidSignatureException');
      assert.match(out.message, /Signature expired/);
    }
    assert.ok(!('error' in (await verifier().verify(await signed({ at: NOW - 299_000 })))));
  });

  test('the same signed request twice within the window is a replay', async () => {
    const v = verifier();
    const r = await signed();
    assert.ok(!('error' in (await v.verify(r))));
    const again = (await v.verify(r)) as { error: string; message: string };
    assert.equal(again.error, 'InvalidSignatureException');
    assert.match(again.message, /replay/);
  });

  test('a malformed Authorization header is IncompleteSignatureException', async () => {
    const r = await signed();
    r.headers.authorization = 'AWS4-HMAC-SHA256 Credential=x';
    assert.equal(((await verifier().verify(r)) as { error: string }).error, 'IncompleteSignatureException');
  });
});

describe('shard iterator binding (unit)', () => {
  test('round-trips and refuses a token moved to another stream or forged', () => {
    const b = new TokenBinder();
    const t = b.wrap('orders', 'shardId-000000000001', 'AAAA.bb+/=');
    assert.deepEqual(b.unwrap(t), { stream: 'orders', shard: 'shardId-000000000001', upstream: 'AAAA.bb+/=' });
    const parts = t.split('.');
    parts[1] = Buffer.from('payments').toString('base64url');
    assert.equal(b.unwrap(parts.join('.')), undefined);
    assert.equal(new TokenBinder().unwrap(t), undefined, 'another key');
    assert.equal(b.unwrap('raw-upstream-iterator'), undefined);
  });
});

describe('SigV4 through the gateway (AWS SDK v3, HTTP/2)', () => {
  let idp: RunningIdp;
  let upstream: CapturedKinesis;
  let endpoint: string;
  let spoolDir: string;
  let secretOf: (keyId: string) => string | undefined;
  let httpBase: string;
  const keyId = accessKeyIdFor('cred-for-someone-else');

  before(async () => {
    const infra = await getInfra();
    idp = infra.idp;
    upstream = await startCapturedKinesis();
    const t = testConfig(infra, (c) => withKinesis(c, upstream.endpoint, { skewSeconds: 2 }));
    spoolDir = t.spoolDir;
    const gw = await startGateway(t.config);
    endpoint = `http://127.0.0.1:${gw.addresses.kinesis!.port}`;
    httpBase = `http://127.0.0.1:${gw.addresses.http!.port}`;
    // the secret the gateway derives for a just-in-time access key id (config credentials)
    secretOf = (id) => gw.sigv4Secret(id);
    assert.ok(secretOf(keyId), 'the example config issues just-in-time credentials');
  });

  const errorOf = (p: Promise<unknown>) => p.then(() => assert.fail('expected an error'), (e: Error) => e);

  test('a bad signature: InvalidSignatureException, audited with who tried, nothing forwarded', async () => {
    // alice's own just-in-time key (so the key and its credential match), signed with a wrong secret
    const aws = await jitCredentials(httpBase, await idp.token('alice'), 'describe:payments.*');
    const client = kinesisClient(endpoint, { ...aws, secretAccessKey: 'not-the-derived-secret' });
    const err = await errorOf(client.send(new ListStreamsCommand({})));
    assert.equal(err.name, 'InvalidSignatureException');
    assert.equal(upstream.captured.length, 0);
    const row = readAudit(spoolDir).findLast((r) => r.event === 'operation' && r.meta.api === 'ListStreams');
    assert.equal(row?.decision, 'deny');
    assert.equal(row?.subject, 'alice');
  });

  test('an access key the gateway did not issue: UnrecognizedClientException', async () => {
    const client = kinesisClient(endpoint, { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'x', sessionToken: await idp.token('alice') });
    assert.equal((await errorOf(client.send(new ListStreamsCommand({})))).name, 'UnrecognizedClientException');
    assert.equal(upstream.captured.length, 0);
  });

  test('a correctly signed request whose session token is not the key\'s credential is refused', async () => {
    const client = kinesisClient(endpoint, { accessKeyId: keyId, secretAccessKey: secretOf(keyId)!, sessionToken: await idp.token('ops') });
    const err = await errorOf(client.send(new DescribeStreamSummaryCommand({ StreamName: 'anything' })));
    assert.equal(err.name, 'UnrecognizedClientException');
    assert.match(err.message, /does not belong/);
    assert.equal(upstream.captured.length, 0);
  });

  test('a replayed request: refused within the window (replay) and after it (expired), audited', async () => {
    // capture one signed request as the SDK sends it (HTTP/1.1 so it can be resent byte for byte)
    let sent: { headers: Record<string, string>; body: string } | undefined;
    const client = kinesisClient(endpoint, await jitCredentials(httpBase, await idp.token('ops'), 'describe:*'), { http1: true });
    client.middlewareStack.add(
      ((next: (a: { request: { headers: Record<string, string>; body: string } }) => Promise<unknown>) => (args: { request: { headers: Record<string, string>; body: string } }) => {
        sent = { headers: { ...args.request.headers }, body: String(args.request.body) };
        return next(args);
      }) as never,
      { step: 'finalizeRequest', priority: 'low' } as never,
    );
    await client.send(new ListStreamsCommand({}));
    assert.ok(sent?.headers.authorization?.startsWith('AWS4-HMAC-SHA256'));
    const forwarded = upstream.captured.length;
    const replay = async () => {
      const res = await request(endpoint, { method: 'POST', headers: sent!.headers, body: sent!.body });
      return (await res.body.json()) as { __type: string; message: string };
    };
    const within = await replay();
    assert.equal(within.__type, 'InvalidSignatureException');
    assert.match(within.message, /replay/);
    await new Promise((r) => setTimeout(r, 3000));
    const outside = await replay();
    assert.equal(outside.__type, 'InvalidSignatureException');
    assert.match(outside.message, /Signature expired/);
    assert.equal(upstream.captured.length, forwarded, 'the replays did not reach Kinesis');
    const rows = readAudit(spoolDir).filter((r) => r.event === 'operation' && /replay|Signature expired/.test(r.message));
    assert.equal(rows.length, 2);
    assert.ok(rows.every((r) => r.decision === 'deny' && r.subject === 'ops'));
  });
});
