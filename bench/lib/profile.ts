// Reads V8 .cpuprofile files (node --cpu-prof) and says where the time went: top functions
// by self time and the same time rolled up by module/package.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  /** 0 = the main thread (the accept thread), others are pool workers */
  thread: number;
  wallMs: number;
  busyMs: number;
  top: Array<{ fn: string; where: string; selfMs: number; pct: number }>;
  byModule: Array<{ module: string; selfMs: number; pct: number }>;
}

const ROOT_PREFIX = new URL('../..', import.meta.url).href;

/** Short location of a frame: src/..., pkg/..., node:... */
function where(url: string, line: number): string {
  if (!url) return '';
  let u = url.startsWith(ROOT_PREFIX) ? url.slice(ROOT_PREFIX.length) : url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm !== -1) u = u.slice(nm + 'node_modules/'.length);
  return `${u}:${line + 1}`;
}

/** Which module or package the time belongs to, for the roll-up. */
function moduleOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (!url) return functionName.startsWith('(') ? functionName : '(native/builtin)';
  if (url.startsWith('node:internal/')) {
    const parts = url.slice('node:internal/'.length).split('/');
    return `node:${parts.length > 1 ? `${parts[0]}/${parts[1]!.replace(/\.js$/, '')}` : parts[0]!.replace(/\.js$/, '')}`;
  }
  if (url.startsWith('node:')) return url;
  if (url.startsWith('wasm://')) return 'wasm engine';
  const nm = url.lastIndexOf('node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith(ROOT_PREFIX)) return url.slice(ROOT_PREFIX.length);
  return url;
}

export function summarizeProfile(file: string, topN = 25): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time before sample i; charge the interval after a sample to it
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0;
    selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + dt);
  }
  const fns = new Map<string, { fn: string; where: string; us: number }>();
  const mods = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame;
    // a piscina worker waiting for work blocks in Atomics.wait inside this function: idle, not CPU
    if (f.functionName === '(idle)' || (f.functionName === 'atomicsWaitLoop' && f.url.includes('piscina'))) continue;
    busy += us;
    const fn = f.functionName || '(anonymous)';
    const w = where(f.url, f.lineNumber);
    const key = `${fn}@${w}`;
    const e = fns.get(key) ?? { fn, where: w, us: 0 };
    e.us += us;
    fns.set(key, e);
    const m = moduleOf(f);
    mods.set(m, (mods.get(m) ?? 0) + us);
  }
  const pct = (us: number) => Math.round((us / busy) * 1000) / 10;
  const ms = (us: number) => Math.round(us / 100) / 10;
  const thread = Number(/\.(\d+)\.\d+\.cpuprofile$/.exec(file)?.[1] ?? 0);
  return {
    file,
    thread,
    wallMs: ms(p.endTime - p.startTime),
    busyMs: ms(busy),
    top: [...fns.values()].sort((a, b) => b.us - a.us).slice(0, topN).map((e) => ({ fn: e.fn, where: e.where, selfMs: ms(e.us), pct: pct(e.us) })),
    byModule: [...mods.entries()].sort((a, b) => b[1] - a[1]).slice(0, topN).map(([module, us]) => ({ module, selfMs: ms(us), pct: pct(us) })),
  };
}

/** All profiles under `dir` (one sub-directory per gateway process). */
export function profilesIn(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...profilesIn(path));
    else if (entry.name.endsWith('.cpuprofile')) out.push(path);
  }
  return out.sort();
}

export function printSummary(s: ProfileSummary, topN = 15): void {
  const busyPct = s.wallMs > 0 ? Math.round((s.busyMs / s.wallMs) * 100) : 0;
  console.log(`\n${s.file}\n  thread ${s.thread === 0 ? 'main' : `worker ${s.thread}`}: ${s.busyMs} ms busy of ${s.wallMs} ms (${busyPct}%)`);
  console.log('  top self time:');
  for (const t of s.top.slice(0, topN)) console.log(`    ${t.pct.toFixed(1).padStart(5)}%  ${t.fn}  ${t.where}`);
  console.log('  by module:');
  for (const m of s.byModule.slice(0, 12)) console.log(`    ${m.pct.toFixed(1).padStart(5)}%  ${m.module}`);
}
