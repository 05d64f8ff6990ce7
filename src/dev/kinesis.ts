import { createRequire } from 'node:module';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';

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

/** Streams the walkthrough uses (same names and policy as the Kafka topics). */
export const DEV_STREAMS = ['payments.cards', 'orders'];

/** Creates the walkthrough's streams (2 shards each) directly on the local Kinesis, and waits until they are ACTIVE. */
export async function createDevStreams(endpoint: string, streams: readonly string[] = DEV_STREAMS): Promise<void> {
  const call = async (action: string, body: unknown) => {
    // kinesalite checks that a signature is present, not what it is
    const res = await request(endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-amz-json-1.1',
        'x-amz-target': `Kinesis_20131202.${action}`,
        authorization: 'AWS4-HMAC-SHA256 Credential=local/20200101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=0',
        'x-amz-date': '20200101T000000Z',
      },
      body: JSON.stringify(body),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`kinesalite ${action}: ${res.statusCode} ${text}`);
    return { status: res.statusCode, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
  };
  const existing = new Set(((await call('ListStreams', {})).body.StreamNames as string[] | undefined) ?? []);
  for (const name of streams) if (!existing.has(name)) await call('CreateStream', { StreamName: name, ShardCount: 2 });
  for (const name of streams) {
    for (let i = 0; i < 200; i++) {
      const d = await call('DescribeStreamSummary', { StreamName: name });
      if ((d.body.StreamDescriptionSummary as { StreamStatus?: string } | undefined)?.StreamStatus === 'ACTIVE') break;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

// `node src/dev/kinesis.ts [port]`: a standalone local Kinesis
if (import.meta.main) {
  const running = await startKinesis({ port: Number(process.argv[2] ?? 4567) });
  console.log(`kinesalite on ${running.endpoint} (Ctrl-C stops it)`);
}
