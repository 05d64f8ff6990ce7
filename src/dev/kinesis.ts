import { createRequire } from 'node:module';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local Kinesis for development and tests: kinesalite (a full implementation of the
 * Kinesis API) in this process, in memory (memdown: no native code), on loopback. It speaks
 * HTTP/1.1 only: an AWS SDK v3 client talking to it directly needs NodeHttpHandler from
 * @smithy/node-http-handler. It accepts any credentials.
 */
export interface RunningKinesis {
  /** http://host:port */
  endpoint: string;
  port: number;
  stop(): Promise<void>;
}

export interface KinesisOptions {
  /** 0 = a free port */
  port?: number;
  host?: string;
  /** ms a CreateStream/DeleteStream/UpdateShardCount takes to settle (kinesalite default 500) */
  settleMs?: number;
}

type Kinesalite = (options: Record<string, unknown>) => Server;

export async function startKinesis(options: KinesisOptions = {}): Promise<RunningKinesis> {
  // kinesalite is CommonJS without type declarations
  const kinesalite = createRequire(import.meta.url)('kinesalite') as Kinesalite;
  const settle = options.settleMs ?? 50;
  const server = kinesalite({ createStreamMs: settle, deleteStreamMs: settle, updateStreamMs: settle, shardLimit: 1000 });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://${host}:${port}`,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

// `node src/dev/kinesis.ts [port]`: a standalone local Kinesis
if (import.meta.main) {
  const running = await startKinesis({ port: Number(process.argv[2] ?? 4567) });
  console.log(`kinesalite on ${running.endpoint} (Ctrl-C stops it)`);
}
