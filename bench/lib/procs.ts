// Child processes of a bench run. Every child is registered here so that a thrown error,
// Ctrl-C, SIGTERM or a plain exit of the bench all take the children down with it.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';

const GUARD = new URL('./orphan-guard.ts', import.meta.url).pathname;
const STOP_GRACE_MS = 15_000; // a --cpu-prof child writes its profile while exiting

export interface Proc {
  name: string;
  child: ChildProcess;
  logFile: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process is gone */
  stop(): Promise<void>;
  /** last lines of the process's stdout+stderr, for error messages */
  tail(lines?: number): string;
}

const live = new Set<Proc>();
const cleanups: Array<() => Promise<unknown>> = [];
let hooksInstalled = false;

/** Runs `fn` at shutdown (error, signal or normal end), after the children are stopped. */
export function onCleanup(fn: () => Promise<unknown>): void {
  cleanups.push(fn);
}

/** Stops every live child and runs the cleanups in reverse order; safe to call twice. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop()));
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => {});
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // last resort: whatever is still alive when the bench process exits gets SIGKILL
  process.on('exit', () => {
    for (const p of live) p.child.kill('SIGKILL');
  });
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) {
      for (const p of live) p.child.kill('SIGKILL');
      process.exit(130);
    }
    interrupted = true;
    console.error(`\n${signal}: stopping the bench and its child processes...`);
    void stopAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** Starts `node <nodeArgs> --import orphan-guard <script> <args>` with stdout+stderr appended to `logFile`. */
export function spawnNode(name: string, script: string, args: string[], opts: { logFile: string; nodeArgs?: string[]; cwd?: string; env?: NodeJS.ProcessEnv }): Proc {
  installHooks();
  const fd = openSync(opts.logFile, 'a');
  let child: ChildProcess;
  try {
    // stdin stays a pipe: its end is what tells the child that the bench is gone
    child = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', GUARD, script, ...args], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['pipe', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: null, signal: null }));
  });
  let stopping: Promise<void> | undefined;
  const proc: Proc = {
    name,
    child,
    logFile: opts.logFile,
    exited,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
          await exited;
          clearTimeout(timer);
        }
        live.delete(proc);
      })();
      return stopping;
    },
    tail(lines = 30) {
      try {
        return readFileSync(opts.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
      } catch {
        return '(no output)';
      }
    },
  };
  live.add(proc);
  void exited.then(() => live.delete(proc));
  return proc;
}

/** A port that was free a moment ago on 127.0.0.1 (the child binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `GET <base>/healthz` until it answers 200; fails fast when the process exits. */
export async function waitHealthy(proc: Proc, base: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void proc.exited.then(() => (exited = true));
  let last = '';
  while (Date.now() < deadline) {
    if (exited) throw new Error(`${proc.name} exited during start-up:\n${proc.tail()}`);
    try {
      const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${proc.name} did not answer GET /healthz within ${timeoutMs} ms (last: ${last}):\n${proc.tail()}`);
}
