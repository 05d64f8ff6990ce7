import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startKafka, type RunningKafka } from '../../src/dev/kafka.ts';
import { startIdp, type RunningIdp } from '../../src/dev/idp.ts';
import { onCleanup } from './procs.ts';

/**
 * A suite's own broker, identity provider and scratch directory, all gone when the bench ends.
 * `relayed`: the broker also listens for a bare TCP relay (bench/servers/relay.ts) on that port.
 */
export async function startServices(name: string, relayed?: { port: number; advertisedPort: number }): Promise<{ work: string; kafka: RunningKafka; idp: RunningIdp }> {
  const work = mkdtempSync(join(tmpdir(), `sg-bench-${name}-`));
  let kafka: RunningKafka | undefined;
  let idp: RunningIdp | undefined;
  onCleanup(async () => {
    await kafka?.stop();
    await idp?.stop();
    rmSync(work, { recursive: true, force: true });
  });
  kafka = await startKafka({ jvmOpts: ['-Xms256m', '-Xmx768m'], ...(relayed ? { relayedListener: relayed } : {}) });
  idp = await startIdp({ port: 0 });
  return { work, kafka, idp };
}
