// Several cores: the gateway with `serve --processes 1` vs `--processes 2` at saturation,
// same load, same run (issue 11). The instant-ack upstream isolates the gateway's own cost:
// with a real broker on the same two cores, the broker would be measured too.
//
//   npm run bench -- processes [--quick]
//
// autocannon runs in the bench process, so on a 2-core machine the load generator, and the
// gateway's processes share the cores: the ratio says how much a second process buys when
// nothing else is spare, not what it buys on a machine with cores to give.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { startIdp, type RunningIdp } from '../../src/dev/idp.ts';
import { median, saturation, type RunResult } from '../lib/load.ts';
import { produceBody } from '../lib/payload.ts';
import { freePort, onCleanup, spawnNode, waitHealthy, type Proc } from '../lib/procs.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

export async function runProcessesSuite(opts: { quick: boolean; reps: number }, log: (s: string) => void = console.log): Promise<Record<string, unknown>> {
  const work = mkdtempSync(join(tmpdir(), 'sg-bench-processes-'));
  let idp: RunningIdp | undefined;
  onCleanup(async () => {
    await idp?.stop();
    rmSync(work, { recursive: true, force: true });
  });
  idp = await startIdp({ port: 0 });
  const example = parseYaml(readFileSync(join(ROOT, 'streamgate.example.yaml'), 'utf8')) as Record<string, unknown> & {
    listeners: Record<string, unknown>;
    identity: { issuers: Array<Record<string, unknown>> };
  };
  const seconds = opts.quick ? 1.5 : 5;
  const reps = opts.quick ? 1 : Math.max(3, opts.reps);

  const start = async (processes: number): Promise<{ proc: Proc; url: string }> => {
    const port = await freePort();
    const config = structuredClone(example);
    config.instance = `bench-p${processes}`;
    config.log = { level: 'warn' };
    config.listeners = { http: { host: '127.0.0.1', port, clusterId: 'local' } };
    config.upstream = { kind: 'ack' };
    config.identity.issuers[0] = { ...config.identity.issuers[0], issuer: idp!.issuer };
    config.audit = { spool: { dir: join(work, `audit-${processes}`) } };
    delete config.state;
    delete config.credentials; // JIT credentials with --processes need shared state (Redis); not under test here
    const file = join(work, `gw-${processes}.yaml`);
    writeFileSync(file, toYaml(config));
    const proc = spawnNode(`gateway-p${processes}`, join(ROOT, 'src/cli/main.ts'), ['serve', '--config', file, '--processes', String(processes)], { logFile: join(work, `gw-${processes}.log`), cwd: ROOT });
    await waitHealthy(proc, `http://127.0.0.1:${port}`);
    return { proc, url: `http://127.0.0.1:${port}/v3/clusters/local/topics/payments.cards/records` };
  };

  const token = await idp.token('alice');
  const target = (url: string) => ({ url, body: produceBody(1024), headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
  const one = await start(1);
  const two = await start(2);
  const runs: Record<'one' | 'two', RunResult[]> = { one: [], two: [] };
  try {
    // warm-up, discarded: JIT, the pool, the token cache of every process
    await saturation(target(one.url), { connections: 50, seconds: 1.5 });
    await saturation(target(two.url), { connections: 50, seconds: 1.5 });
    for (let r = 0; r < reps; r++) {
      // alternate which goes first: drift on a shared machine hits both alike
      const order = r % 2 === 0 ? (['one', 'two'] as const) : (['two', 'one'] as const);
      for (const which of order) {
        const res = await saturation(target(which === 'one' ? one.url : two.url), { connections: 50, seconds });
        if (res.ok === 0 || res.errors > 0 || res.non2xx > 0) throw new Error(`${which}: ${res.ok} ok, ${res.non2xx} non-2xx, ${res.errors} errors (${res.firstFailure ?? ''})`);
        runs[which].push(res);
        log(`  rep ${r + 1} --processes ${which === 'one' ? 1 : 2}: ${res.rps} req/s, p99 ${res.latency.p99} ms`);
      }
    }
  } finally {
    await one.proc.stop();
    await two.proc.stop();
  }
  const rps = (which: 'one' | 'two') => median(runs[which].map((r) => r.rps));
  const ratio = Math.round((rps('two') / rps('one')) * 1000) / 1000;
  log(`--processes 2 vs 1 at saturation (1 KiB, ack upstream, all controls on): ${rps('two')} vs ${rps('one')} req/s, ratio ${ratio}`);
  return {
    settings: { seconds, reps, connections: 50, valueBytes: 1024, upstream: 'ack' },
    runs: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, v.map((r) => ({ rps: r.rps, p50: r.latency.p50, p99: r.latency.p99 }))])),
    metrics: {
      'processes.one.rps': rps('one'),
      'processes.two.rps': rps('two'),
      'processes.two_vs_one.throughput_ratio': ratio,
    },
  };
}
