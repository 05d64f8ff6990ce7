import { execFileSync } from 'node:child_process';
import { runProcess, type ProcessResult } from './process.ts';

export type KcatResult = ProcessResult;

/** kcat from Debian; installed on the spot when missing and we may (CI runs as root on Debian 12). */
export function ensureKcat(): void {
  try {
    execFileSync('kcat', ['-V'], { stdio: 'ignore' });
    return;
  } catch {
    // not installed
  }
  if (process.getuid?.() !== 0) throw new Error('kcat is not installed (apt-get install kcat)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    execFileSync('apt-get', ['install', '-y', '-q', 'kcat'], { stdio: 'ignore', env });
  } catch {
    // a fresh machine has no package lists yet
    execFileSync('apt-get', ['update', '-q'], { stdio: 'ignore' });
    execFileSync('apt-get', ['install', '-y', '-q', 'kcat'], { stdio: 'ignore', env });
  }
}

/** SASL/PLAIN with a JWT as the password: works with every librdkafka build (Debian's has no OIDC fetcher). */
export function plainJwtAuth(who: string, token: string): string[] {
  return ['-X', 'security.protocol=SASL_PLAINTEXT', '-X', 'sasl.mechanisms=PLAIN', '-X', `sasl.username=${who}`, '-X', `sasl.password=${token}`];
}

/** Runs kcat against `bootstrap` with `auth` options, feeding `input` on stdin; killed after timeoutMs. */
export function runKcat(bootstrap: string, auth: string[], args: string[], input?: string, timeoutMs = 30_000): Promise<KcatResult> {
  return runProcess('kcat', ['-b', bootstrap, ...auth, ...args], { input, timeoutMs });
}
