import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'undici';
import { createTopics, freePort, getInfra, readAudit, readTopic } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { spawnGateway } from './helpers/gateway-process.ts';

// The shared-state store (Redis) dies under load and comes back empty (no persistence, as
// configured on this machine). What clients see: writes under an already issued
// just-in-time credential go on (signing keys and revocations are mirrored in memory);
// what needs the store fails closed and fast — issuing credentials (503,
// temporarily_unavailable) and operations that need an approval (503) — and nothing
// acknowledged is lost or unaudited. After the restart the store is rebuilt and issuing
// and approvals work again.

const CARD = '4111 1111 1111 1111';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const servers = new Set<ChildProcess>();
after(() => {
  for (const s of servers) s.kill('SIGKILL');
});

/** A private redis-server (the machine's own one stays untouched); resolves once it accepts commands. */
async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  servers.add(child);
  child.once('exit', () => servers.delete(child));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('redis-server did not start')), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      if (/Ready to accept connections/.test(d.toString())) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited (${code})`)));
  });
  return child;
}

test('Redis stops under load and returns empty: issued credentials keep working, issuing and approvals fail closed with 503, nothing acknowledged is lost', async () => {
  const infra = await getInfra();
  const port = await freePort();
  let redis = await startRedis(port);
  const run = `${process.pid}-${Date.now() % 100000}`;
  const topic = `payments.redis-fault-${run}`;
  const payouts = `payouts.redis-fault-${run}`;
  await createTopics(infra.kafka, [topic, payouts]);
  const { yaml, spoolDir } = testConfig(infra, (c) => {
    c.state = { kind: 'redis', url: `redis://127.0.0.1:${port}`, prefix: 'faults:' };
  });
  assert.match(yaml, new RegExp(`url: redis://127.0.0.1:${port}`));
  const gw = await spawnGateway(yaml);
  const base = `http://127.0.0.1:${gw.http}`;
  const alice = await infra.idp.token('alice');
  const exchange = async () => {
    const res = await request(`${base}/v1/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', subject_token: alice, scope: 'produce:payments.* produce:payouts.*' }).toString(),
      headersTimeout: 15_000,
    });
    return { status: res.statusCode, body: (await res.body.json()) as { access_token?: string; error?: string } };
  };
  const produce = async (to: string, token: string, id: string, prefer?: string) => {
    const started = Date.now();
    const res = await request(`${base}/v3/clusters/local/topics/${to}/records`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(prefer ? { prefer } : {}) },
      body: JSON.stringify({ value: { type: 'JSON', data: { id, card: CARD } } }),
      headersTimeout: 60_000,
    });
    const json = (await res.body.json().catch(() => ({}))) as { partition_id?: number; offset?: number; message?: string };
    return { status: res.statusCode, ms: Date.now() - started, offset: res.statusCode === 200 ? `${json.partition_id}:${json.offset}` : undefined, message: json.message };
  };
  try {
    const issued = await exchange();
    assert.equal(issued.status, 200, JSON.stringify(issued.body));
    const credential = issued.body.access_token!;

    const acked = new Map<string, string>();
    const statuses = new Map<number, number>();
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const r = await produce(topic, credential, `r${w}-${i}`).catch(() => ({ status: 0, offset: undefined }));
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 200) acked.set(`r${w}-${i}`, r.offset!);
        else await sleep(50);
      }
    };
    const load = Promise.all([0, 1, 2].map(worker));
    await sleep(1000);
    const beforeOutage = acked.size;

    redis.kill('SIGKILL');
    await sleep(1500);
    const duringOutage = acked.size;
    const issuing = await exchange();
    assert.equal(issuing.status, 503, `issuing fails closed: ${JSON.stringify(issuing.body)}`);
    assert.equal(issuing.body.error, 'temporarily_unavailable');
    const held = await produce(payouts, alice, 'needs-approval');
    assert.equal(held.status, 503, `an operation that needs an approval fails closed: ${held.message}`);
    assert.ok(held.ms < 15_000, `and fast (${held.ms} ms)`);
    await sleep(1000);
    const outageAcks = acked.size - duringOutage;

    redis = await startRedis(port);
    await sleep(6000); // reconnect and the revocation resync
    const again = await exchange();
    assert.equal(again.status, 200, `issuing works again: ${JSON.stringify(again.body)}`);
    const asked = await produce(payouts, alice, 'needs-approval-2', 'respond-async');
    assert.equal(asked.status, 202, `approvals work again (a request is created): ${asked.message}`);
    stop = true;
    await load;

    assert.ok(beforeOutage > 5, `${beforeOutage} writes before the outage`);
    assert.ok(outageAcks > 0, 'writes under an issued credential went on while Redis was down');
    assert.ok(!statuses.has(500) && !statuses.has(0), `no 500s, no dropped connections: ${JSON.stringify([...statuses])}`);
    const seen = new Set<string>();
    const stored = await readTopic(infra.kafka, topic, Infinity, 30_000, (read) => {
      seen.add((JSON.parse(read.at(-1)!.value!) as { id: string }).id);
      return [...acked.keys()].every((id) => seen.has(id));
    });
    const ids = new Set(stored.map((r) => (JSON.parse(r.value!) as { id: string }).id));
    assert.deepEqual([...acked.keys()].filter((id) => !ids.has(id)), [], 'every acknowledged write is stored');
    assert.ok(stored.every((r) => !r.value!.includes(CARD)), 'masked');
    const offsets = new Set(readAudit(spoolDir).filter((r) => r.resource === topic && r.decision === 'allow').flatMap((r) => r.offsets));
    assert.deepEqual([...acked.values()].filter((o) => !offsets.has(o)), [], 'every acknowledged write is audited');
    const rows = readAudit(spoolDir).filter((r) => r.resource === payouts);
    assert.ok(rows.some((r) => r.decision !== 'allow'), 'the refused approval-bound write is audited');
    assert.ok(gw.alive());
  } finally {
    await gw.stop();
  }
});
