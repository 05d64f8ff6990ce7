// Debian's chromium for the browser tests (the approvals page), driven by playwright-core
// without a browser download: installed with apt-get when missing (CI runs as root on a
// fresh Debian machine), like ensureClickHouseInstalled.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const CHROMIUM = '/usr/bin/chromium';

/** Flags for a headless run in a container as root, without background traffic. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let installing: Promise<void> | undefined;

export function ensureChromiumInstalled(log: (msg: string) => void = (m) => process.stderr.write(`${m}\n`)): Promise<void> {
  if (existsSync(CHROMIUM)) return Promise.resolve();
  installing ??= (async () => {
    if (process.getuid?.() !== 0) throw new Error(`${CHROMIUM} is missing and this is not root: run \`apt-get install -y chromium\``);
    const started = performance.now();
    log('chromium is missing: installing it with apt-get (Debian package)');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const opts = { env, maxBuffer: 64 * 1024 * 1024 };
    try {
      await run('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'chromium'], opts);
    } catch {
      // a fresh machine has no package lists yet
      await run('apt-get', ['update', '-q'], opts);
      await run('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'chromium'], opts);
    }
    if (!existsSync(CHROMIUM)) throw new Error(`apt-get installed chromium, but ${CHROMIUM} is missing`);
    log(`chromium installed in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  })().catch((err: unknown) => {
    installing = undefined;
    throw err;
  });
  return installing;
}
