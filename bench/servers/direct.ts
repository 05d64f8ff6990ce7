// The DIRECT baseline of the HTTP suite: the same REST v3 produce load without the gateway.
// A minimal Kafka REST Proxy v3 produce endpoint on node:http, no controls at all:
//   --upstream ack    answer at once with an incrementing offset (pairs with the gateway's
//                     `upstream: { kind: ack }`)
//   --upstream kafka  a bare REST-to-Kafka bridge: one @platformatic/kafka Producer with the
//                     gateway's producer settings, partitions round-robin
// It does the work any REST proxy must do (parse the JSON body, turn key/value into bytes,
// answer the same 200 JSON shape) so that gateway minus direct is the cost of the controls.
// Usage: node bench/servers/direct.ts --port N --upstream ack|kafka [--bootstrap host:port]
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import { Producer } from '@platformatic/kafka';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    upstream: { type: 'string', default: 'ack' },
    bootstrap: { type: 'string' },
  },
});
if (args.upstream !== 'ack' && args.upstream !== 'kafka') throw new Error('--upstream must be ack or kafka');
if (args.upstream === 'kafka' && !args.bootstrap) throw new Error('--upstream kafka needs --bootstrap');

const ROUTE = /^\/v3\/clusters\/([^/]+)\/topics\/([^/]+)\/records$/;

interface Data {
  type?: string;
  data?: unknown;
}

function toBytes(d: Data | null | undefined): { bytes: Buffer | undefined; type: string | null } {
  if (d === null || d === undefined) return { bytes: undefined, type: null };
  const type = d.type ?? 'JSON';
  if (type === 'STRING') return { bytes: Buffer.from(String(d.data), 'utf8'), type };
  if (type === 'BINARY') return { bytes: Buffer.from(String(d.data), 'base64'), type };
  return { bytes: Buffer.from(JSON.stringify(d.data)), type };
}

const producer =
  args.upstream === 'kafka'
    ? new Producer<Buffer, Buffer, string, Buffer>({
        clientId: 'streamgate-bench-direct',
        bootstrapBrokers: [args.bootstrap!],
        timeout: 10_000,
        retries: 2,
        retryDelay: 100,
        acks: -1,
        compression: 'none',
        autocreateTopics: false,
        strict: false,
      })
    : undefined;
const partitionCount = new Map<string, number>();
let nextPartition = 0;
let ackOffset = 0;

async function produce(topic: string, key: Buffer | undefined, value: Buffer | undefined): Promise<{ partition: number; offset: number }> {
  if (!producer) return { partition: 0, offset: ackOffset++ };
  let partitions = partitionCount.get(topic);
  if (partitions === undefined) {
    // looked up once per topic: a bare bridge has no reason to ask again per request
    const md = await producer.metadata({ topics: [topic] });
    partitions = md.topics.get(topic)?.partitionsCount ?? 0;
    if (partitions === 0) throw new Error(`topic ${topic} does not exist`);
    partitionCount.set(topic, partitions);
  }
  const partition = nextPartition++ % partitions;
  const result = await producer.send({ messages: [{ topic, partition, key, value }] });
  const offset = result.offsets?.find((o) => o.topic === topic && o.partition === partition)?.offset;
  return { partition, offset: offset === undefined ? -1 : Number(offset) };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url ?? '/';
  if (url === '/healthz') return send(res, 200, { status: 'ok' });
  const route = ROUTE.exec(url);
  if (!route || req.method !== 'POST') return send(res, 404, { error_code: 40403, message: 'no route' });
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  let record: { key?: Data | null; value?: Data | null };
  try {
    record = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof record;
  } catch {
    return send(res, 400, { error_code: 40001, message: 'the body is not valid JSON' });
  }
  const topic = decodeURIComponent(route[2]!);
  const key = toBytes(record.key);
  const value = toBytes(record.value);
  const { partition, offset } = await produce(topic, key.bytes, value.bytes);
  send(res, 200, {
    error_code: 200,
    cluster_id: decodeURIComponent(route[1]!),
    topic_name: topic,
    partition_id: partition,
    offset,
    timestamp: new Date().toISOString(),
    key: key.type === null ? null : { type: key.type, size: key.bytes?.byteLength ?? 0 },
    value: value.type === null ? null : { type: value.type, size: value.bytes?.byteLength ?? 0 },
  });
}

// same keep-alive behaviour as the gateway's listener defaults
const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  handle(req, res).catch((err: unknown) => {
    if (!res.headersSent) send(res, 500, { error_code: 50001, message: (err as Error).message });
    else res.destroy();
  });
});

if (producer) await producer.metadata({ topics: [] }); // connect before answering /healthz
server.listen(Number(args.port ?? 0), args.host);

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  server.close();
  server.closeIdleConnections();
  void (producer?.close(true) ?? Promise.resolve()).finally(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
