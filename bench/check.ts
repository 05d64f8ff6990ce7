// Overhead budgets: compares the latest results of each suite with bench/budgets.json.
//   npm run bench:check                          latest bench/results/<date>-<suite>.json per suite
//   npm run bench:check -- --results FILE...     these results files instead
//   npm run bench:check -- --results FILE --only-given   only the budgets of the given files' suites (what `npm run bench` does at its end)
//   npm run bench:check -- --results FILE --only-given --measured   and only the metrics those files have (a partial `--only` run)
//   npm run bench:check -- --compare A.json --compare B.json [--tolerance 0.1]
//        run-to-run noise: every throughput ratio of B within 10% of A's (latency shown too)
// Exits 1 naming every broken budget (or drifting ratio). Not part of `npm test`.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { RESULTS_DIR, ROOT } from './lib/env.ts';
import { printTable } from './lib/table.ts';

interface Budget {
  metric: string;
  /** the metric must be <= max */
  max?: number;
  /** the metric must be >= min */
  min?: number;
  why?: string;
}

interface Results {
  suite: string;
  date: string;
  metrics: Record<string, number>;
  versions?: { gitCommit?: string };
  machine?: { cores?: number; cpuModel?: string };
}

const { values } = parseArgs({
  options: {
    budgets: { type: 'string', default: join(ROOT, 'bench', 'budgets.json') },
    results: { type: 'string', multiple: true },
    compare: { type: 'string', multiple: true },
    tolerance: { type: 'string', default: '0.1' },
    'only-given': { type: 'boolean', default: false },
    // a partial run (--only) measured some of a suite's metrics: judge just those
    measured: { type: 'boolean', default: false },
  },
});

function load(path: string): Results {
  const r = JSON.parse(readFileSync(path, 'utf8')) as Partial<Results>;
  // a results file from before its suite reported flat metrics: every budget of it is "missing", not a crash
  return { ...r, metrics: r.metrics ?? {} } as Results;
}

/** Newest untagged results file of a suite (tagged ones are quick/profile/partial runs). */
function latest(suite: string): string | undefined {
  if (!existsSync(RESULTS_DIR)) return undefined;
  const re = new RegExp(`^\\d{4}-\\d{2}-\\d{2}-${suite}\\.json$`);
  const names = readdirSync(RESULTS_DIR).filter((n) => re.test(n)).sort();
  return names.length > 0 ? join(RESULTS_DIR, names.at(-1)!) : undefined;
}

function fmt(x: number | undefined): string {
  return x === undefined || Number.isNaN(x) ? '-' : String(Math.round(x * 1000) / 1000);
}

if (values.compare) {
  if (values.compare.length !== 2) {
    console.error('--compare needs two results files: --compare A.json --compare B.json');
    process.exit(2);
  }
  const [a, b] = values.compare.map(load) as [Results, Results];
  const tol = Number(values.tolerance);
  // Gated: the throughput ratios (gateway/direct at saturation). Shown but not gated: latency
  // ratios and added latency, whose p99s on the Kafka path follow the broker's own tail.
  const gated = (k: string) => k.endsWith('throughput_ratio');
  const keys = Object.keys(a.metrics).filter((k) => k.endsWith('_ratio') || k.endsWith('_added_ms')).sort((x, y) => Number(gated(y)) - Number(gated(x)) || x.localeCompare(y));
  const rows: string[][] = [['metric', 'run A', 'run B', 'change', '']];
  const drifting: string[] = [];
  for (const key of keys) {
    const x = a.metrics[key]!;
    const y = b.metrics[key];
    const rel = y === undefined ? NaN : Math.abs(y - x) / Math.abs(x);
    const change = y === undefined ? 'missing' : key.endsWith('_ratio') ? `${(rel * 100).toFixed(1)}%` : `${y - x >= 0 ? '+' : ''}${fmt(y - x)} ms`;
    let verdict = 'info';
    if (gated(key)) {
      verdict = rel <= tol ? 'ok' : 'DRIFT';
      if (verdict === 'DRIFT') drifting.push(`${key} (${fmt(x)} -> ${fmt(y)})`);
    }
    rows.push([key, fmt(x), fmt(y), change, verdict]);
  }
  console.log(`A: ${values.compare[0]}\nB: ${values.compare[1]}\nthroughput ratios must agree within ${(tol * 100).toFixed(0)}%; the rest is shown for information`);
  printTable(rows);
  if (drifting.length > 0) {
    console.error(`\nbench:check: ${drifting.length} throughput ratio(s) moved more than ${(tol * 100).toFixed(0)}% between runs: ${drifting.join(', ')}`);
    process.exit(1);
  }
  console.log(`\nall ${keys.filter(gated).length} throughput ratios within ${(tol * 100).toFixed(0)}%`);
  process.exit(0);
}

const all = (JSON.parse(readFileSync(values.budgets, 'utf8')) as { budgets: Budget[] }).budgets;
const bySuite = new Map<string, Results & { file: string }>();
for (const file of values.results ?? []) {
  const r = load(file);
  bySuite.set(r.suite, { ...r, file });
}
const budgets = values['only-given'] ? all.filter((b) => bySuite.has(b.metric.split('.')[0]!)) : all;
for (const suite of new Set(budgets.map((b) => b.metric.split('.')[0]!))) {
  if (bySuite.has(suite)) continue;
  const file = latest(suite);
  if (file) bySuite.set(suite, { ...load(file), file });
}

const broken: string[] = [];
const rows: string[][] = [['', 'budget', 'measured', 'limit']];
for (const b of budgets) {
  const suite = b.metric.split('.')[0]!;
  const r = bySuite.get(suite);
  const actual = r?.metrics[b.metric];
  if (actual === undefined && values.measured) continue;
  const limit = b.max !== undefined ? `<= ${b.max}` : `>= ${b.min}`;
  let ok: boolean;
  if (actual === undefined) ok = false;
  else ok = (b.max === undefined || actual <= b.max) && (b.min === undefined || actual >= b.min);
  if (!ok) broken.push(`${b.metric} = ${actual === undefined ? (r ? 'missing from the results' : `no results for suite "${suite}"`) : fmt(actual)} (limit ${limit})`);
  rows.push([ok ? 'PASS' : 'FAIL', b.metric, actual === undefined ? 'missing' : fmt(actual), limit]);
}
for (const [suite, r] of bySuite) console.log(`${suite}: ${r.file} (commit ${r.versions?.gitCommit?.slice(0, 10) ?? '?'}, ${r.machine?.cores ?? '?'} x ${r.machine?.cpuModel ?? '?'})`);
printTable(rows);
if (broken.length > 0) {
  console.error(`\nbench:check: ${broken.length} budget(s) broken:\n  ${broken.join('\n  ')}`);
  process.exit(1);
}
console.log(`\nall ${budgets.length} budgets hold`);
