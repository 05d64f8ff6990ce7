// Java clients with a schema registry's own serializers (test/java): the serdes jars resolved
// by Maven from test/java/pom.xml into .cache/serdes/ once (a marker holds the pom's hash),
// run beside the Kafka jars with the client source in Java's source-file mode.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { ensureKafkaJars, findJava, runMaven } from '../../src/dev/kafka.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const POM = join(ROOT, 'test/java/pom.xml');
const DIR = join(ROOT, '.cache/serdes');

let resolving: Promise<string> | undefined;

/** The serdes jars' classpath, resolving them when the pom changed or a jar is gone. */
export function ensureSerdesJars(): Promise<string> {
  resolving ??= resolve().finally(() => (resolving = undefined));
  return resolving;
}

async function resolve(): Promise<string> {
  const sha = createHash('sha256').update(await readFile(POM)).digest('hex').slice(0, 16);
  const libs = join(DIR, sha);
  const marker = join(libs, '.complete');
  if (existsSync(marker)) {
    const jars = JSON.parse(await readFile(marker, 'utf8')) as string[];
    if (jars.every((j) => existsSync(join(libs, j)))) return jars.map((j) => join(libs, j)).join(delimiter);
  }
  await rm(libs, { recursive: true, force: true });
  await mkdir(libs, { recursive: true });
  await runMaven(['-B', '-q', '-f', POM, 'dependency:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${libs}`]);
  const jars = (await readdir(libs)).filter((f) => f.endsWith('.jar')).sort();
  await writeFile(marker, JSON.stringify(jars));
  return jars.map((j) => join(libs, j)).join(delimiter);
}

/** Runs test/java/<source> with the Kafka and serdes jars; resolves with its exit code and output. */
export async function runJavaClient(source: string, args: string[], opts: { timeoutMs?: number; jvmOpts?: string[] } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [java, kafka, serdes] = await Promise.all([findJava(), ensureKafkaJars(), ensureSerdesJars()]);
  // Kafka's jars first: its Jackson is newer than the one the serdes declare, and the client needs it
  const classpath = [kafka, serdes].join(delimiter);
  return new Promise((done, fail) => {
    const child = spawn(java, ['-Xmx256m', '-XX:TieredStopAtLevel=1', '-XX:+UseSerialGC', ...(opts.jvmOpts ?? []), '-cp', classpath, join(ROOT, 'test/java', source), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}
