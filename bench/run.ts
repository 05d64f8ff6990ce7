// streamgate bench suite.
//   npm run bench                      all suites (http, engine, kafka, audit, recording, kinesis, processes)
//   npm run bench -- http              one suite (http | engine | kafka | audit | recording | kinesis | processes)
//   npm run bench -- --quick           smoke run: 1 rep, short runs (checks the bench works)
//   npm run bench -- --profile         V8 CPU profiles of every gateway process, summarized
//   options: --reps N (default 3), --only instant,kafka (http groups), --tag NAME
// Writes bench/results/<YYYY-MM-DD>-<suite>.json and ends with this run's budgets (bench/budgets.json):
// a full run exits 1 when one is broken. Quick, profile, partial (--only) and tagged
// runs write <date>-<suite>.<tag>.json instead, which `npm run bench:check` ignores: budgets
// are checked against full, unprofiled runs only.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { machine, RESULTS_DIR, resultsPath, ROOT, today, versions, writeResults } from './lib/env.ts';
import { printSummary, profilesIn, summarizeProfile, type ProfileSummary } from './lib/profile.ts';
import { onCleanup, stopAll } from './lib/procs.ts';
import { runAuditSuite } from './suites/audit.ts';
import { runRecordingSuite } from './recording.ts';
import { runKinesisSuite } from './kinesis.ts';
import { runEngineSuite } from './suites/engine.ts';
import { runHttpSuite } from './suites/http.ts';
import { kafkaBenchOptions, runKafkaSuite } from './suites/kafka.ts';
import { runProcessesSuite } from './suites/processes.ts';
import { runSoakSuite, soakOptions } from './suites/soak.ts';

interface SuiteContext {
  quick: boolean;
  reps: number;
  profile: boolean;
  only: string[] | undefined;
  date: string;
  /** scratch directory, removed at the end */
  work: string;
}

/**
 * The suites, in run order. A suite returns the body of its results file; it must include
 * `metrics` (flat name -> number, names start with the suite name) for bench:check.
 */
const SUITES: Record<string, (ctx: SuiteContext) => Promise<Record<string, unknown>>> = {
  http: runHttp,
  engine: async (ctx) => ({ ...(await runEngineSuite({ quick: ctx.quick, work: ctx.work })) }),
  kafka: async (ctx) => {
    const profileDir = freshProfileDir(ctx, 'kafka');
    const r = await runKafkaSuite(kafkaBenchOptions(ctx.quick, profileDir, ctx.only));
    return { ...r, ...profilesOf(profileDir) };
  },
  audit: (ctx) => runAuditSuite({ quick: ctx.quick }),
  recording: async (ctx) => ({ ...(await runRecordingSuite({ quick: ctx.quick, reps: ctx.reps, only: ctx.only })) }),
  kinesis: async (ctx) => {
    const profileDir = freshProfileDir(ctx, 'kinesis');
    const r = await runKinesisSuite({ quick: ctx.quick, reps: ctx.reps, ...(profileDir ? { profileDir } : {}) });
    return { ...r, ...profilesOf(profileDir) };
  },
  processes: (ctx) => runProcessesSuite({ quick: ctx.quick, reps: ctx.reps }),
  soak: (ctx) => runSoakSuite(soakOptions(ctx.quick)),
};
/** Suites that run only when named: the soak takes 10 minutes and measures drift, not overhead. */
const ON_REQUEST = new Set(['soak']);

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    quick: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    reps: { type: 'string' },
    only: { type: 'string' },
    tag: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(`usage: npm run bench [-- [${Object.keys(SUITES).join('|')}]... [--quick] [--profile] [--reps N] [--only instant,kafka] [--tag NAME]]`);
  process.exit(0);
}
const unknown = positionals.filter((p) => !(p in SUITES));
if (unknown.length > 0) {
  console.error(`unknown suite(s): ${unknown.join(', ')} (suites: ${Object.keys(SUITES).join(', ')})`);
  process.exit(2);
}
const suites = positionals.length > 0 ? positionals : Object.keys(SUITES).filter((s) => !ON_REQUEST.has(s));
const quick = values.quick;
const reps = values.reps ? Number(values.reps) : quick ? 1 : 3;
if (!Number.isInteger(reps) || reps < 1) throw new Error('--reps must be a positive integer');
const only = values.only?.split(',').map((s) => s.trim()).filter(Boolean);
const tag = values.tag ?? (quick ? 'quick' : values.profile ? 'profile' : only ? 'partial' : undefined);
const date = today();

/** With --profile: an empty directory for the suite's gateway CPU profiles. */
function freshProfileDir(ctx: SuiteContext, suite: string): string | undefined {
  if (!ctx.profile) return undefined;
  const dir = join(RESULTS_DIR, 'profiles', `${ctx.date}-${suite}`);
  rmSync(dir, { recursive: true, force: true }); // do not mix with an earlier run's profiles
  return dir;
}

/** Summaries of the profiles a suite wrote (printed, and kept in its results file). */
function profilesOf(profileDir: string | undefined): { profiles?: { dir: string; summaries: ProfileSummary[] } } {
  if (!profileDir) return {};
  const summaries = profilesIn(profileDir).map((f) => summarizeProfile(f, 30));
  console.log(`\n== CPU profiles of the gateway processes (${profileDir}) ==`);
  // idle pool workers (auto and inline-sized batches) have nothing to say
  for (const p of summaries) if (p.thread === 0 || p.busyMs > p.wallMs * 0.02) printSummary(p, 12);
  return { profiles: { dir: profileDir, summaries } };
}

async function runHttp(ctx: SuiteContext): Promise<Record<string, unknown>> {
  const profileDir = freshProfileDir(ctx, 'http');
  const r = await runHttpSuite({ quick: ctx.quick, reps: ctx.reps, profileDir, only: ctx.only });
  if (r.warnings.length > 0) console.log(`\nwarnings:\n  ${r.warnings.join('\n  ')}`);
  return { ...r, ...profilesOf(profileDir) };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'streamgate-bench-run-'));
  onCleanup(async () => rmSync(work, { recursive: true, force: true }));
  const ctx: SuiteContext = { quick, reps, profile: values.profile, only, date, work };
  const written: string[] = [];
  for (const suite of suites) {
    const startedAt = new Date();
    const common = { suite, date, startedAt: startedAt.toISOString(), quick, profile: values.profile, tag: tag ?? null, machine: machine(), versions: versions() };
    const body = await SUITES[suite]!(ctx);
    const finishedAt = new Date();
    const seconds = Math.round((finishedAt.getTime() - startedAt.getTime()) / 1000);
    const path = resultsPath(suite, tag, date);
    writeResults(path, { ...common, finishedAt: finishedAt.toISOString(), durationSeconds: seconds, ...body });
    console.log(`\n${suite}: wrote ${path} (${seconds} s)`);
    written.push(path);
  }
  // this run's numbers against the budgets, in the same command
  console.log('\n== budgets ==');
  const check = spawnSync(process.execPath, [join(ROOT, 'bench', 'check.ts'), '--only-given', ...(only ? ['--measured'] : []), ...written.flatMap((f) => ['--results', f])], { stdio: 'inherit' });
  if (tag) console.log(`\n(tagged "${tag}": budgets are meant for full, unprofiled runs; \`npm run bench:check\` ignores these files)`);
  // a full run fails loudly when a budget is broken
  else if (check.status !== 0) process.exitCode = 1;
}

try {
  await main();
  await stopAll();
} catch (err) {
  console.error(`\nbench FAILED: ${(err as Error).stack ?? String(err)}`);
  await stopAll();
  process.exit(1);
}
