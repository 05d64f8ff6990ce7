// Markdown tables of an HTTP results file, for bench/RESULTS.md:
//   node bench/report.ts bench/results/<date>-http.json
import { readFileSync } from 'node:fs';

interface Median {
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
}
interface Case {
  id: string;
  group: string;
  size: string;
  load: string;
  targets: Record<string, { median: Median }>;
}

const file = process.argv[2];
if (!file) {
  console.error('usage: node bench/report.ts <http results file>');
  process.exit(2);
}
const r = JSON.parse(readFileSync(file, 'utf8')) as { cases: Case[]; machine: Record<string, unknown>; versions: Record<string, unknown>; date: string; warnings?: string[] };
const f = (x: number) => x.toFixed(3);
const label: Record<string, string> = { direct: 'direct', gateway: 'gateway (mode auto)', inline: 'gateway, mode inline', pool: 'gateway, mode pool' };

console.log(`${r.date}, commit ${String(r.versions.gitCommit).slice(0, 10)}, ${r.machine.cores} x ${r.machine.cpuModel}, Node ${r.machine.node}\n`);
for (const group of ['instant', 'kafka']) {
  const cases = r.cases.filter((c) => c.group === group);
  if (cases.length === 0) continue;
  console.log(`| ${group === 'instant' ? 'instant upstream' : 'real Kafka'} | target | p50 | p90 | p99 | p99.9 | req/s | +p50 | +p99 | gateway/direct |`);
  console.log('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const c of cases) {
    const d = c.targets.direct!.median;
    for (const [t, { median: s }] of Object.entries(c.targets)) {
      if (t !== 'direct' && t !== 'gateway' && group === 'instant' && t !== 'inline' && t !== 'pool') continue;
      const ratio = t === 'direct' ? '' : c.load === 'fixed' ? `p50 x${(s.p50 / d.p50).toFixed(2)}` : `req/s x${(s.rps / d.rps).toFixed(3)}`;
      const added = (a: number, b: number) => (t === 'direct' ? '' : f(a - b));
      console.log(`| ${c.size} ${c.load} | ${label[t] ?? t} | ${f(s.p50)} | ${f(s.p90)} | ${f(s.p99)} | ${f(s.p999)} | ${s.rps} | ${added(s.p50, d.p50)} | ${added(s.p99, d.p99)} | ${ratio} |`);
    }
  }
  console.log('');
}
if (r.warnings?.length) console.log(`warnings: ${r.warnings.length}\n- ${r.warnings.join('\n- ')}`);
