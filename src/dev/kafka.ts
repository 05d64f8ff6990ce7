// Local single-node Apache Kafka 4.x (KRaft) for development and tests.
//
// The broker and tool jars come from Maven Central through src/dev/kafka/pom.xml and are
// cached under <repo>/.cache/kafka/<version>/libs, so only the first run needs Maven.
// Script mode: `node src/dev/kafka.ts` runs a broker on 127.0.0.1:9092 (KAFKA_PORT overrides)
// with data in <repo>/.cache/kafka-data until SIGINT/SIGTERM.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export interface KafkaOptions {
  /** PLAINTEXT client port on 127.0.0.1; a free one is picked when omitted (or reused from a previous run on the same dataDir). */
  port?: number;
  /** CONTROLLER (KRaft quorum) port on 127.0.0.1; picked like `port`. */
  controllerPort?: number;
  /** Broker state. Reused as is when already formatted; otherwise a fresh temp dir that stop() removes. */
  dataDir?: string;
  /** Where server.log and the JVM's own stdout/stderr (kafka.out) go; default <dataDir>/logs. */
  logDir?: string;
  /**
   * A second plaintext listener on 127.0.0.1:`port` that tells its clients to connect to
   * `advertisedPort` instead (something relaying to it): the bench measures a bare TCP hop.
   */
  relayedListener?: { port: number; advertisedPort: number };
  /** server.properties overrides, applied last. */
  extraConfig?: Record<string, string>;
  /** Ready timeout in ms (default 90 000). */
  startTimeoutMs?: number;
  /** Heap and other JVM flags; default ['-Xms128m', '-Xmx512m']. */
  jvmOpts?: string[];
  /** Keep an auto-created temp dataDir after stop() (default false). */
  keepDataDir?: boolean;
  /** Extra arguments of the storage format step, e.g. `--add-scram SCRAM-SHA-256=[name=u,password=p]` (KRaft SCRAM users). */
  formatArgs?: string[];
}

export interface RunningKafka {
  /** host:port for clients. */
  bootstrap: string;
  port: number;
  controllerPort: number;
  dataDir: string;
  logDir: string;
  /** The broker's log4j file (tail it when something goes wrong). */
  logFile: string;
  classpath: string;
  pid: number;
  /** Settles when the JVM exits, however that happens (watch it to catch a broker dying mid-test). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (clean shutdown), SIGKILL after 20 s; resolves once the JVM has exited. */
  stop(): Promise<void>;
  /** SIGKILL right away, for crash tests; the dataDir is kept so a restart can reuse it. */
  kill(): void;
}

export interface KafkaToolOptions {
  /** Written to the tool's stdin, which is then closed (console producer input). */
  input?: string;
  /** Kill the tool and reject after this many ms (default 60 000). */
  timeoutMs?: number;
  jvmOpts?: string[];
  env?: Record<string, string>;
}

export interface KafkaToolResult {
  /** Exit code; null when the JVM died from a signal. */
  code: number | null;
  stdout: string;
  stderr: string;
}

const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
const POM = join(import.meta.dirname, 'kafka', 'pom.xml');
const CACHE_ROOT = join(REPO_ROOT, '.cache', 'kafka');
const MARKER = 'libs.complete.json';
const DEFAULT_START_TIMEOUT_MS = 90_000;
const STOP_GRACE_MS = 20_000;
// Written into dataDir so a restart without explicit ports lands on the same ones.
const PORTS_FILE = 'streamgate-ports.json';
const META_SUBDIR = 'kraft-logs';

// ---------------------------------------------------------------------------
// jars

interface Marker {
  version: string;
  pomSha256: string;
  jars: string[];
}

let classpathPromise: Promise<string> | undefined;

/** Kafka version pinned by the pom (single source of truth). */
export async function kafkaVersion(): Promise<string> {
  const pom = await readFile(POM, 'utf8');
  const m = /<kafka\.version>\s*([^<\s]+)\s*<\/kafka\.version>/.exec(pom);
  if (!m?.[1]) throw new Error(`no <kafka.version> in ${POM}`);
  return m[1];
}

/**
 * Makes sure the broker + tools jars are in the cache and returns the classpath.
 * Maven runs only when the marker is missing, stale (pom changed) or a jar vanished.
 */
export function ensureKafkaJars(): Promise<string> {
  // Memoized so concurrent callers in one process share a single Maven run.
  classpathPromise ??= resolveJars().catch((err: unknown) => {
    classpathPromise = undefined;
    throw err;
  });
  return classpathPromise;
}

async function resolveJars(): Promise<string> {
  const pomText = await readFile(POM, 'utf8');
  const version = await kafkaVersion();
  const pomSha256 = createHash('sha256').update(pomText).digest('hex');
  const versionDir = join(CACHE_ROOT, version);
  const libs = join(versionDir, 'libs');

  const cachedClasspath = async (): Promise<string | undefined> => {
    const m = await readMarker(join(versionDir, MARKER));
    if (m && m.pomSha256 === pomSha256 && m.jars.every((j) => existsSync(join(libs, j)))) return toClasspath(libs, m.jars);
    return undefined;
  };
  const hit = await cachedClasspath();
  if (hit) return hit;

  await mkdir(versionDir, { recursive: true });
  // Resolve into a private dir and rename, so a parallel process never sees half a libs dir.
  const staging = await mkdtemp(join(versionDir, 'libs.tmp-'));
  try {
    await runMaven(['-B', '-q', '-f', POM, 'dependency:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${staging}`]);
    const jars = (await readdir(staging)).filter((f) => f.endsWith('.jar')).sort();
    if (!jars.some((j) => j.startsWith(`kafka_2.13-${version}`))) {
      throw new Error(`Maven finished but kafka_2.13-${version}.jar is not in ${staging}`);
    }
    // Another process may have finished first and be running JVMs off libs: keep its copy.
    const raced = await cachedClasspath();
    if (raced) return raced;
    await rm(libs, { recursive: true, force: true });
    await rename(staging, libs);
    const marker: Marker = { version, pomSha256, jars };
    await writeFile(join(versionDir, MARKER), JSON.stringify(marker, null, 2) + '\n');
    return toClasspath(libs, jars);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

async function readMarker(path: string): Promise<Marker | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Marker;
  } catch {
    return undefined;
  }
}

function toClasspath(libs: string, jars: string[]): string {
  // Explicit list rather than libs/* so the order is deterministic.
  return jars.map((j) => join(libs, j)).join(':');
}

/** Runs Maven (on PATH) with `args`; rejects with the tail of its output. Shared with the schema registry's build. */
export function runMaven(args: string[]): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('mvn', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'ENOENT'
          ? new Error('`mvn` (Apache Maven) is not on PATH; it is needed once to fetch the Kafka jars and build the schema registry (apt-get install maven)')
          : err,
      );
    });
    child.on('close', (code) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`mvn ${args.join(' ')} exited with ${code}:\n${out.slice(-4000)}`));
    });
  });
}

// ---------------------------------------------------------------------------
// java

let javaPromise: Promise<string> | undefined;

/** Path of a java >= 17 (JAVA_HOME first, then PATH); rejects with a readable message otherwise. */
export function findJava(): Promise<string> {
  javaPromise ??= (async () => {
    const java = process.env['JAVA_HOME'] ? join(process.env['JAVA_HOME'], 'bin', 'java') : 'java';
    const res = await run(java, ['-version'], {}).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') {
        throw new Error(
          `java not found (${java}); Kafka 4.x needs a Java 17+ runtime: apt-get install openjdk-17-jre-headless, or set JAVA_HOME`,
        );
      }
      throw err;
    });
    // `java -version` prints e.g. `openjdk version "17.0.15"` or `"1.8.0_392"` on stderr.
    const m = /version "(\d+)(?:\.(\d+))?/.exec(res.stderr);
    const major = m ? (m[1] === '1' ? Number(m[2]) : Number(m[1])) : NaN;
    if (!(major >= 17)) {
      throw new Error(`Kafka 4.x needs Java 17+, but ${java} reports: ${res.stderr.split('\n')[0] ?? '?'}`);
    }
    return java;
  })().catch((err: unknown) => {
    javaPromise = undefined;
    throw err;
  });
  return javaPromise;
}

function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; env?: Record<string, string> }): Promise<KafkaToolResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // Ignore EPIPE when the tool exits before reading all of its input.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
    const timer =
      opts.timeoutMs !== undefined
        ? setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`${cmd} ${args.slice(-8).join(' ')} timed out after ${opts.timeoutMs} ms\nstdout:\n${stdout.slice(-2000)}\nstderr:\n${stderr.slice(-2000)}`));
          }, opts.timeoutMs)
        : undefined;
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      if (timer) clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------------
// tools

/**
 * Runs a Kafka CLI main class from the cached jars, e.g.
 * org.apache.kafka.tools.TopicCommand, org.apache.kafka.tools.ConsoleProducer,
 * org.apache.kafka.tools.consumer.ConsoleConsumer, org.apache.kafka.tools.ProducerPerformance,
 * org.apache.kafka.tools.ConsumerPerformance, kafka.tools.StorageTool.
 * Resolves with the exit code (non-zero is not an error); rejects on timeout or spawn failure.
 */
export async function runKafkaTool(mainClass: string, args: string[], opts: KafkaToolOptions = {}): Promise<KafkaToolResult> {
  const [java, classpath] = await Promise.all([findJava(), ensureKafkaJars()]);
  const log4j = await toolsLog4jConfig();
  const jvm = [
    // Short-lived tools: a small heap and C1-only JIT start noticeably faster.
    '-Xmx256m',
    '-XX:TieredStopAtLevel=1',
    '-XX:+UseSerialGC',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${log4j}`,
    ...(opts.jvmOpts ?? []),
  ];
  return run(java, [...jvm, '-cp', classpath, mainClass, ...args], {
    timeoutMs: opts.timeoutMs ?? 60_000,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    ...(opts.env ? { env: opts.env } : {}),
  });
}

async function toolsLog4jConfig(): Promise<string> {
  // Tools log WARN+ to stderr so their stdout stays parseable (consumer output, perf stats).
  const path = join(CACHE_ROOT, 'tools-log4j2.properties');
  const text = [
    'status = error',
    'appender.err.type = Console',
    'appender.err.name = STDERR',
    'appender.err.target = SYSTEM_ERR',
    'appender.err.layout.type = PatternLayout',
    'appender.err.layout.pattern = [%d] %p %m (%c)%n',
    'rootLogger.level = WARN',
    'rootLogger.appenderRef.err.ref = STDERR',
    '',
  ].join('\n');
  if (!existsSync(path) || (await readFile(path, 'utf8')) !== text) {
    await mkdir(CACHE_ROOT, { recursive: true });
    // Write-then-rename: concurrent tool runs must never read a half-written file.
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, text);
    await rename(tmp, path);
  }
  return path;
}

// ---------------------------------------------------------------------------
// broker

const live = new Set<ChildProcess>();
// Brokers SIGKILLed by kill() that have not exited yet: a restart right after kill() must
// wait for them, or it would find its port still bound.
const dying = new Set<Promise<unknown>>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A crashed test runner must not leave a JVM holding the ports.
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

export async function startKafka(opts: KafkaOptions = {}): Promise<RunningKafka> {
  const [java, classpath] = await Promise.all([findJava(), ensureKafkaJars()]);

  const autoDataDir = opts.dataDir === undefined;
  const dataDir = resolve(opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'streamgate-kafka-'))));
  try {
    return await launch(java, classpath, dataDir, autoDataDir, opts);
  } catch (err) {
    // A failed start leaves nothing behind in a dir nobody else knows about.
    if (autoDataDir && !opts.keepDataDir) await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
}

async function launch(java: string, classpath: string, dataDir: string, autoDataDir: boolean, opts: KafkaOptions): Promise<RunningKafka> {
  const logDir = resolve(opts.logDir ?? join(dataDir, 'logs'));
  const metaDir = join(dataDir, META_SUBDIR);
  await mkdir(logDir, { recursive: true });
  await mkdir(metaDir, { recursive: true });

  await Promise.all(dying);
  const previous = await readPorts(join(dataDir, PORTS_FILE));
  const port = opts.port ?? (previous && (await isFree(previous.port)) ? previous.port : undefined);
  const controllerPort =
    opts.controllerPort ?? (previous && (await isFree(previous.controllerPort)) ? previous.controllerPort : undefined);
  const ports = await pickPorts([port, controllerPort]);
  const [clientPort, ctrlPort] = ports as [number, number];
  await writeFile(join(dataDir, PORTS_FILE), JSON.stringify({ port: clientPort, controllerPort: ctrlPort }) + '\n');

  const propsFile = join(dataDir, 'server.properties');
  await writeFile(propsFile, serverProperties(clientPort, ctrlPort, metaDir, { ...relayedListener(clientPort, ctrlPort, opts.relayedListener), ...opts.extraConfig }));
  const logFile = join(logDir, 'server.log');
  const log4jFile = join(dataDir, 'log4j2.properties');
  await writeFile(log4jFile, brokerLog4jConfig(logFile));

  if (!existsSync(join(metaDir, 'meta.properties'))) {
    const fmt = await runKafkaTool('kafka.tools.StorageTool', ['format', '-t', randomClusterId(), '-c', propsFile, ...(opts.formatArgs ?? [])], {
      timeoutMs: 60_000,
    });
    if (fmt.code !== 0) {
      throw new Error(`Kafka storage format failed (exit ${fmt.code}):\n${fmt.stdout}\n${fmt.stderr}`);
    }
  }

  const outFile = join(logDir, 'kafka.out');
  const out = createWriteStream(outFile, { flags: 'a' });
  const jvm = [
    ...(opts.jvmOpts ?? ['-Xms128m', '-Xmx512m']),
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${log4jFile}`,
    `-Dkafka.logs.dir=${logDir}`,
  ];
  const child = spawn(java, [...jvm, '-cp', classpath, 'kafka.Kafka', propsFile], {
    cwd: dataDir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(out, { end: false });
  child.stderr.pipe(out, { end: false });
  installExitHook();
  live.add(child);

  let exited = false;
  const exitPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.on('exit', (code, signal) => {
      exited = true;
      live.delete(child);
      res({ code, signal });
    });
  });
  // 'close' fires after both pipes drained; only then can kafka.out be closed.
  child.on('close', () => out.end());
  const spawnError = new Promise<never>((_, reject) => child.on('error', reject));
  spawnError.catch(() => {});

  const bootstrap = `127.0.0.1:${clientPort}`;
  const deadline = Date.now() + (opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
  try {
    await Promise.race([
      waitReady(clientPort, deadline, () => exited),
      exitPromise.then(async ({ code, signal }) => {
        throw new Error(`Kafka exited during startup (code ${code}, signal ${signal})\n${await logTail(logFile, outFile)}`);
      }),
      spawnError,
    ]);
  } catch (err) {
    if (exited) throw err; // already carries the log tail
    if (child.pid !== undefined) {
      child.kill('SIGKILL');
      await exitPromise;
    }
    throw new Error(`Kafka on ${bootstrap} did not become ready: ${(err as Error).message}\n${await logTail(logFile, outFile)}`);
  }

  let stopping: Promise<void> | undefined;
  return {
    bootstrap,
    port: clientPort,
    controllerPort: ctrlPort,
    dataDir,
    logDir,
    logFile,
    classpath,
    pid: child.pid ?? -1,
    exited: exitPromise,
    stop() {
      stopping ??= (async () => {
        if (!exited) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
          await exitPromise;
          clearTimeout(timer);
        }
        if (autoDataDir && !opts.keepDataDir) await rm(dataDir, { recursive: true, force: true });
      })();
      return stopping;
    },
    kill() {
      if (exited) return;
      child.kill('SIGKILL');
      dying.add(exitPromise);
      void exitPromise.then(() => dying.delete(exitPromise));
    },
  };
}

function relayedListener(port: number, controllerPort: number, relayed: KafkaOptions['relayedListener']): Record<string, string> {
  if (!relayed) return {};
  return {
    listeners: `PLAINTEXT://127.0.0.1:${port},RELAYED://127.0.0.1:${relayed.port},CONTROLLER://127.0.0.1:${controllerPort}`,
    'advertised.listeners': `PLAINTEXT://127.0.0.1:${port},RELAYED://127.0.0.1:${relayed.advertisedPort}`,
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,RELAYED:PLAINTEXT,CONTROLLER:PLAINTEXT',
  };
}

function serverProperties(port: number, controllerPort: number, metaDir: string, extra: Record<string, string>): string {
  const props: Record<string, string> = {
    'process.roles': 'broker,controller',
    'node.id': '1',
    // Static voter set: the controller port may change between restarts of the same dataDir.
    'controller.quorum.voters': `1@127.0.0.1:${controllerPort}`,
    listeners: `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    'advertised.listeners': `PLAINTEXT://127.0.0.1:${port}`,
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'log.dirs': metaDir,
    // Single node: every internal topic must make do with one replica.
    'offsets.topic.replication.factor': '1',
    'transaction.state.log.replication.factor': '1',
    'transaction.state.log.min.isr': '1',
    'share.coordinator.state.topic.replication.factor': '1',
    'share.coordinator.state.topic.min.isr': '1',
    'default.replication.factor': '1',
    'min.insync.replicas': '1',
    // Fewer internal partitions: faster first group/transaction use on a 2-core box.
    'offsets.topic.num.partitions': '8',
    'transaction.state.log.num.partitions': '8',
    'num.partitions': '1',
    'auto.create.topics.enable': 'true',
    // Tests join groups one consumer at a time; the default 3 s delay only slows them down.
    'group.initial.rebalance.delay.ms': '0',
    // After a SIGKILL the controller refuses the new incarnation until the old session
    // expires (default 9 s); 5 s keeps crash-restart tests quick yet tolerates GC/CPU stalls.
    'broker.session.timeout.ms': '5000',
    'broker.heartbeat.interval.ms': '1000',
    // The KIP-848 consumer protocol is GA and on by default in 4.x; no flag needed.
    'num.network.threads': '2',
    'num.io.threads': '4',
    'log.segment.bytes': String(16 * 1024 * 1024),
    'log.retention.hours': '24',
    'log.retention.check.interval.ms': '60000',
    // The 128 MiB default dedupe buffer is a big slice of a 512 MiB heap.
    'log.cleaner.dedupe.buffer.size': String(8 * 1024 * 1024),
    ...extra,
  };
  return (
    Object.entries(props)
      .map(([k, v]) => `${k}=${escapeProp(v)}`)
      .join('\n') + '\n'
  );
}

function escapeProp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function brokerLog4jConfig(logFile: string): string {
  // INFO to a size-capped file, with the per-request / per-segment chatter turned down.
  const quiet = [
    'kafka.request.logger',
    'state.change.logger',
    'kafka.log.LogCleaner',
    'org.apache.kafka.storage.internals.log',
    'org.apache.kafka.clients',
    'org.apache.kafka.common.utils.AppInfoParser',
    'kafka.server.ReplicaFetcherManager',
    // Full config dumps (hundreds of lines per start).
    'kafka.server.KafkaConfig',
    'org.apache.kafka.common.config.AbstractConfig',
    // Thread start/stop lines from timers and purgatories.
    'org.apache.kafka.server.quota',
    'org.apache.kafka.server.purgatory',
    'org.apache.kafka.server.util.timer',
  ];
  return [
    'status = error',
    'appender.file.type = RollingFile',
    'appender.file.name = FILE',
    `appender.file.fileName = ${logFile.replace(/\\/g, '/')}`,
    `appender.file.filePattern = ${logFile.replace(/\\/g, '/')}.%i`,
    'appender.file.layout.type = PatternLayout',
    'appender.file.layout.pattern = [%d] %p %m (%c)%n',
    'appender.file.policies.type = Policies',
    'appender.file.policies.size.type = SizeBasedTriggeringPolicy',
    'appender.file.policies.size.size = 10MB',
    'appender.file.strategy.type = DefaultRolloverStrategy',
    'appender.file.strategy.max = 2',
    'rootLogger.level = INFO',
    'rootLogger.appenderRef.file.ref = FILE',
    ...quiet.flatMap((name, i) => [`logger.q${i}.name = ${name}`, `logger.q${i}.level = WARN`]),
    '',
  ].join('\n');
}

function randomClusterId(): string {
  // Kafka cluster ids are base64url of 16 random bytes; a leading '-' would read as a CLI flag.
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

async function readPorts(path: string): Promise<{ port: number; controllerPort: number } | undefined> {
  try {
    const p = JSON.parse(await readFile(path, 'utf8')) as { port?: unknown; controllerPort?: unknown };
    if (typeof p.port === 'number' && typeof p.controllerPort === 'number') return { port: p.port, controllerPort: p.controllerPort };
  } catch {
    // no previous run
  }
  return undefined;
}

function isFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => res(true)));
  });
}

/** A free port on 127.0.0.1. */
export async function freeLocalPort(): Promise<number> {
  return (await pickPorts([undefined]))[0]!;
}

/** Fills undefined entries with distinct free ports; rejects if a requested port is taken. */
async function pickPorts(wanted: (number | undefined)[]): Promise<number[]> {
  for (const p of wanted) {
    if (p !== undefined && !(await isFree(p))) throw new Error(`port 127.0.0.1:${p} is already in use`);
  }
  // Hold all ephemeral listeners open at once so the picks are distinct.
  const servers = await Promise.all(
    wanted.map(
      (p) =>
        new Promise<ReturnType<typeof createServer> | undefined>((res, rej) => {
          if (p !== undefined) return res(undefined);
          const srv = createServer();
          srv.once('error', rej);
          srv.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => res(srv));
        }),
    ),
  );
  const result = wanted.map((p, i) => {
    if (p !== undefined) return p;
    const addr = servers[i]?.address();
    if (!addr || typeof addr === 'string') throw new Error('could not pick a free port');
    return addr.port;
  });
  await Promise.all(servers.map((s) => (s ? new Promise<void>((r) => s.close(() => r())) : undefined)));
  return result;
}

async function logTail(...files: string[]): Promise<string> {
  const parts: string[] = [];
  for (const f of files) {
    try {
      const lines = (await readFile(f, 'utf8')).trimEnd().split('\n');
      parts.push(`--- last lines of ${f} ---\n${lines.slice(-40).join('\n')}`);
    } catch {
      parts.push(`--- ${f}: (missing) ---`);
    }
  }
  return parts.join('\n');
}

// ---------------------------------------------------------------------------
// readiness probe: a Metadata v1 request that lists at least one live broker.
// The broker only serves requests once it has caught up with the controller and is
// unfenced, so this is the point where producers, consumers and admin calls work.

async function waitReady(port: number, deadline: number, hasExited: () => boolean): Promise<void> {
  let lastError = 'no attempt yet';
  while (Date.now() < deadline && !hasExited()) {
    try {
      const brokers = await metadataBrokerCount(port, Math.min(3000, Math.max(250, deadline - Date.now())));
      if (brokers > 0) return;
      lastError = 'metadata lists no live broker yet';
    } catch (err) {
      lastError = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  if (hasExited()) return new Promise(() => {}); // the exit branch of the race reports it
  throw new Error(`timed out; last probe error: ${lastError}`);
}

function metadataBrokerCount(port: number, timeoutMs: number): Promise<number> {
  return new Promise((res, rej) => {
    const clientId = Buffer.from('streamgate-dev-probe');
    const body = Buffer.alloc(2 + 2 + 4 + 2 + clientId.length + 4);
    let o = 0;
    o = body.writeInt16BE(3, o); // api_key Metadata
    o = body.writeInt16BE(1, o); // api_version 1
    o = body.writeInt32BE(7, o); // correlation_id
    o = body.writeInt16BE(clientId.length, o);
    o += clientId.copy(body, o);
    body.writeInt32BE(0, o); // topics: empty array = brokers only
    const frame = Buffer.alloc(4);
    frame.writeInt32BE(body.length, 0);

    const sock = new Socket();
    let buf = Buffer.alloc(0);
    const done = (err: Error | undefined, n?: number) => {
      sock.destroy();
      if (err) rej(err);
      else res(n ?? 0);
    };
    sock.setTimeout(timeoutMs, () => done(new Error('probe timed out')));
    sock.once('error', (err) => done(err));
    sock.once('close', () => done(new Error('connection closed before a response')));
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 4) return;
      const size = buf.readInt32BE(0);
      if (buf.length < 4 + size) return;
      // Response header v0: correlation_id; body v1: brokers[ node_id, host, port, rack ]...
      if (buf.readInt32BE(4) !== 7) return done(new Error('unexpected correlation id'));
      done(undefined, buf.readInt32BE(8));
    });
    sock.connect(port, '127.0.0.1', () => sock.write(Buffer.concat([frame, body])));
  });
}

// ---------------------------------------------------------------------------
// script mode

if (import.meta.main) {
  const port = Number(process.env['KAFKA_PORT'] ?? 9092);
  const t0 = Date.now();
  const kafka = await startKafka({ port, dataDir: join(REPO_ROOT, '.cache', 'kafka-data') });
  console.log(`Kafka ${await kafkaVersion()} ready in ${Date.now() - t0} ms`);
  console.log(`bootstrap: ${kafka.bootstrap}`);
  console.log(`data: ${kafka.dataDir}  log: ${kafka.logFile}`);
  let stopping = false;
  const shutdown = (sig: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${sig}: stopping Kafka...`);
    kafka.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}
