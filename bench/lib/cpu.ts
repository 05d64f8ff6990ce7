// CPU accounting around each timed run (Linux /proc): how busy the machine was, how much of
// that was the bench and the processes it started, and how much was someone else's. Other
// work on a 2-core machine moves the numbers, so every run records it and the suite warns.
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ; the kernel reports /proc times in these units on Linux

export interface CpuSnapshot {
  at: number;
  busy: number;
  steal: number;
  own: number;
}

function machineTicks(): { busy: number; steal: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number) as number[];
    return { busy: user! + nice! + system! + irq! + softirq! + steal!, steal: steal! };
  } catch {
    return undefined;
  }
}

function processTicks(pid: number): number {
  try {
    // fields after the ")" that closes comm: state is 3rd field, utime 14th, stime 15th
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system, all threads) a process has used so far. */
export function processCpuSeconds(pid: number): number {
  return processTicks(pid) / TICKS_PER_SECOND;
}

export function cpuSnapshot(pids: number[]): CpuSnapshot | undefined {
  const m = machineTicks();
  if (!m) return undefined;
  let own = 0;
  for (const pid of new Set(pids)) own += processTicks(pid);
  return { at: performance.now(), busy: m.busy, steal: m.steal, own };
}

export interface CpuUsage {
  /** cores' worth of CPU the whole machine used during the run */
  machineCores: number;
  /** of which the bench process and its children (load generator, servers, Kafka) */
  benchCores: number;
  /** of which everything else on the machine (other people's tests, services) */
  foreignCores: number;
  /** hypervisor steal, cores */
  stealCores: number;
}

export function cpuUsage(a: CpuSnapshot | undefined, b: CpuSnapshot | undefined): CpuUsage | undefined {
  if (!a || !b) return undefined;
  const seconds = (b.at - a.at) / 1000;
  const cores = (ticks: number) => Math.round((ticks / TICKS_PER_SECOND / seconds) * 100) / 100;
  return {
    machineCores: cores(b.busy - a.busy),
    benchCores: cores(b.own - a.own),
    foreignCores: cores(Math.max(0, b.busy - a.busy - (b.own - a.own))),
    stealCores: cores(b.steal - a.steal),
  };
}

function allProcessTicks(): Map<number, number> {
  const out = new Map<number, number>();
  try {
    for (const name of readdirSync('/proc')) if (/^\d+$/.test(name)) out.set(Number(name), processTicks(Number(name)));
  } catch {
    // not Linux: nothing to report
  }
  return out;
}

function describe(pid: number): string {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    return `${cmd.length > 90 ? `${cmd.slice(0, 90)}...` : cmd} (pid ${pid})`;
  } catch {
    return `pid ${pid}`;
  }
}

export interface QuietResult {
  /** cores used by other processes in the last window */
  foreignCores: number;
  /** the busiest of them, when the machine did not get quiet */
  busiest: string[];
}

/**
 * Waits until processes outside the bench use less than `maxForeignCores` over a short window
 * (other people's test runs on a shared machine come and go); gives up after `timeoutMs` and
 * then names the busiest foreign processes.
 */
export async function waitQuiet(pids: number[], maxForeignCores: number, timeoutMs: number): Promise<QuietResult> {
  const deadline = performance.now() + timeoutMs;
  const own = new Set(pids);
  for (;;) {
    const a = cpuSnapshot(pids);
    const before = performance.now() >= deadline - 400 ? allProcessTicks() : undefined;
    await new Promise((r) => setTimeout(r, 300));
    const u = cpuUsage(a, cpuSnapshot(pids));
    if (!u || u.foreignCores < maxForeignCores) return { foreignCores: u?.foreignCores ?? 0, busiest: [] };
    if (before) {
      const after = allProcessTicks();
      const busiest = [...after]
        .filter(([pid]) => !own.has(pid) && pid !== process.pid)
        .map(([pid, t]) => [pid, (t - (before.get(pid) ?? t)) / TICKS_PER_SECOND / 0.3] as const)
        .filter(([, cores]) => cores >= 0.05)
        .sort((x, y) => y[1] - x[1])
        .slice(0, 3)
        .map(([pid, cores]) => `${cores.toFixed(2)} cores: ${describe(pid)}`);
      return { foreignCores: u.foreignCores, busiest };
    }
  }
}
