import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { createTopics, getInfra, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import type { Gateway } from '../src/gateway.ts';
import { GatewayMetrics } from '../src/ops/metrics.ts';
import { GatewayError, type Operation } from '../src/operation.ts';

// Integration: HTTP produce through the gateway to the real Kafka, then scrape the admin listener.

let infra: Infra;
let gateway: Gateway;
let base: string;
let admin: string;

before(async () => {
  infra = await getInfra();
  await createTopics(infra.kafka, ['payments.metrics'], 1);
  gateway = await startGateway(testConfig(infra).config);
  base = `http://127.0.0.1:${gateway.addresses.http!.port}`;
  admin = `http://127.0.0.1:${gateway.addresses.admin!.port}`;
});

/** Prometheus text -> "name{labels}" -> value (labels as written by prom-client, sorted by name here). */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = (m[2] ?? '').match(/\w+="(?:[^"\\]|\\.)*"/g)?.sort().join(',') ?? '';
    out.set(labels ? `${m[1]}{${labels}}` : m[1]!, Number(m[3]));
  }
  return out;
}

async function scrape(): Promise<Map<string, number>> {
  const res = await request(`${admin}/metrics`);
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /text\/plain/);
  return parse(await res.body.text());
}

test('the metrics endpoint reports operations, latencies, bytes, masking, connections and the audit spool', async () => {
  const agent = new Agent({ connections: 1 });
  const alice = await infra.idp.token('alice');
  const bob = await infra.idp.token('bob');
  const body = JSON.stringify({ value: { type: 'JSON', data: { card: '4111 1111 1111 1111', amount: 1 } } });
  const produce = (token: string) =>
    request(`${base}/v3/clusters/local/topics/payments.metrics/records`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body,
    });
  for (let i = 0; i < 3; i++) {
    const res = await produce(alice);
    assert.equal(res.statusCode, 200, await res.body.text());
  }
  const denied = await produce(bob);
  assert.equal(denied.statusCode, 403);
  await denied.body.dump();

  const m = await scrape();
  const get = (key: string) => m.get(key) ?? NaN;
  assert.equal(get('streamgate_operations_total{action="produce",listener="http",outcome="ok"}'), 3);
  assert.equal(get('streamgate_operations_total{action="produce",listener="http",outcome="forbidden"}'), 1);
  assert.equal(get('streamgate_operation_duration_seconds_count{action="produce",listener="http"}'), 4);
  assert.equal(get('streamgate_gateway_duration_seconds_count{action="produce",listener="http"}'), 4);
  // only the allowed ones reached the broker
  assert.equal(get('streamgate_upstream_duration_seconds_count{action="produce",listener="http"}'), 3);
  const total = get('streamgate_operation_duration_seconds_sum{action="produce",listener="http"}');
  const upstream = get('streamgate_upstream_duration_seconds_sum{action="produce",listener="http"}');
  const own = get('streamgate_gateway_duration_seconds_sum{action="produce",listener="http"}');
  assert.ok(upstream > 0 && own > 0 && total < 30, `sane latencies: total ${total}, upstream ${upstream}, own ${own}`);
  assert.ok(Math.abs(total - upstream - own) < 1e-6, 'gateway time + upstream time = operation time');
  assert.equal(get('streamgate_bytes_total{action="produce",direction="in",listener="http"}'), 4 * Buffer.byteLength(JSON.stringify({ card: '4111 1111 1111 1111', amount: 1 })));
  assert.equal(get('streamgate_records_total{action="produce",listener="http"}'), 4);
  assert.equal(get('streamgate_masking_hits_total{rule="pci.card-number"}'), 3);
  assert.equal(get('streamgate_connections_open{listener="http"}'), 1, 'one keep-alive connection');
  assert.equal(get('streamgate_connections_total{listener="http"}'), 1);
  assert.equal(get('streamgate_sessions_open{protocol="http"}'), 1);
  assert.equal(get('streamgate_inspection_pool_queue_depth'), 0);
  assert.equal(get('streamgate_audit_spool_healthy'), 1);
  assert.ok(get('streamgate_audit_rows_written_total') >= 5, 'operation rows and the session start');
  assert.equal(get('streamgate_audit_unshipped_bytes'), 0);
  assert.equal(get('streamgate_audit_shipping_lag_seconds'), 0);
  assert.equal(get(`streamgate_policy_info{version="${gateway.policyVersion}"}`), 1);
  assert.ok(get('streamgate_process_resident_memory_bytes') > 0, 'default process metrics');
  for (const key of m.keys()) assert.ok(!key.includes('alice') && !key.includes('payments.metrics'), `no identities or topics in labels: ${key}`);

  await agent.close();
  // the closed connection is counted down
  for (let i = 0; i < 50 && (await scrape()).get('streamgate_connections_open{listener="http"}') !== 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal((await scrape()).get('streamgate_connections_open{listener="http"}'), 0);
});

test('livez and readyz answer with each check named', async () => {
  const live = await request(`${admin}/livez`);
  assert.equal(live.statusCode, 200);
  assert.deepEqual(await live.body.json(), { status: 'ok' });
  const ready = await request(`${admin}/readyz`);
  const json = (await ready.body.json()) as { status: string; checks: Record<string, { ok: boolean }> };
  assert.equal(ready.statusCode, 200, JSON.stringify(json));
  assert.equal(json.status, 'ready');
  assert.deepEqual(Object.keys(json.checks).sort(), ['identity', 'spool', 'upstream', 'wasm']);
  // the data port keeps its own health check (Dockerfile healthchecks may still use it)
  const healthz = await request(`${base}/healthz`);
  assert.equal(healthz.statusCode, 200);
  await healthz.body.dump();
});

test('perTopicLabels adds topic labels; blocked operations are counted per rule', async () => {
  const metrics = new GatewayMetrics({ perTopicLabels: true }, {
    poolQueueSize: () => 0,
    policyVersion: () => 'v1',
    audit: () => ({ healthy: true, unshippedBytes: 10, rowsWritten: 1, rowsDropped: 0, shipper: { rowsShipped: 0, retries: 0, lastShippedAt: 0 } }),
  });
  const op = { action: 'produce', protocol: 'kafka', resource: { kind: 'topic', name: 'customers.x' }, meta: {} } as unknown as Operation;
  metrics.observe(op, 'kafka', new GatewayError('blocked', 'no', { rule: 'secrets.private-key' }), 0.001, 100);
  const m = parse(await metrics.render());
  assert.equal(m.get('streamgate_operations_total{action="produce",listener="kafka",outcome="blocked",topic="customers.x"}'), 1);
  assert.equal(m.get('streamgate_blocked_total{rule="secrets.private-key",topic="customers.x"}'), 1);
  assert.equal(m.get('streamgate_bytes_total{action="produce",direction="in",listener="kafka",topic="customers.x"}'), 100);
  assert.ok(m.get('streamgate_audit_shipping_lag_seconds')! >= 0, 'lag while rows wait for ClickHouse');
});
