import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { CreateStreamCommand, DescribeStreamSummaryCommand, PutRecordCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT } from 'jose';
import { getInfra, readAudit, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { jitCredentials, kinesisClient, startCapturedKinesis, withKinesis, type CapturedKinesis } from './helpers/kinesis.ts';
import { api } from './helpers/approvals.ts';
import type { Gateway } from '../src/gateway.ts';

// Just-in-time credentials on the Kinesis listener (SigV4 key pair + the credential as session
// token): revoked and forged credentials are refused before anything reaches Kinesis. (Issuance,
// scope and expiry on Kinesis are in kinesis.test.ts.)

const RUN = randomUUID().slice(0, 8);
const STREAM = `payments.jk-${RUN}`;

let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let upstream: CapturedKinesis;
let endpoint: string;
let httpBase: string;
let adminUrl: string;

before(async () => {
  infra = await getInfra();
  upstream = await startCapturedKinesis();
  const t = testConfig(infra, (c) => withKinesis(c, upstream.endpoint));
  spoolDir = t.spoolDir;
  gateway = await startGateway(t.config);
  endpoint = `http://127.0.0.1:${gateway.addresses.kinesis!.port}`;
  httpBase = `http://127.0.0.1:${gateway.addresses.http!.port}`;
  adminUrl = `http://127.0.0.1:${gateway.addresses.admin!.port}`;
  const ops = kinesisClient(endpoint, await jitCredentials(httpBase, await infra.idp.token('ops'), `admin:${STREAM} describe:${STREAM}`));
  await ops.send(new CreateStreamCommand({ StreamName: STREAM, ShardCount: 1 }));
  for (let i = 0; i < 100; i++) {
    const d = await ops.send(new DescribeStreamSummaryCommand({ StreamName: STREAM }));
    if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
    await new Promise((r) => setTimeout(r, 50));
  }
});

async function refusal(client: KinesisClient, key: string): Promise<Error> {
  const before = upstream.captured.length;
  const err = await client.send(new PutRecordCommand({ StreamName: STREAM, Data: Buffer.from('{"n":1}'), PartitionKey: key })).then(
    () => assert.fail('expected a refusal'),
    (e: Error) => e,
  );
  assert.equal(upstream.captured.length, before, 'nothing reached Kinesis');
  return err;
}

test('Kinesis: a revoked credential\'s key pair is refused (UnrecognizedClientException), audited with its id', async () => {
  const aws = await jitCredentials(httpBase, await infra.idp.token('alice'), `produce:${STREAM}`);
  const client = kinesisClient(endpoint, aws);
  await client.send(new PutRecordCommand({ StreamName: STREAM, Data: Buffer.from('{"n":0}'), PartitionKey: 'before' }));
  const id = decodeJwt(aws.sessionToken).jti!;
  assert.ok(readAudit(spoolDir).some((r) => r.protocol === 'kinesis' && r.credential_id === id && r.decision === 'allow'));

  const revoked = await api(adminUrl, await infra.idp.token('ops'), 'POST', `/v1/credentials/${id}/revoke`, { reason: 'kinesis test' });
  assert.equal(revoked.status, 200);
  const err = await refusal(client, 'after');
  assert.equal(err.name, 'UnrecognizedClientException', `${err.name}: ${err.message}`);
  assert.match(err.message, /was revoked/);
  assert.ok(readAudit(spoolDir).some((r) => r.protocol === 'kinesis' && r.credential_id === id && r.decision === 'deny' && /was revoked/.test(r.message)));
});

test('Kinesis: a real key pair with a forged session token (same claims and kid, another signing key) is refused', async () => {
  const aws = await jitCredentials(httpBase, await infra.idp.token('alice'), `produce:${STREAM}`);
  const { privateKey } = await generateKeyPair('EdDSA');
  // wider scope in the forgery: what an attacker would want
  const forged = await new SignJWT({ ...decodeJwt(aws.sessionToken), scope: 'produce:* admin:cluster' })
    .setProtectedHeader({ alg: 'EdDSA', kid: decodeProtectedHeader(aws.sessionToken).kid! })
    .sign(privateKey);
  const err = await refusal(kinesisClient(endpoint, { ...aws, sessionToken: forged }), 'forged');
  assert.equal(err.name, 'UnrecognizedClientException', `${err.name}: ${err.message}`);
  assert.match(err.message, /signature is invalid/);
});
