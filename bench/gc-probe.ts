// Repro for the fixed-rate tail seen in the HTTP suite at 16 KiB: some gateway processes
// (every pool-mode one, some inline/auto ones) run a full Mark-Compact every ~250 ms instead
// of scavenges, and their p99 at 1000 req/s goes from ~1 ms to ~10-15 ms. Starts N gateways
// one after the other (instant upstream, all controls on, --trace-gc), warms each up like the
// suite does, runs 2 x 4 s at 1000 req/s and prints p50/p99 and the GCs of those 8 s.
//   node bench/gc-probe.ts [auto|inline|pool] [valueBytes=16384] [processes=3] ["extra node flags"]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { startIdp } from '../src/dev/idp.ts';
import { ROOT } from './lib/env.ts';
import { paced, saturation } from './lib/load.ts';
import { produceBody } from './lib/payload.ts';
import { freePort, onCleanup, spawnNode, stopAll, waitHealthy } from './lib/procs.ts';

const [mode = 'pool', size = '16384', count = '3', extra = ''] = process.argv.slice(2);
const work = mkdtempSync(join(tmpdir(), 'streamgate-gc-probe-'));
onCleanup(async () => rmSync(work, { recursive: true, force: true }));
const idp = await startIdp({ port: 0 });
onCleanup(() => idp.stop());
const token = await idp.token('alice');

try {
  for (let k = 0; k < Number(count); k++) {
    const c = parseYaml(readFileSync(join(ROOT, 'streamgate.example.yaml'), 'utf8')) as Record<string, any>;
    const port = await freePort();
    c.log.level = 'warn';
    c.listeners = { http: { ...c.listeners.http, host: '127.0.0.1', port } };
    c.upstream = { kind: 'ack' };
    c.identity.issuers[0].issuer = idp.issuer;
    c.inspection.mode = mode;
    c.audit.spool.dir = join(work, `audit-${k}`);
    const config = join(work, `gateway-${k}.yaml`);
    const log = join(work, `gateway-${k}.log`);
    writeFileSync(config, toYaml(c));
    const gw = spawnNode(`gateway ${k}`, 'src/cli/main.ts', ['serve', '--config', config], { logFile: log, cwd: ROOT, nodeArgs: ['--trace-gc', ...extra.split(' ').filter(Boolean)] });
    await waitHealthy(gw, `http://127.0.0.1:${port}`);
    const target = { url: `http://127.0.0.1:${port}/v3/clusters/local/topics/payments.cards/records`, body: produceBody(Number(size)), headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` } };
    const verify = () => true;
    await saturation(target, { connections: 50, seconds: 1.5 });
    await paced(target, { rate: 1000, connections: 10, seconds: 1, verify });
    const from = readFileSync(log, 'utf8').split('\n').length;
    const runs: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await paced(target, { rate: 1000, connections: 10, seconds: 4, verify });
      runs.push(`p50 ${r.latency.p50} p99 ${r.latency.p99} ms`);
    }
    const gcs = readFileSync(log, 'utf8').split('\n').slice(from);
    const full = gcs.filter((l) => l.includes('Mark-Compact')).length;
    const minor = gcs.filter((l) => l.includes('Scavenge')).length;
    // the pause of each collection on the main thread ("..., 1.23 / 0.00 ms" in --trace-gc lines)
    const pauses = gcs.flatMap((l) => /, ([\d.]+) \/ [\d.]+ ms/.exec(l)?.[1] ?? []).map(Number).sort((x, y) => x - y);
    const pauseText = pauses.length ? `, pauses median ${pauses[Math.floor(pauses.length / 2)]} ms, max ${pauses.at(-1)} ms, total ${pauses.reduce((x, y) => x + y, 0).toFixed(1)} ms` : '';
    console.log(`${mode} ${size} B, process ${k}: ${runs.join(' | ')} | in those 8 s: ${full} Mark-Compact, ${minor} Scavenge${pauseText}`);
    await gw.stop();
  }
} finally {
  await stopAll();
}
