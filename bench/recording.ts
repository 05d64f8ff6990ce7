// Recording suite: the cost of session recording on the produce path, in one run.
//   off       `streamgate serve` as in the HTTP suite (instant upstream, all controls on)
//   on        the same gateway with `recording: { sessions: all }` (masked payloads, gzip segments)
//   raw       the same with raw recording (JWE dir/A256GCM of every masked original)
// The instant (ack) upstream isolates the gateway's own cost: every request's 1 KiB record
// has a card number, so masking changes every value and raw recording seals every one.
// Metrics: saturation throughput ratio on/off and raw/off, p99 added at a fixed rate.
// Standalone: node bench/recording.ts [--quick]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { startIdp } from '../src/dev/idp.ts';
import { listRecordingSegments, readSegmentLines } from '../src/recording/segments.ts';
import { ROOT } from './lib/env.ts';
import { cpuSnapshot, cpuUsage } from './lib/cpu.ts';
import { median, paced, saturation, type RunResult, type Target } from './lib/load.ts';
import { produceBody } from './lib/payload.ts';
import { freePort, onCleanup, spawnNode, stopAll, waitHealthy, type Proc } from './lib/procs.ts';
import { printTable } from './lib/table.ts';

const TOPIC = 'payments.cards';
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
  if (id !== 'off') c.recording = { dir: recDir, sessions: 'all', ...(id === 'raw' ? { raw: { alg: 'dir', key: randomBytes(32).toString('base64url'), kid: 'bench' } } : {}) };
  return { config: c, recDir };
}

export async function runRecordingSuite(opts: { quick: boolean; reps: number }): Promise<RecordingSuiteResult> {
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
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, reps: { type: 'string' } } });
  try {
    const r = await runRecordingSuite({ quick: values.quick, reps: values.reps ? Number(values.reps) : values.quick ? 1 : 3 });
    console.log(JSON.stringify(r.metrics, null, 2));
    await stopAll();
  } catch (err) {
    console.error(err);
    await stopAll();
    process.exit(1);
  }
}
