import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';

const run = promisify(execFile);
const SERVER = '/usr/bin/redis-server';

export interface RunningRedis {
  url: string;
  /** stops the server when this process started it; a no-op for one that was already running */
  stop(): Promise<void>;
}

async function answers(url: string): Promise<boolean> {
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => {});
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

/**
 * The Redis the shared-state tests (and `state.kind: redis` in development) use, at
 * 127.0.0.1:`port`: the one already running there, or one started now without persistence,
 * after installing Debian's redis-server with apt-get when it is missing (CI runs as root on a
 * fresh machine). Tests share it and keep apart through key prefixes.
 */
export async function ensureRedis(port = 6379): Promise<RunningRedis> {
  const url = `redis://127.0.0.1:${port}`;
  if (await answers(url)) return { url, stop: () => Promise.resolve() };
  if (!existsSync(SERVER)) {
    if (process.getuid?.() !== 0) throw new Error(`no Redis at ${url} and redis-server is not installed (apt-get install -y redis-server)`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await run('apt-get', ['update', '-q'], { env, maxBuffer: 64 * 1024 * 1024 });
    await run('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'redis-server'], { env, maxBuffer: 64 * 1024 * 1024 });
  }
  const child = spawn(SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  for (let i = 0; i < 100; i++) {
    if (await answers(url)) {
      return {
        url,
        stop: async () => {
          child.kill('SIGTERM');
          await exited;
        },
      };
    }
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  // another process may have started one on the port meanwhile
  if (await answers(url)) return { url, stop: () => Promise.resolve() };
  throw new Error(`redis-server did not answer at ${url}`);
}
