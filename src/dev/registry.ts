// A local schema registry for development and tests: Apicurio Registry with in-memory storage,
// whose Confluent-compatible API (/apis/ccompat/v7) is what the gateway's registry client
// speaks. Built once from Maven Central through src/dev/registry/pom.xml (Quarkus's build
// step) into <repo>/.cache/registry/<version>/app, then started as a JVM per use.
// Script mode: `node src/dev/registry.ts [port]` runs one on 127.0.0.1 (default 8081) until SIGINT/SIGTERM.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { findJava, freeLocalPort, runMaven } from './kafka.ts';

const SOURCE = join(import.meta.dirname, 'registry');
const POM = join(SOURCE, 'pom.xml');
const PROPERTIES = join(SOURCE, 'src', 'main', 'resources', 'application.properties');
const CACHE_ROOT = resolve(import.meta.dirname, '..', '..', '.cache', 'registry');
const MARKER = 'app.complete.json';
const DEFAULT_START_TIMEOUT_MS = 90_000;
const STOP_GRACE_MS = 10_000;

export interface RunningRegistry {
  /** the server's base URL (http://127.0.0.1:port) */
  url: string;
  /** the Confluent-compatible API: what `schemaRegistry.url` points at */
  ccompat: string;
  port: number;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

/** Apicurio version pinned by the pom (single source of truth). */
export async function registryVersion(): Promise<string> {
  const m = /<apicurio\.version>\s*([^<\s]+)\s*<\/apicurio\.version>/.exec(await readFile(POM, 'utf8'));
  if (!m?.[1]) throw new Error(`no <apicurio.version> in ${POM}`);
  return m[1];
}

let appPromise: Promise<string> | undefined;

/** The runnable registry (its quarkus-run.jar), built by Maven only when missing or when its build files changed. */
export function ensureRegistryBuild(): Promise<string> {
  appPromise ??= build().catch((err: unknown) => {
    appPromise = undefined;
    throw err;
  });
  return appPromise;
}

async function build(): Promise<string> {
  const version = await registryVersion();
  const sha256 = createHash('sha256').update(await readFile(POM)).update(await readFile(PROPERTIES)).digest('hex');
  const versionDir = join(CACHE_ROOT, version);
  const app = join(versionDir, 'app');
  const jar = join(app, 'quarkus-run.jar');
  const built = async () => {
    try {
      const marker = JSON.parse(await readFile(join(versionDir, MARKER), 'utf8')) as { sha256?: string };
      return marker.sha256 === sha256 && existsSync(jar);
    } catch {
      return false;
    }
  };
  if (await built()) return jar;
  await mkdir(versionDir, { recursive: true });
  // built in a private copy and renamed, so a parallel process never runs half an app
  const staging = await mkdtemp(join(versionDir, 'build-'));
  try {
    await cp(SOURCE, staging, { recursive: true });
    await runMaven(['-B', '-q', '-f', join(staging, 'pom.xml'), 'package', '-Dquarkus.package.type=fast-jar']);
    const out = join(staging, 'target', 'quarkus-app');
    if (!existsSync(join(out, 'quarkus-run.jar'))) throw new Error(`Maven finished but ${out}/quarkus-run.jar is missing`);
    if (await built()) return jar;
    await rm(app, { recursive: true, force: true });
    await rename(out, app);
    await writeFile(join(versionDir, MARKER), `${JSON.stringify({ version, sha256 }, null, 2)}\n`);
    return jar;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

const live = new Set<ChildProcess>();
let exitHook = false;

/** Starts a registry on 127.0.0.1 (`port`, or a free one) and resolves once its API answers. */
export async function startRegistry(opts: { port?: number; startTimeoutMs?: number } = {}): Promise<RunningRegistry> {
  const [java, jar] = await Promise.all([findJava(), ensureRegistryBuild()]);
  const port = opts.port ?? (await freeLocalPort());
  const logDir = await mkdtemp(join(tmpdir(), 'streamgate-registry-'));
  const logFile = join(logDir, 'registry.log');
  const log = createWriteStream(logFile);
  // small and quick to start: a test registry holds a handful of schemas
  const child = spawn(java, ['-Xmx192m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', `-Dquarkus.http.host=127.0.0.1`, `-Dquarkus.http.port=${port}`, '-jar', jar], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  child.on('close', () => log.end());
  live.add(child);
  if (!exitHook) {
    exitHook = true;
    // a crashed test runner must not leave a JVM holding the port
    process.on('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  const exited = new Promise<void>((r) => child.once('exit', () => (live.delete(child), r())));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the schema registry exited during startup:\n${await tail(logFile)}`);
    try {
      const res = await fetch(`${url}/apis/ccompat/v7/subjects`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the schema registry on ${url} did not answer within ${opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS} ms:\n${await tail(logFile)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  let stopping: Promise<void> | undefined;
  return {
    url,
    ccompat: `${url}/apis/ccompat/v7`,
    port,
    pid: child.pid ?? -1,
    logFile,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
          await exited;
          clearTimeout(timer);
        }
        await rm(logDir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

async function tail(file: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).split('\n').slice(-40).join('\n');
  } catch {
    return '(no log)';
  }
}

if (import.meta.main) {
  const registry = await startRegistry({ port: Number(process.argv[2] ?? 8081) });
  console.log(`schema registry: ${registry.ccompat} (Apicurio ${await registryVersion()}, in-memory)`);
  const stop = () => void registry.stop().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
