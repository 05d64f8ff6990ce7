import { test, before, after } from 'node:test';
import { Redis } from 'ioredis';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { createTopics, getInfra, readAudit, readTopic, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { spawnGateway, type GatewayProcess } from './helpers/gateway-process.ts';
import { api, pendingFor, sleep } from './helpers/approvals.ts';

// Two gateway processes sharing the real Redis (state.kind: redis, one prefix for this run),
// with the example policy's payouts-writes rule: a write held on one is released by an
// approval given on the other, and the grant then holds on both.

const run = `${process.pid}-${Date.now() % 100000}`;
const TOPIC = `payouts.redis-${run}`;
let infra: Infra;
let a: GatewayProcess;
let b: GatewayProcess;
let spoolB: string;

function yamlFor(infra: Infra): { yaml: string; spoolDir: string } {
  const { yaml, spoolDir } = testConfig(infra, (c) => {
    c.state = { kind: 'redis', url: 'redis://127.0.0.1:6379', prefix: `sg-approvals-test-${run}:` };
  });
  return { yaml, spoolDir };
}

before(async () => {
  infra = await getInfra();
  await createTopics(infra.kafka, [TOPIC]);
  const configA = yamlFor(infra);
  const configB = yamlFor(infra);
  spoolB = configB.spoolDir;
  [a, b] = await Promise.all([spawnGateway(configA.yaml, { wait: ['http', 'admin'] }), spawnGateway(configB.yaml, { wait: ['http', 'admin'] })]);
});

// the run's keys expire by themselves; removed here so the shared Redis stays tidy
after(async () => {
  const redis = new Redis('redis://127.0.0.1:6379', { lazyConnect: true });
  try {
    await redis.connect();
    const keys = await redis.keys(`sg-approvals-test-${run}:*`);
    if (keys.length > 0) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
});

async function produce(port: number, value: unknown) {
  const res = await request(`http://127.0.0.1:${port}/v3/clusters/local/topics/${TOPIC}/records`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await infra.idp.token('alice')}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value: { type: 'JSON', data: value } }),
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown>, at: Date.now() };
}

test('an approval given on one gateway process releases the write held on the other; the grant holds on both', async () => {
  const held = produce(b.http!, { n: 1 });
  const adminA = `http://127.0.0.1:${a.admin}`;
  const carol = await infra.idp.token('carol');
  const pending = await pendingFor(adminA, carol, TOPIC);
  assert.equal(pending.subject, 'alice');
  assert.equal(pending.url, `http://127.0.0.1:${a.admin}/v1/approvals/${pending.id}`);
  const approvedAt = Date.now();
  const decided = await api(adminA, carol, 'POST', `/v1/approvals/${pending.id}/approve`, { reason: 'shared state' });
  assert.equal(decided.status, 200);
  const released = await held;
  assert.equal(released.status, 200, JSON.stringify(released.json));
  console.log(`# held write on process B released ${released.at - approvedAt} ms after the approval on process A`);

  // the grant is in Redis: the next write passes at once on either process
  for (const port of [a.http!, b.http!]) assert.equal((await produce(port, { n: 2 })).status, 200);
  assert.equal((await readTopic(infra.kafka, TOPIC, 3)).length, 3);

  const rowsB = readAudit(spoolB).filter((r) => r.event === 'operation' && r.resource === TOPIC);
  assert.ok(rowsB.some((r) => r.decision === 'allow' && r.approval_id === pending.id && r.meta.approval_outcome === 'released'));
  assert.ok(rowsB.some((r) => r.decision === 'allow' && r.approval_id === pending.id && r.meta.approval_outcome === undefined && r.rule === 'approval:payouts-writes'));
  assert.ok(readAudit(spoolB).some((r) => r.event === 'approval-request' && r.approval_id === pending.id), 'the request was opened (and audited) where the write arrived');
});

test('serve --processes 2 on Redis: the primary forwards the approvals API to a worker; the grant holds on both workers', async (t) => {
  const topic = `payouts.cluster-${run}`;
  await createTopics(infra.kafka, [topic]);
  const { yaml } = yamlFor(infra);
  const clustered = await spawnGateway(yaml, { wait: ['http', 'admin'], args: ['--processes', '2'] });
  t.after(() => clustered.stop());
  const adminUrl = `http://127.0.0.1:${clustered.admin}`;
  const carol = await infra.idp.token('carol');
  // a new connection per write: the primary hands connections to the workers in turn
  const write = async (n: number) => {
    const res = await request(`http://127.0.0.1:${clustered.http}/v3/clusters/local/topics/${topic}/records`, {
      method: 'POST',
      reset: true,
      headers: { authorization: `Bearer ${await infra.idp.token('alice')}`, 'content-type': 'application/json', 'prefer': 'respond-async', connection: 'close' },
      body: JSON.stringify({ value: { type: 'JSON', data: { n } } }),
    });
    return { status: res.statusCode, location: res.headers.location as string | undefined, body: await res.body.text() };
  };
  const accepted = await write(1);
  assert.equal(accepted.status, 202, accepted.body);
  assert.match(accepted.location!, new RegExp(`^${adminUrl}/v1/approvals/[0-9a-f-]{36}$`), `the URL names the primary's admin listener: ${accepted.location}`);
  // the workers' admin routes are announced once each worker has started completely
  for (let status = 0; status !== 200; ) {
    const page = await request(`${adminUrl}/approvals`);
    status = page.statusCode;
    await page.body.dump();
    if (status !== 200) {
      assert.equal(status, 503, 'not ready yet, or the page');
      await sleep(100);
    }
  }
  const pending = await pendingFor(adminUrl, carol, topic);
  assert.equal((await api(adminUrl, carol, 'POST', `/v1/approvals/${pending.id}/approve`, {})).status, 200);
  // the grant is in Redis: writes through either worker pass now
  for (const n of [2, 3, 4]) assert.equal((await write(n)).status, 200);
  assert.equal((await readTopic(infra.kafka, topic, 3)).length, 3);
});
