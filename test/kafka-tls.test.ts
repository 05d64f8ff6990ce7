import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Admin } from '@platformatic/kafka';
import { createTopics, getInfra, readAudit, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import type { Gateway } from '../src/gateway.ts';

// TLS on the Kafka listener (bootstrap and broker ports), with SASL on top or with a client
// certificate (mTLS) as the identity.

const run = `${process.pid}-${Date.now() % 100000}`;
const SECRET = `secret.tls-${run}`;
let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let dir: string;

function openssl(args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

function certificates(): void {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=streamgate test CA']);
  const issue = (name: string, subj: string, ext: string) => {
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subj]);
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`]);
  };
  issue('server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  issue('client', '/CN=ops-service/OU=platform-admins', 'extendedKeyUsage=clientAuth\n');
}

before(async () => {
  infra = await getInfra();
  dir = mkdtempSync(join(tmpdir(), 'sg-tls-'));
  certificates();
  await createTopics(infra.kafka, [SECRET], 1);
  const made = testConfig(infra, (c) => {
    c.listeners.kafka!.tls = { cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), clientCa: join(dir, 'ca.crt') };
  });
  spoolDir = made.spoolDir;
  gateway = await startGateway(made.config);
});

test('TLS + SASL OAUTHBEARER: bootstrap and broker ports speak TLS', async () => {
  const admin = new Admin({
    clientId: 'tls-sasl',
    bootstrapBrokers: [`127.0.0.1:${gateway.addresses.kafka!.port}`],
    tls: { ca: readFileSync(join(dir, 'ca.crt')) },
    sasl: { mechanism: 'OAUTHBEARER', token: await infra.idp.token('bob') },
  });
  try {
    const topics = await admin.listTopics();
    assert.ok(!topics.includes(SECRET), 'bob cannot see secret topics');
    const cluster = await admin.metadata({ topics: [] });
    assert.ok(cluster.brokers.size > 0);
  } finally {
    await admin.close();
  }
});

test('mTLS: a verified client certificate is the identity (CN subject, OU groups), no SASL needed', async () => {
  const admin = new Admin({
    clientId: 'mtls',
    bootstrapBrokers: [`127.0.0.1:${gateway.addresses.kafka!.port}`],
    tls: { ca: readFileSync(join(dir, 'ca.crt')), cert: readFileSync(join(dir, 'client.crt')), key: readFileSync(join(dir, 'client.key')) },
  });
  try {
    assert.ok((await admin.listTopics()).includes(SECRET), 'the platform-admins OU may describe every topic');
  } finally {
    await admin.close();
  }
  const row = readAudit(spoolDir).find((r) => r.meta.api === 'mTLS');
  assert.ok(row);
  assert.equal(row.subject, 'ops-service');
  assert.equal(row.issuer, 'mtls:streamgate test CA');
  assert.deepEqual(row.roles, ['platform-admin']);
});
