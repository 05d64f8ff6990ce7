import { after } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseDocument } from 'yaml';

/**
 * A gateway in its own process (`streamgate serve`), for what an in-process gateway cannot
 * show: that client input never crashes it, how much memory it holds, SIGTERM and kill -9.
 * Its JSON log lines are kept so tests can grep them (secrets must never appear).
 */
export interface GatewayProcess {
  pid: number;
  http?: number;
  kafka?: number;
  admin?: number;
  kinesis?: number;
  /** every log line so far (pino JSON on stderr) */
  logs: string[];
  /** settles when the process exits, however that happens */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  /** resident set size in bytes, from /proc */
  rss(): number;
  /** SIGTERM and wait for the exit (graceful drain) */
  stop(): Promise<void>;
  /** SIGKILL (crash), wait for the exit */
  kill(): Promise<void>;
}

const ROOT = new URL('../..', import.meta.url).pathname;
const running = new Set<ChildProcess>();
after(async () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts `streamgate serve` with `yaml` and waits for the `wait` listeners (default http); log level info, the ready lines carry the ports. */
export async function spawnGateway(yaml: string, opts: { env?: Record<string, string>; timeoutMs?: number; wait?: Array<'http' | 'kafka' | 'admin' | 'kinesis'>; args?: string[] } = {}): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'sg-gwproc-'));
  const file = join(dir, 'gateway.yaml');
  // the ready lines (info) carry the ports; a test that asked for more (debug) keeps it
  const doc = parseDocument(yaml);
  if (doc.getIn(['log', 'level']) === 'silent') doc.setIn(['log', 'level'], 'info');
  writeFileSync(file, doc.toString({ lineWidth: 0 }));
  const child = spawn(process.execPath, ['src/cli/main.ts', 'serve', '--config', file, ...(opts.args ?? [])], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  running.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  const logs: string[] = [];
  const proc: GatewayProcess = {
    pid: child.pid!,
    logs,
    exited,
    alive: () => child.exitCode === null && child.signalCode === null,
    rss: () => {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
    },
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
  const wait = opts.wait ?? ['http'];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the gateway did not start in time:\n${logs.slice(-20).join('\n')}`)), opts.timeoutMs ?? 60_000);
    const onLine = (line: string) => {
      logs.push(line);
      let l: { msg?: string; port?: number };
      try {
        l = JSON.parse(line) as typeof l;
      } catch {
        return;
      }
      if (l.msg === 'HTTP listener ready') proc.http = l.port;
      if (l.msg === 'Kafka listener ready') proc.kafka = l.port;
      if (l.msg?.startsWith('admin listener ready')) proc.admin = l.port;
      if (l.msg === 'Kinesis listener ready') proc.kinesis = l.port;
      if (wait.every((w) => proc[w] !== undefined)) {
        clearTimeout(timer);
        resolve();
      }
    };
    createInterface({ input: child.stderr! }).on('line', onLine);
    createInterface({ input: child.stdout! }).on('line', onLine);
    void exited.then(({ code, signal }) => reject(new Error(`the gateway exited (${code ?? signal}) while starting:\n${logs.slice(-20).join('\n')}`)));
  });
  return proc;
}
