// Recording suite: the cost of session recording on the produce path, in one run.
//   off       `streamgate serve` as in the HTTP suite (instant upstream, all controls on)
//   on        the same gateway with `recording: { sessions: all }` (masked payloads, gzip segments)
//   raw       the same with raw recording (JWE dir/A256GCM of every masked original)
// The instant (ack) upstream isolates the gateway's own cost: every request's 1 KiB record
// has a card number, so masking changes every value and raw recording seals every one.
// Metrics: saturation throughput ratio on/off and raw/off, p99 added at a fixed rate.
// Kafka group: the same off/on pair behind the Kafka listener (its own broker), 1 KiB records
// in 100-record batches to a topic without inspection rules, so "off" is the passthrough fast
// path and "on" decodes every batch to record it; records/s at saturation and CPU per record.
// Standalone: node bench/recording.ts [--quick] [--only http|kafka]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { Admin, Producer } from '@platformatic/kafka';
import { startIdp } from '../src/dev/idp.ts';
import { startKafka } from '../src/dev/kafka.ts';
import { listRecordingSegments, readSegmentLines } from '../src/recording/segments.ts';
import { ROOT } from './lib/env.ts';
import { cpuSnapshot, cpuUsage } from './lib/cpu.ts';
import { median, paced, saturation, type RunResult, type Target } from './lib/load.ts';
import { produceBody } from './lib/payload.ts';
import { freePort, onCleanup, spawnNode, stopAll, waitHealthy, type Proc } from './lib/procs.ts';
import { printTable } from './lib/table.ts';

const TOPIC = 'payments.cards';
const KAFKA_TOPIC = 'orders'; // no inspection rules in the example config: the passthrough path when not recorded
const VALUE_BYTES = 1024;
type TargetId = 'off' | 'on' | 'raw';
const TARGETS: TargetId[] = ['off', 'on', 'raw'];

interface Running {
  id: TargetId;
  proc: Proc;
  base: string;
  recDir: string;
}

export interface RecordingSuiteResult {
  settings: Record<string, unknown>;
  kafka?: Record<string, { recordsPerSecond: number[]; cpuUsPerRecord: number[]; recorded: number }>;
  targets: Record<string, { saturation: RunResult[]; fixed: RunResult[]; cpuUsPerRequest: number[]; recorded: number; median: { rps: number; p50: number; p99: number; cpuUsPerRequest: number } }>;
  metrics: Record<string, number>;
  warnings: string[];
}

function settingsFor(quick: boolean, reps: number) {
  return {
    reps,
    warmupSeconds: quick ? 0.5 : 1.5,
    saturation: { connections: 50, seconds: quick ? 1.2 : 4 },
    fixed: { rate: 1000, connections: 10, seconds: quick ? 1.2 : 4 },
  };
}

function gatewayConfig(example: Record<string, unknown>, id: TargetId, port: number, issuer: string, work: string): { config: Record<string, unknown>; recDir: string } {
  const c = structuredClone(example) as Record<string, unknown> & { listeners: Record<string, Record<string, unknown>>; identity: { issuers: Array<Record<string, unknown>> }; audit?: Record<string, unknown> };
  const recDir = join(work, `${id}.recordings`);
  c.instance = `bench-recording-${id}`;
  c.log = { level: 'warn' };
  c.listeners = { http: { ...c.listeners.http, host: '127.0.0.1', port, clusterId: 'local' } };
  c.upstream = { kind: 'ack' };
  c.identity.issuers[0] = { ...c.identity.issuers[0], issuer };
  c.audit = { ...c.audit, spool: { ...(c.audit?.spool as Record<string, unknown>), dir: join(work, `${id}.audit`) } };
  delete c.recording;
  // sessions here outlast the default per-session bound (64 MiB): it would stop the recording mid-run
  if (id !== 'off') c.recording = { dir: recDir, sessions: 'all', maxSessionBytes: 1e12, ...(id === 'raw' ? { raw: { alg: 'dir', key: randomBytes(32).toString('base64url'), kid: 'bench' } } : {}) };
  return { config: c, recDir };
}

export async function runRecordingSuite(opts: { quick: boolean; reps: number; only?: string[] | undefined }): Promise<RecordingSuiteResult> {
  const http = !opts.only || opts.only.includes('http');
  const kafka = !opts.only || opts.only.includes('kafka');
  const result: RecordingSuiteResult = http ? await runHttpGroup(opts) : { settings: {}, targets: {}, metrics: {}, warnings: [] };
  if (kafka) {
    const k = await runKafkaGroup(opts);
    result.kafka = k.targets;
    Object.assign(result.metrics, k.metrics);
    result.settings.kafka = k.settings;
  }
  return result;
}

async function runHttpGroup(opts: { quick: boolean; reps: number }): Promise<RecordingSuiteResult> {
  const settings = settingsFor(opts.quick, opts.reps);
  const work = mkdtempSync(join(tmpdir(), 'streamgate-bench-recording-'));
  onCleanup(async () => rmSync(work, { recursive: true, force: true }));
  const idp = await startIdp({ port: 0 });
  onCleanup(() => idp.stop());
  const token = await idp.token('alice');
  const example = parseYaml(readFileSync(join(ROOT, 'streamgate.example.yaml'), 'utf8')) as Record<string, unknown>;
  const running: Running[] = [];
  for (const id of TARGETS) {
    const port = await freePort();
    const { config, recDir } = gatewayConfig(example, id, port, idp.issuer, work);
    const file = join(work, `${id}.yaml`);
    writeFileSync(file, toYaml(config));
    const proc = spawnNode(`recording.${id}`, 'src/cli/main.ts', ['serve', '--config', file], { logFile: join(work, `${id}.log`), cwd: ROOT });
    const base = `http://127.0.0.1:${port}`;
    await waitHealthy(proc, base);
    running.push({ id, proc, base, recDir });
  }
  const body = produceBody(VALUE_BYTES);
  const targetOf = (r: Running): Target => ({ url: `${r.base}/v3/clusters/local/topics/${TOPIC}/records`, body, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` } });
  const results = new Map<TargetId, { saturation: RunResult[]; fixed: RunResult[]; cpuUsPerRequest: number[] }>(TARGETS.map((t) => [t, { saturation: [], fixed: [], cpuUsPerRequest: [] }]));
  const warnings: string[] = [];
  try {
    for (const r of running) await saturation(targetOf(r), { connections: settings.saturation.connections, seconds: settings.warmupSeconds });
    for (let rep = 0; rep < settings.reps; rep++) {
      // rotate the order so no target always runs first
      const order = running.map((_, i) => running[(i + rep) % running.length]!);
      for (const r of order) {
        // fixed rate first: a saturation run leaves a recording backlog that would still be written during it
        // the gateway's CPU per request at the fixed rate: steadier than latency on a shared machine
        const before = cpuSnapshot([r.proc.child.pid ?? 0]);
        const fixed = await paced(targetOf(r), { rate: settings.fixed.rate, connections: settings.fixed.connections, seconds: settings.fixed.seconds, verify: (status) => status === 200 });
        await new Promise((done) => setTimeout(done, 300)); // the recording of the last requests is written after their answers
        const cpu = cpuUsage(before, cpuSnapshot([r.proc.child.pid ?? 0]));
        if (cpu) results.get(r.id)!.cpuUsPerRequest.push(Math.round((cpu.benchCores * (fixed.seconds + 0.3) * 1e6) / fixed.ok));
        const sat = await saturation(targetOf(r), { connections: settings.saturation.connections, seconds: settings.saturation.seconds });
        await new Promise((done) => setTimeout(done, 1000)); // let the backlog drain before the next target
        for (const [what, x] of [['saturation', sat], ['fixed', fixed]] as const) {
          if (x.non2xx + x.errors + x.timeouts > 0) throw new Error(`recording.${r.id} ${what}: ${x.non2xx} non-2xx, ${x.errors} errors, ${x.timeouts} timeouts (${x.firstFailure ?? ''})`);
        }
        results.get(r.id)!.saturation.push(sat);
        results.get(r.id)!.fixed.push(fixed);
        console.log(`  rep ${rep + 1} ${r.id.padEnd(4)} saturation ${sat.rps} req/s; fixed ${settings.fixed.rate}/s p50 ${fixed.latency.p50} ms, p99 ${fixed.latency.p99} ms, gateway cpu ${results.get(r.id)!.cpuUsPerRequest.at(-1) ?? '?'} us/request`);
      }
    }
  } finally {
    await Promise.all(running.map((r) => r.proc.stop()));
  }
  const targets: RecordingSuiteResult['targets'] = {};
  for (const r of running) {
    const x = results.get(r.id)!;
    // every acknowledged request is recorded (the gateway stopped gracefully and wrote its queue)
    let recorded = 0;
    for (const s of listRecordingSegments(r.recDir)) recorded += readSegmentLines(s).length;
    const acknowledged = [...x.saturation, ...x.fixed].reduce((n, y) => n + y.ok, 0);
    if (r.id !== 'off' && recorded < acknowledged) warnings.push(`${r.id}: ${recorded} records recorded for ${acknowledged}+ acknowledged requests`);
    targets[r.id] = { ...x, recorded, median: { rps: Math.round(median(x.saturation.map((y) => y.rps))), p50: median(x.fixed.map((y) => y.latency.p50)), p99: median(x.fixed.map((y) => y.latency.p99)), cpuUsPerRequest: median(x.cpuUsPerRequest) } };
  }
  const off = targets.off!.median;
  const round = (n: number, d = 3) => Math.round(n * 10 ** d) / 10 ** d;
  const metrics: Record<string, number> = {
    'recording.off.saturation.rps': off.rps,
    'recording.on.saturation.rps': targets.on!.median.rps,
    'recording.raw.saturation.rps': targets.raw!.median.rps,
    'recording.on.saturation.throughput_ratio': round(targets.on!.median.rps / off.rps),
    'recording.raw.saturation.throughput_ratio': round(targets.raw!.median.rps / off.rps),
    'recording.off.fixed.p99_ms': off.p99,
    'recording.on.fixed.p99_added_ms': round(targets.on!.median.p99 - off.p99),
    'recording.raw.fixed.p99_added_ms': round(targets.raw!.median.p99 - off.p99),
    'recording.on.fixed.p50_added_ms': round(targets.on!.median.p50 - off.p50),
    'recording.off.cpu_us_per_request': off.cpuUsPerRequest,
    'recording.on.cpu_us_added_per_request': targets.on!.median.cpuUsPerRequest - off.cpuUsPerRequest,
    'recording.raw.cpu_us_added_per_request': targets.raw!.median.cpuUsPerRequest - off.cpuUsPerRequest,
    // the same as ratios of the same run (what the budgets use): gateway CPU per request recorded / not recorded
    'recording.on.cpu_ratio': +(targets.on!.median.cpuUsPerRequest / off.cpuUsPerRequest).toFixed(3),
    'recording.raw.cpu_ratio': +(targets.raw!.median.cpuUsPerRequest / off.cpuUsPerRequest).toFixed(3),
  };
  console.log('\n== recording: 1 KiB card-masked HTTP produce, instant upstream ==');
  printTable([
    ['target', 'req/s (saturation)', 'ratio', 'p50 @1000/s', 'p99 @1000/s', 'cpu/request', 'recorded'],
    ...running.map((r) => {
      const m = targets[r.id]!.median;
      return [r.id, String(m.rps), (m.rps / off.rps).toFixed(2), `${m.p50} ms`, `${m.p99} ms`, `${m.cpuUsPerRequest} us`, String(targets[r.id]!.recorded)];
    }),
  ]);
  return {
    settings: { ...settings, topic: TOPIC, valueBytes: VALUE_BYTES, upstream: 'ack (instant)', targets: TARGETS, recordingOn: 'sessions: all, gzip level 1', raw: 'dir + A256GCM JWE per masked record' },
    targets,
    metrics,
    warnings,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, reps: { type: 'string' }, only: { type: 'string' } } });
  try {
    const r = await runRecordingSuite({ quick: values.quick, reps: values.reps ? Number(values.reps) : values.quick ? 1 : 3, only: values.only?.split(',') });
    console.log(JSON.stringify(r.metrics, null, 2));
    await stopAll();
  } catch (err) {
    console.error(err);
    await stopAll();
    process.exit(1);
  }
}


/** off/on behind the Kafka listener: the cost of decoding and recording what passthrough would forward untouched. */
async function runKafkaGroup(opts: { quick: boolean; reps: number }): Promise<{ settings: Record<string, unknown>; targets: Record<string, { recordsPerSecond: number[]; cpuUsPerRecord: number[]; recorded: number }>; metrics: Record<string, number> }> {
  const seconds = opts.quick ? 1.5 : 5;
  const fixedRate = 5000; // records/s in 100-record batches
  const work = mkdtempSync(join(tmpdir(), 'streamgate-bench-recording-kafka-'));
  onCleanup(async () => rmSync(work, { recursive: true, force: true }));
  console.log('\nstarting Kafka for the recording suite...');
  const broker = await startKafka({ jvmOpts: ['-Xms256m', '-Xmx768m'] });
  onCleanup(() => broker.stop());
  const admin = new Admin({ clientId: 'bench', bootstrapBrokers: [broker.bootstrap] });
  await admin.createTopics({ topics: [KAFKA_TOPIC], partitions: 1, replicas: 1 }).catch(() => {});
  await admin.close();
  const idp = await startIdp({ port: 0 });
  onCleanup(() => idp.stop());
  const token = await idp.token('alice');
  const example = parseYaml(readFileSync(join(ROOT, 'streamgate.example.yaml'), 'utf8')) as Record<string, unknown>;
  const running: Array<{ id: 'off' | 'on'; proc: Proc; bootstrap: string; recDir: string }> = [];
  for (const id of ['off', 'on'] as const) {
    const { config, recDir } = gatewayConfig(example, id, await freePort(), idp.issuer, work);
    const listeners = config.listeners as Record<string, Record<string, unknown>>;
    const kafkaPort = await freePort();
    config.listeners = { ...listeners, kafka: { host: '127.0.0.1', port: kafkaPort, brokerPortBase: 0 } };
    config.upstream = { kafka: { bootstrap: [broker.bootstrap] } };
    const file = join(work, `${id}.yaml`);
    writeFileSync(file, toYaml(config));
    const proc = spawnNode(`recording.kafka.${id}`, 'src/cli/main.ts', ['serve', '--config', file], { logFile: join(work, `${id}.log`), cwd: ROOT });
    await waitHealthy(proc, `http://127.0.0.1:${(listeners.http as { port: number }).port}`);
    running.push({ id, proc, bootstrap: `127.0.0.1:${kafkaPort}`, recDir });
  }
  const value = Buffer.from(produceBody(VALUE_BYTES));
  const batch = Array.from({ length: 100 }, (_, i) => ({ topic: KAFKA_TOPIC, partition: 0, key: Buffer.from(`k${i}`), value }));
  const targets: Record<string, { recordsPerSecond: number[]; cpuUsPerRecord: number[]; recorded: number }> = {};
  const acknowledged = new Map<string, number>();
  try {
    for (const r of running) targets[r.id] = { recordsPerSecond: [], cpuUsPerRecord: [], recorded: 0 };
    const producers = new Map(running.map((r) => [r.id, Array.from({ length: 4 }, (_, n) => new Producer({ clientId: `bench-${r.id}-${n}`, bootstrapBrokers: [r.bootstrap], acks: 1, sasl: { mechanism: 'OAUTHBEARER' as const, token } }))]));
    for (const r of running) for (const p of producers.get(r.id)!) await p.send({ messages: batch.slice(0, 1) }); // connect + metadata
    for (let rep = 0; rep < opts.reps; rep++) {
      for (const r of rep % 2 === 0 ? running : [...running].reverse()) {
        const ps = producers.get(r.id)!;
        // fixed rate, one producer: the gateway's CPU per record
        const before = cpuSnapshot([r.proc.child.pid ?? 0]);
        let sent = 0;
        const start = performance.now();
        while (performance.now() - start < seconds * 1000) {
          await ps[0]!.send({ messages: batch });
          sent += batch.length;
          const wait = (sent / fixedRate) * 1000 - (performance.now() - start);
          if (wait > 0) await new Promise((done) => setTimeout(done, wait));
        }
        await new Promise((done) => setTimeout(done, 300));
        const cpu = cpuUsage(before, cpuSnapshot([r.proc.child.pid ?? 0]));
        acknowledged.set(r.id, (acknowledged.get(r.id) ?? 0) + sent);
        if (cpu) targets[r.id]!.cpuUsPerRecord.push(Math.round(((cpu.benchCores * (performance.now() - start)) / 1000) * 1e6 / sent * 10) / 10);
        // saturation: 4 producers, each one batch in flight
        let total = 0;
        const t0 = performance.now();
        await Promise.all(ps.map(async (p) => {
          while (performance.now() - t0 < seconds * 1000) {
            await p.send({ messages: batch });
            total += batch.length;
          }
        }));
        const rps = Math.round(total / ((performance.now() - t0) / 1000));
        acknowledged.set(r.id, (acknowledged.get(r.id) ?? 0) + total);
        targets[r.id]!.recordsPerSecond.push(rps);
        console.log(`  kafka rep ${rep + 1} ${r.id.padEnd(3)} saturation ${rps} records/s; at ${fixedRate}/s gateway cpu ${targets[r.id]!.cpuUsPerRecord.at(-1)} us/record`);
        await new Promise((done) => setTimeout(done, 1000));
      }
    }
    for (const ps of producers.values()) for (const p of ps) await p.close();
  } finally {
    await Promise.all(running.map((r) => r.proc.stop()));
  }
  for (const r of running) for (const s of listRecordingSegments(r.recDir)) targets[r.id]!.recorded += readSegmentLines(s).length;
  // a recording that stopped at a bound would make "on" look cheaper than it is
  if (targets.on!.recorded < (acknowledged.get('on') ?? 0)) throw new Error(`recording.kafka on: ${targets.on!.recorded} records recorded of ${acknowledged.get('on')} acknowledged: the recording stopped at a bound, the measurement is void`);
  const off = { rps: median(targets.off!.recordsPerSecond), cpu: median(targets.off!.cpuUsPerRecord) };
  const on = { rps: median(targets.on!.recordsPerSecond), cpu: median(targets.on!.cpuUsPerRecord) };
  console.log('\n== recording: Kafka listener, 1 KiB records in 100-record batches, topic without inspection rules ==');
  printTable([
    ['target', 'records/s (saturation)', 'ratio', `cpu/record @${fixedRate}/s`, 'recorded'],
    ['off (passthrough)', String(off.rps), '1.00', `${off.cpu} us`, String(targets.off!.recorded)],
    ['on (decoded, recorded)', String(on.rps), (on.rps / off.rps).toFixed(2), `${on.cpu} us`, String(targets.on!.recorded)],
  ]);
  return {
    settings: { topic: KAFKA_TOPIC, valueBytes: VALUE_BYTES, batchRecords: batch.length, seconds, fixedRate, producersAtSaturation: 4, acks: 1 },
    targets,
    metrics: {
      'recording.kafka.off.records_per_s': off.rps,
      'recording.kafka.on.records_per_s': on.rps,
      'recording.kafka.on.throughput_ratio': Math.round((on.rps / off.rps) * 1000) / 1000,
      'recording.kafka.off.cpu_us_per_record': off.cpu,
      'recording.kafka.on.cpu_us_added_per_record': Math.round((on.cpu - off.cpu) * 10) / 10,
    },
  };
}
