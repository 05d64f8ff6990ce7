// What a results file must say about where and on what code it was measured.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { arch, cpus, loadavg, release, totalmem, type } from 'node:os';
import { join } from 'node:path';

export const ROOT = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
export const RESULTS_DIR = join(ROOT, 'bench', 'results');

export function machine(): Record<string, unknown> {
  const list = cpus();
  return {
    cores: list.length,
    cpuModel: list[0]?.model ?? 'unknown',
    totalMemBytes: totalmem(),
    node: process.version,
    v8: process.versions.v8,
    os: `${type()} ${release()} ${arch()}`,
    loadAvgAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

function git(args: string[]): string | undefined {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

export function versions(): Record<string, unknown> {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const status = git(['status', '--porcelain', '--untracked-files=no']);
  const dirtyFiles = status ? status.split('\n').map((l) => l.replace(/^\s*\S+\s+/, '')) : [];
  return {
    package: pkg.version,
    gitCommit: git(['rev-parse', 'HEAD']) ?? 'unknown',
    // measured code differs from the commit where tracked files were modified: say which
    gitDirty: status === undefined ? 'unknown' : dirtyFiles.length > 0,
    gitDirtyFiles: dirtyFiles.slice(0, 30),
  };
}

/** Local date, YYYY-MM-DD: the results file name. */
export function today(): string {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

/** `bench/results/<date>-<suite>[.<tag>].json`; only untagged files count for bench:check. */
export function resultsPath(suite: string, tag: string | undefined, date = today()): string {
  return join(RESULTS_DIR, `${date}-${suite}${tag ? `.${tag}` : ''}.json`);
}

export function writeResults(path: string, data: unknown): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(path, JSON.stringify(data, null, 2) + '\n');
}
