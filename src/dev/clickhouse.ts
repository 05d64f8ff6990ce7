// A local ClickHouse server for development and tests: Debian's `clickhouse-server`
// package (18.16 on Debian 12), installed with apt-get when missing, run as a child
// process with a generated minimal config on loopback ports.
// Script mode: `node src/dev/clickhouse.ts` runs one on 127.0.0.1:8123 until SIGINT/SIGTERM.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

const CANDIDATES = ['/usr/bin/clickhouse-server', '/usr/sbin/clickhouse-server', '/usr/bin/clickhouse', '/usr/local/bin/clickhouse'];

export interface ClickHouseOptions {
  /** HTTP port on 127.0.0.1; a free one when omitted */
  port?: number;
  /** native-protocol port; a free one when omitted */
  tcpPort?: number;
  /** server state; reused when it exists (restart tests), else a temp dir that stop() removes */
  dataDir?: string;
  startTimeoutMs?: number;
}

export interface RunningClickHouse {
  url: string;
  port: number;
  tcpPort: number;
  dataDir: string;
  /** `SELECT version()` */
  version: string;
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, SIGKILL after 15 s; removes an auto-created dataDir unless `keepData` */
  stop(keepData?: boolean): Promise<void>;
  /** SIGKILL now; the dataDir stays for a restart */
  kill(): Promise<void>;
}

/** The server binary, or undefined when ClickHouse is not installed. */
export function clickHouseBinary(): { path: string; args: string[] } | undefined {
  for (const p of CANDIDATES) {
    if (!existsSync(p)) continue;
    // the single-binary packages run the server as `clickhouse server`
    return p.endsWith('/clickhouse') ? { path: p, args: ['server', '--'] } : { path: p, args: [] };
  }
  return undefined;
}

let installing: Promise<void> | undefined;

/**
 * Installs Debian's clickhouse-server with apt-get when no server binary is present
 * (CI runs as root on a fresh machine). About 3 s with a warm mirror.
 */
export function ensureClickHouseInstalled(log: (msg: string) => void = (m) => process.stderr.write(`${m}\n`)): Promise<void> {
  if (clickHouseBinary()) return Promise.resolve();
  installing ??= (async () => {
    if (process.getuid?.() !== 0) throw new Error('ClickHouse is not installed and this is not root: run `apt-get install -y clickhouse-server`');
    const started = performance.now();
    log('clickhouse-server is missing: installing it with apt-get (Debian package)');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await run('apt-get', ['update', '-q'], { env, maxBuffer: 64 * 1024 * 1024 });
    await run('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'clickhouse-server'], { env, maxBuffer: 64 * 1024 * 1024 });
    if (!clickHouseBinary()) throw new Error('apt-get installed clickhouse-server, but no server binary was found');
    log(`clickhouse-server installed in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  })().catch((err: unknown) => {
    installing = undefined;
    throw err;
  });
  return installing;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

function configXml(dir: string, port: number, tcpPort: number): string {
  // <yandex> is the root every version accepts (newer ones also take <clickhouse>)
  return `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>${dir}/log/server.log</log><errorlog>${dir}/log/error.log</errorlog><size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>${port}</http_port>
  <tcp_port>${tcpPort}</tcp_port>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <users_config>${dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>0</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
`;
}

const USERS_XML = `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`;

async function ping(url: string): Promise<string | undefined> {
  try {
    const res = await fetch(`${url}/?query=${encodeURIComponent('SELECT version()')}`, { signal: AbortSignal.timeout(1000) });
    return res.ok ? (await res.text()).trim() : undefined;
  } catch {
    return undefined;
  }
}

export async function startClickHouse(options: ClickHouseOptions = {}): Promise<RunningClickHouse> {
  const bin = clickHouseBinary();
  if (!bin) throw new Error('ClickHouse is not installed (call ensureClickHouseInstalled())');
  const ownDir = options.dataDir === undefined;
  const dir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'sg-clickhouse-')));
  const port = options.port ?? (await freePort());
  const tcpPort = options.tcpPort ?? (await freePort());
  for (const sub of ['log', 'data', 'tmp', 'user_files', 'format_schemas']) await mkdir(join(dir, sub), { recursive: true });
  await writeFile(join(dir, 'config.xml'), configXml(dir, port, tcpPort));
  await writeFile(join(dir, 'users.xml'), USERS_XML);

  const out = openSync(join(dir, 'log', 'stdout.log'), 'a');
  let child: ChildProcess;
  try {
    // cwd = dir: the server resolves relative paths and looks for preprocessed configs there
    child = spawn(bin.path, [...bin.args, `--config-file=${join(dir, 'config.xml')}`], { cwd: dir, stdio: ['ignore', out, out] });
  } finally {
    closeSync(out);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let dead = false;
  void exited.then(() => (dead = true));

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  let version: string | undefined;
  while (!(version = await ping(url))) {
    if (dead || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`ClickHouse did not start on ${url} (see ${join(dir, 'log')})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  const stop = async (keepData = false) => {
    if (!dead) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    if (ownDir && !keepData) await rm(dir, { recursive: true, force: true });
  };
  return {
    url,
    port,
    tcpPort,
    dataDir: dir,
    version,
    pid: child.pid!,
    exited,
    stop,
    kill: async () => {
      if (!dead) child.kill('SIGKILL');
      await exited;
    },
  };
}

if (import.meta.main) {
  await ensureClickHouseInstalled();
  const ch = await startClickHouse({ port: Number(process.env.CLICKHOUSE_PORT ?? 8123) });
  process.stdout.write(`ClickHouse ${ch.version} on ${ch.url} (data in ${ch.dataDir})\n`);
  const stop = () => void ch.stop().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
