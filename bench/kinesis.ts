// Kinesis suite: PutRecords with the AWS SDK v3 in a loop, direct to kinesalite vs through
// the gateway's Kinesis listener (SigV4 with a just-in-time key from POST /v1/token, all
// controls on: the example policy, card masking on payments.*, audit), in one run, rotating
// the targets per repetition. The gateway is measured twice: with the SDK's default HTTP/2
// handler (what users get) and with its HTTP/1.1 handler (what the direct runs use, since
// kinesalite speaks only HTTP/1.1), so the protocol's share of the difference shows.
//   saturation  `concurrency` loops of PutRecords with `batch` 1 KiB records (each with a card number)
//   latency     one loop of PutRecords with 10 records: p50/p99 per call, gateway minus direct
//   fixed       one PutRecords of 10 records at a time at a fixed moderate rate (100 calls/s):
//               the sub-millisecond promise, p50/p99 added over direct
// Metrics: kinesis.throughputRatio (gateway/direct records/s), kinesis.p50AddedMs, kinesis.p99AddedMs,
// kinesis.fixed.p50_added_ms, kinesis.fixed.p99_added_ms.
// Standalone: node bench/kinesis.ts [--quick]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CreateStreamCommand, DescribeStreamSummaryCommand, KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { startIdp } from '../src/dev/idp.ts';
import { ROOT } from './lib/env.ts';
import { processCpuSeconds } from './lib/cpu.ts';
import { median } from './lib/load.ts';
import { eventJson } from './lib/payload.ts';
import { freePort, onCleanup, spawnNode, stopAll, waitHealthy } from './lib/procs.ts';
import { printTable } from './lib/table.ts';

const STREAM = 'payments.cards';
const RECORD_BYTES = 1024;
type TargetId = 'direct' | 'gateway' | 'gateway-h1';
const TARGETS: TargetId[] = ['direct', 'gateway', 'gateway-h1'];

export interface KinesisSuiteResult {
  settings: Record<string, unknown>;
  runs: Array<{ target: TargetId; kind: 'saturation' | 'latency' | 'fixed'; rep: number; calls: number; records: number; seconds: number; recordsPerSec: number; p50Ms: number; p99Ms: number; failed: number; cpu?: { gatewayMsPerMb: number; endpointMsPerMb: number } }>;
  metrics: Record<string, number>;
}

function settingsFor(quick: boolean, reps: number) {
  return { reps, batch: 100, concurrency: 8, seconds: quick ? 1.5 : 5, latencyBatch: 10, latencySeconds: quick ? 1.5 : 5, fixedRate: 100, warmupSeconds: quick ? 0.5 : 2 };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A just-in-time AWS key pair for `scope` from the gateway's token exchange. */
async function jitKeys(httpBase: string, subjectToken: string, scope: string) {
  const res = await fetch(`${httpBase}/v1/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: subjectToken, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', scope, expires_in: '3600' }),
  });
  const body = (await res.json()) as { aws?: { accessKeyId: string; secretAccessKey: string; sessionToken: string; expiration: string } };
  if (!body.aws) throw new Error(`token exchange failed: ${res.status} ${JSON.stringify(body)}`);
  return { ...body.aws, expiration: new Date(body.aws.expiration) };
}

async function load(client: KinesisClient, entries: Array<{ Data: Uint8Array; PartitionKey: string }>, concurrency: number, seconds: number) {
  const latencies: number[] = [];
  let records = 0;
  let failed = 0;
  const started = performance.now();
  const until = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        const res = await client.send(new PutRecordsCommand({ StreamName: STREAM, Records: entries }));
        latencies.push(performance.now() - t0);
        records += entries.length - (res.FailedRecordCount ?? 0);
        failed += res.FailedRecordCount ?? 0;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { calls: latencies.length, records, failed, seconds: elapsed, recordsPerSec: records / elapsed, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

/** One call at a time at `rate` calls/s (a call that takes longer than the interval delays the next). */
async function atRate(client: KinesisClient, entries: Array<{ Data: Uint8Array; PartitionKey: string }>, rate: number, seconds: number) {
  const latencies: number[] = [];
  let records = 0;
  let failed = 0;
  const started = performance.now();
  let next = started;
  while (performance.now() < started + seconds * 1000) {
    const t0 = performance.now();
    const res = await client.send(new PutRecordsCommand({ StreamName: STREAM, Records: entries }));
    latencies.push(performance.now() - t0);
    records += entries.length - (res.FailedRecordCount ?? 0);
    failed += res.FailedRecordCount ?? 0;
    next += 1000 / rate;
    const wait = next - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { calls: latencies.length, records, failed, seconds: elapsed, recordsPerSec: records / elapsed, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

export async function runKinesisSuite(opts: { quick: boolean; reps: number; profileDir?: string }, log: (s: string) => void = console.log): Promise<KinesisSuiteResult> {
  const settings = settingsFor(opts.quick, opts.reps);
  const work = mkdtempSync(join(tmpdir(), 'streamgate-bench-kinesis-'));
  onCleanup(async () => rmSync(work, { recursive: true, force: true }));

  // kinesalite in its own process, as the gateway: the load generator is this process
  const kinesisPort = await freePort();
  const kinesalite = spawnNode('kinesalite', 'src/dev/kinesis.ts', [String(kinesisPort)], { logFile: join(work, 'kinesalite.log'), cwd: ROOT });
  const kinesisEndpoint = `http://127.0.0.1:${kinesisPort}`;
  const idp = await startIdp({ port: 0 });
  onCleanup(() => idp.stop());

  const example = parseYaml(readFileSync(join(ROOT, 'streamgate.example.yaml'), 'utf8')) as Record<string, unknown> & {
    listeners: Record<string, Record<string, unknown>>;
    identity: { issuers: Array<Record<string, unknown>> };
    audit?: Record<string, unknown>;
  };
  const httpPort = await freePort();
  const gwPort = await freePort();
  const c = structuredClone(example);
  c.instance = 'bench-kinesis';
  c.log = { level: 'warn' };
  // the HTTP listener only answers /healthz here; its writes would go to the instant upstream
  c.listeners = { http: { ...c.listeners.http, host: '127.0.0.1', port: httpPort, clusterId: 'local' }, kinesis: { host: '127.0.0.1', port: gwPort } };
  c.upstream = { kind: 'ack', kinesis: { endpoint: kinesisEndpoint, credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } } };
  c.identity.issuers[0] = { ...c.identity.issuers[0], issuer: idp.issuer };
  c.audit = { ...c.audit, spool: { ...(c.audit?.spool as Record<string, unknown>), dir: join(work, 'audit') } };
  delete c.recording;
  const file = join(work, 'gateway.yaml');
  writeFileSync(file, toYaml(c));
  const gateway = spawnNode('kinesis-gateway', 'src/cli/main.ts', ['serve', '--config', file], {
    logFile: join(work, 'gateway.log'),
    cwd: ROOT,
    nodeArgs: opts.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`] : [],
  });
  await waitHealthy(gateway, `http://127.0.0.1:${httpPort}`);

  const direct = new KinesisClient({ endpoint: kinesisEndpoint, region: 'us-east-1', credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' }, requestHandler: new NodeHttpHandler({ httpAgent: { keepAlive: true, maxSockets: 64 } }), maxAttempts: 1 });
  const keys = await jitKeys(`http://127.0.0.1:${httpPort}`, await idp.token('alice'), `produce:${STREAM}`);
  const gatewayEndpoint = `http://127.0.0.1:${gwPort}`;
  const through = new KinesisClient({ endpoint: gatewayEndpoint, region: 'us-east-1', credentials: keys, maxAttempts: 1 });
  const throughH1 = new KinesisClient({ endpoint: gatewayEndpoint, region: 'us-east-1', credentials: keys, maxAttempts: 1, requestHandler: new NodeHttpHandler({ httpAgent: { keepAlive: true, maxSockets: 64 } }) });
  onCleanup(async () => {
    direct.destroy();
    through.destroy();
    throughH1.destroy();
  });
  await direct.send(new CreateStreamCommand({ StreamName: STREAM, ShardCount: 4 }));
  for (let i = 0; i < 200; i++) {
    const d = await direct.send(new DescribeStreamSummaryCommand({ StreamName: STREAM }));
    if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
    await new Promise((r) => setTimeout(r, 50));
  }

  const record = (i: number) => ({ Data: Buffer.from(JSON.stringify(eventJson(RECORD_BYTES))), PartitionKey: `order-${i}` });
  const batch = Array.from({ length: settings.batch }, (_v, i) => record(i));
  const small = Array.from({ length: settings.latencyBatch }, (_v, i) => record(i));
  const targets: Record<TargetId, KinesisClient> = { direct, gateway: through, 'gateway-h1': throughH1 };
  for (const client of Object.values(targets)) await load(client, batch, settings.concurrency, settings.warmupSeconds);

  const runs: KinesisSuiteResult['runs'] = [];
  for (let rep = 0; rep < settings.reps; rep++) {
    // rotate the order so no target always runs first
    const order = TARGETS.map((_t, i) => TARGETS[(i + rep) % TARGETS.length]!);
    for (const target of order) {
      // CPU of the gateway and of the endpoint (kinesalite) per MB of record data: ms per MB = millicores per MB/s
      const g0 = processCpuSeconds(gateway.child.pid ?? -1);
      const k0 = processCpuSeconds(kinesalite.child.pid ?? -1);
      const sat = await load(targets[target], batch, settings.concurrency, settings.seconds);
      const mb = (sat.records * RECORD_BYTES) / 1048576;
      const cpu = mb > 0
        ? { gatewayMsPerMb: +(((processCpuSeconds(gateway.child.pid ?? -1) - g0) * 1000) / mb).toFixed(3), endpointMsPerMb: +(((processCpuSeconds(kinesalite.child.pid ?? -1) - k0) * 1000) / mb).toFixed(3) }
        : undefined;
      runs.push({ target, kind: 'saturation', rep, ...sat, ...(cpu ? { cpu } : {}) });
      const lat = await load(targets[target], small, 1, settings.latencySeconds);
      runs.push({ target, kind: 'latency', rep, ...lat });
      const fixed = await atRate(targets[target], small, settings.fixedRate, settings.latencySeconds);
      runs.push({ target, kind: 'fixed', rep, ...fixed });
      log(`  rep ${rep + 1} ${target}: ${Math.round(sat.recordsPerSec)} records/s (saturation, ${cpu ? `${cpu.gatewayMsPerMb} ms CPU per MB in the gateway, ${cpu.endpointMsPerMb} in the endpoint` : 'no CPU figure'}), p50 ${lat.p50Ms.toFixed(2)} ms p99 ${lat.p99Ms.toFixed(2)} ms (${settings.latencyBatch}-record calls back to back), at ${settings.fixedRate}/s p50 ${fixed.p50Ms.toFixed(2)} ms p99 ${fixed.p99Ms.toFixed(2)} ms`);
    }
  }
  await gateway.stop();
  await kinesalite.stop();

  const med = (target: string, kind: string, key: 'recordsPerSec' | 'p50Ms' | 'p99Ms') => median(runs.filter((r) => r.target === target && r.kind === kind).map((r) => r[key]));
  const cpuMed = (target: string, key: 'gatewayMsPerMb' | 'endpointMsPerMb') => +median(runs.filter((r) => r.target === target && r.cpu).map((r) => r.cpu![key])).toFixed(3);
  const metrics = {
    'kinesis.direct.recordsPerSec': Math.round(med('direct', 'saturation', 'recordsPerSec')),
    'kinesis.gateway.recordsPerSec': Math.round(med('gateway', 'saturation', 'recordsPerSec')),
    'kinesis.throughputRatio': +(med('gateway', 'saturation', 'recordsPerSec') / med('direct', 'saturation', 'recordsPerSec')).toFixed(3),
    'kinesis.direct.p50Ms': +med('direct', 'latency', 'p50Ms').toFixed(3),
    'kinesis.gateway.p50Ms': +med('gateway', 'latency', 'p50Ms').toFixed(3),
    'kinesis.p50AddedMs': +(med('gateway', 'latency', 'p50Ms') - med('direct', 'latency', 'p50Ms')).toFixed(3),
    'kinesis.p99AddedMs': +(med('gateway', 'latency', 'p99Ms') - med('direct', 'latency', 'p99Ms')).toFixed(3),
    // the sub-millisecond promise: one 10-record call at a time at a moderate fixed rate
    'kinesis.fixed.p50_added_ms': +(med('gateway', 'fixed', 'p50Ms') - med('direct', 'fixed', 'p50Ms')).toFixed(3),
    'kinesis.fixed.p99_added_ms': +(med('gateway', 'fixed', 'p99Ms') - med('direct', 'fixed', 'p99Ms')).toFixed(3),
    'kinesis.h1.fixed.p50_added_ms': +(med('gateway-h1', 'fixed', 'p50Ms') - med('direct', 'fixed', 'p50Ms')).toFixed(3),
    'kinesis.h1.fixed.p99_added_ms': +(med('gateway-h1', 'fixed', 'p99Ms') - med('direct', 'fixed', 'p99Ms')).toFixed(3),
    'kinesis.h1.throughputRatio': +(med('gateway-h1', 'saturation', 'recordsPerSec') / med('direct', 'saturation', 'recordsPerSec')).toFixed(3),
    'kinesis.h1.p50AddedMs': +(med('gateway-h1', 'latency', 'p50Ms') - med('direct', 'latency', 'p50Ms')).toFixed(3),
    'kinesis.h1.p99AddedMs': +(med('gateway-h1', 'latency', 'p99Ms') - med('direct', 'latency', 'p99Ms')).toFixed(3),
    // PutRecords at saturation: the gateway's CPU per MB of record data (SigV4 verify, JSON, audit, re-sign), and the endpoint's for scale
    'kinesis.gateway.ms_per_mb': cpuMed('gateway', 'gatewayMsPerMb'),
    'kinesis.h1.gateway.ms_per_mb': cpuMed('gateway-h1', 'gatewayMsPerMb'),
    'kinesis.endpoint.ms_per_mb': cpuMed('direct', 'endpointMsPerMb'),
    // the gateway's CPU per MB against the endpoint's own for the same records (kinesalite: a JavaScript Kinesis)
    'kinesis.cpu_vs_endpoint': +(cpuMed('gateway', 'gatewayMsPerMb') / cpuMed('direct', 'endpointMsPerMb')).toFixed(3),
  };
  printTable([
    ['metric', 'value'],
    ...Object.entries(metrics).map(([k, v]) => [k, String(v)]),
  ]);
  return { settings, runs, metrics };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, reps: { type: 'string' } } });
  try {
    const r = await runKinesisSuite({ quick: values.quick, reps: Number(values.reps ?? (values.quick ? 1 : 3)) });
    console.log(JSON.stringify(r.metrics, null, 2));
  } finally {
    await stopAll();
  }
}
