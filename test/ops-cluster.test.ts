import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import { getInfra, readAudit } from './helpers/infra.ts';

// `serve --processes 2`: two workers share the HTTP port, each with its own audit spool;
// the primary serves the admin port with the workers' metrics summed.

test('serve --processes 2 shares the port, splits the spool per worker and aggregates metrics', async (t) => {
  const infra = await getInfra();
  const dir = mkdtempSync(join(tmpdir(), 'sg-cluster-'));
  const file = join(dir, 'gateway.yaml');
  writeFileSync(
    file,
    `instance: cl
log: { level: info }
listeners:
  http: { host: 127.0.0.1, port: 0, clusterId: local }
  admin: { host: 127.0.0.1, port: 0 }
upstream: { kind: ack }
identity:
  issuers: [{ issuer: "${infra.idp.issuer}", audience: streamgate, algorithms: [ES256] }]
policy:
  roles: { writer: { when: { groups: [payments-writers] } } }
  grants: [{ roles: [writer], actions: [produce], topics: ["*"] }]
audit:
  spool: { dir: "${join(dir, 'audit')}" }
`,
  );
  const child = spawn(process.execPath, ['src/cli/main.ts', 'serve', '--config', file, '--processes', '2'], { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => {
    child.kill('SIGTERM');
    return new Promise((r) => child.once('exit', r));
  });
  let httpPort = 0;
  let adminPort = 0;
  let workersReady = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the cluster did not start in 30 s')), 30_000);
    createInterface({ input: child.stderr! }).on('line', (line) => {
      const l = JSON.parse(line) as { msg: string; port?: number };
      if (l.msg === 'HTTP listener ready') {
        httpPort = l.port!;
        workersReady++;
      }
      if (l.msg.startsWith('admin listener ready')) adminPort = l.port!;
      if (workersReady === 2 && adminPort) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code}`)));
  });

  const token = await infra.idp.token('alice');
  for (let i = 0; i < 8; i++) {
    // a new connection each time: the primary hands connections to the workers in turn
    const res = await request(`http://127.0.0.1:${httpPort}/v3/clusters/local/topics/t/records`, {
      method: 'POST',
      reset: true,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, connection: 'close' },
      body: JSON.stringify({ value: { data: i } }),
    });
    assert.equal(res.statusCode, 200, await res.body.text());
  }
  const metrics = await (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text();
  assert.match(metrics, /^streamgate_operations_total\{listener="http",action="produce",outcome="ok"\} 8$/m, 'summed over the workers');
  const ready = await request(`http://127.0.0.1:${adminPort}/readyz`);
  const body = (await ready.body.json()) as { checks: Record<string, { ok: boolean }> };
  assert.equal(ready.statusCode, 200, JSON.stringify(body));
  assert.deepEqual(Object.keys(body.checks).sort(), ['worker-1', 'worker-2']);
  assert.ok(existsSync(join(dir, 'audit', '1')) && existsSync(join(dir, 'audit', '2')), 'one spool per worker');
  for (const n of ['1', '2']) {
    const rows = readAudit(join(dir, 'audit', n)).filter((r) => r.event === 'operation');
    assert.ok(rows.length > 0, `worker ${n} served requests`);
    assert.ok(rows.every((r) => r.instance === `cl-${n}`));
  }
});
