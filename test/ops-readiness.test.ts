import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startKafka, type RunningKafka } from '../src/dev/kafka.ts';
import { getInfra, startGateway } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';

// Readiness follows the upstream: a gateway in front of its own broker, which the test
// stops and starts again on the same port and data directory.

const dataDir = mkdtempSync(join(tmpdir(), 'sg-ready-kafka-'));
let broker: RunningKafka | undefined;
after(async () => {
  await broker?.stop().catch(() => {});
  rmSync(dataDir, { recursive: true, force: true });
});

async function readyz(admin: string): Promise<{ status: number; body: { status: string; checks: Record<string, { ok: boolean; detail?: string }> } }> {
  const res = await request(`${admin}/readyz`);
  return { status: res.statusCode, body: (await res.body.json()) as never };
}

async function until(admin: string, want: number, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let last = await readyz(admin);
  while (last.status !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    last = await readyz(admin);
  }
  return last;
}

test('readyz turns 503 when the broker stops and 200 again when it returns', async () => {
  const infra = await getInfra();
  broker = await startKafka({ dataDir });
  const { port } = broker;
  const gateway = await startGateway(testConfig({ ...infra, kafka: broker.bootstrap }).config);
  const admin = `http://127.0.0.1:${gateway.addresses.admin!.port}`;

  const up = await until(admin, 200, 20_000);
  assert.equal(up.status, 200, JSON.stringify(up.body));
  assert.ok(Object.values(up.body.checks).every((c) => c.ok));

  await broker.stop();
  const down = await until(admin, 503, 20_000);
  assert.equal(down.status, 503, JSON.stringify(down.body));
  assert.equal(down.body.status, 'not-ready');
  assert.equal(down.body.checks.upstream!.ok, false);
  assert.ok(down.body.checks.upstream!.detail, 'the failed check says why');
  assert.equal(down.body.checks.wasm!.ok, true, 'only the upstream check fails');
  assert.equal(down.body.checks.spool!.ok, true);
  // liveness is not readiness: the process is fine
  const live = await request(`${admin}/livez`);
  assert.equal(live.statusCode, 200);
  await live.body.dump();

  broker = await startKafka({ port, dataDir });
  const back = await until(admin, 200, 40_000);
  assert.equal(back.status, 200, JSON.stringify(back.body));
});
