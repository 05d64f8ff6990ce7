import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KinesisClient, ListStreamsCommand } from '@aws-sdk/client-kinesis';
import { NodeHttp2Handler, NodeHttpHandler } from '@smithy/node-http-handler';
import { getInfra, readAudit, startGateway } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { request, Agent as UndiciAgent } from 'undici';
import { jitCredentials, signKinesisCall, startCapturedKinesis, withKinesis, type AwsCredentials } from './helpers/kinesis.ts';

// The Kinesis listener over TLS, as SDKs reach https:// endpoints: HTTP/2 and HTTP/1.1 by ALPN.
const dir = mkdtempSync(join(tmpdir(), 'sg-kinesis-tls-'));
let endpoint: string;
let aws: AwsCredentials;
let spoolDir: string;

before(async () => {
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=streamgate kinesis test CA']);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'san.ext']);
  const infra = await getInfra();
  const upstream = await startCapturedKinesis();
  // on TLS, and allowing unsigned bodies (which only TLS then protects)
  const t = testConfig(infra, (c) => {
    withKinesis(c, upstream.endpoint);
    c.listeners.kinesis!.tls = { cert: join(dir, 'server.crt'), key: join(dir, 'server.key') };
    c.listeners.kinesis!.allowUnsignedPayload = true;
  });
  spoolDir = t.spoolDir;
  const gw = await startGateway(t.config);
  endpoint = `https://127.0.0.1:${gw.addresses.kinesis!.port}`;
  aws = await jitCredentials(`http://127.0.0.1:${gw.addresses.http!.port}`, await infra.idp.token('ops'), 'describe:*');
});

test('SDK v3 over TLS: HTTP/2 (its default) and HTTP/1.1, SigV4 with a just-in-time key', async () => {
  const ca = readFileSync(join(dir, 'ca.crt'));
  const h2 = new KinesisClient({ endpoint, region: 'us-east-1', credentials: aws, maxAttempts: 1, requestHandler: new NodeHttp2Handler({ nodeHttp2ConnectOptions: { ca } }) });
  const h1 = new KinesisClient({ endpoint, region: 'us-east-1', credentials: aws, maxAttempts: 1, requestHandler: new NodeHttpHandler({ httpsAgent: new Agent({ ca, keepAlive: true }) }) });
  try {
    for (const client of [h2, h1]) assert.ok(Array.isArray((await client.send(new ListStreamsCommand({}))).StreamNames));
  } finally {
    h2.destroy();
    h1.destroy();
  }
  const rows = readAudit(spoolDir).filter((r) => r.meta.api === 'ListStreams' && r.meta.auth === 'sigv4');
  assert.equal(rows.length, 2);
  assert.ok(rows.every((r) => r.decision === 'allow' && r.subject === 'ops'));
});

test('with allowUnsignedPayload on a TLS listener, an UNSIGNED-PAYLOAD signature is accepted', async () => {
  const body = '{}';
  const dispatcher = new UndiciAgent({ allowH2: false, connect: { ca: readFileSync(join(dir, 'ca.crt')) } });
  try {
    const res = await request(endpoint, { method: 'POST', headers: await signKinesisCall(endpoint, aws, 'ListStreams', body, { payloadHash: 'UNSIGNED-PAYLOAD' }), body, dispatcher });
    const answer = (await res.body.json()) as { StreamNames?: string[]; __type?: string };
    assert.equal(res.statusCode, 200, JSON.stringify(answer));
    assert.ok(Array.isArray(answer.StreamNames));
  } finally {
    await dispatcher.close();
  }
});
