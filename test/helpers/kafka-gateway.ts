import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { connect, type Socket } from 'node:net';
import type { Struct } from '../../src/protocols/kafka/codec.ts';
import { loadMessages } from '../../src/protocols/kafka/messages.ts';
import type { ResponseMessage } from '../../src/protocols/kafka/listener.ts';
import { decodeResponse } from '../../src/protocols/kafka/upstream.ts';

/**
 * Collects every broker address the gateway hands to clients (Metadata, FindCoordinator,
 * DescribeCluster, Produce NodeEndpoints), decoded from the frames actually written.
 */
export async function watchAdvertisedAddresses(): Promise<{ seen: Array<{ api: number; host: string; port: number }>; stop: () => void }> {
  const reg = await loadMessages();
  const seen: Array<{ api: number; host: string; port: number }> = [];
  const collect = (api: number, list: unknown) => {
    for (const b of (list as Struct[] | undefined) ?? []) if (typeof b.Port === 'number' && b.Port > 0) seen.push({ api, host: b.Host as string, port: b.Port });
  };
  const onMessage = (m: unknown) => {
    const { apiKey, version, frame } = m as ResponseMessage;
    if (![3, 10, 60, 0].includes(apiKey)) return;
    const res = decodeResponse(reg, apiKey, version, frame);
    if (apiKey === 3) collect(apiKey, res.Brokers);
    else if (apiKey === 60) collect(apiKey, res.Brokers);
    else if (apiKey === 0) collect(apiKey, res.NodeEndpoints);
    else if (version >= 4) collect(apiKey, res.Coordinators);
    else collect(apiKey, [res]);
  };
  subscribe('streamgate:kafka:response', onMessage);
  return { seen, stop: () => unsubscribe('streamgate:kafka:response', onMessage) };
}

/** Opens a raw TCP connection; resolves with what the peer sent until it closed (or the timeout). */
export function rawExchange(port: number, payload: Buffer | Buffer[], timeoutMs = 5000): Promise<{ closed: boolean; received: Buffer }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket: Socket = connect(port, '127.0.0.1', () => {
      for (const p of Array.isArray(payload) ? payload : [payload]) socket.write(p);
    });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ closed: false, received: Buffer.concat(chunks) });
    }, timeoutMs);
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ closed: true, received: Buffer.concat(chunks) });
    });
  });
}

export function frame(body: Buffer): Buffer {
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length);
  return Buffer.concat([size, body]);
}

/** A minimal Kafka client on one connection, speaking through the project's codec (for crafted requests). */
export async function rawClient(port: number): Promise<{ request: (apiKey: number, version: number, body: Struct) => Promise<Struct>; close: () => void }> {
  const { encodeRequest } = await import('../../src/protocols/kafka/upstream.ts');
  const { Framer } = await import('../../src/protocols/kafka/framing.ts');
  const reg = await loadMessages();
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  // answers come back in request order; one close handler fails whatever still waits
  const waiting: Array<{ resolve: (f: Buffer) => void; reject: (err: Error) => void }> = [];
  const framer = new Framer(1 << 30, (f) => waiting.shift()?.resolve(Buffer.from(f)));
  socket.on('data', (d) => framer.push(d));
  let closed = false;
  socket.once('close', () => {
    closed = true;
    for (const w of waiting.splice(0)) w.reject(new Error('connection closed'));
  });
  let correlation = 100;
  return {
    request: (apiKey, version, body) =>
      new Promise((resolve, reject) => {
        if (closed) return reject(new Error('connection closed'));
        waiting.push({ resolve: (f) => resolve(decodeResponse(reg, apiKey, version, f)), reject });
        socket.write(encodeRequest(reg, apiKey, version, correlation++, body, 'raw-test'));
      }),
    close: () => socket.destroy(),
  };
}

/**
 * Every sub-struct of a decoded response, with whether it, something below it or something
 * above it carries a non-zero error code (an element inside a refused entry is covered by it).
 */
export function walkResponse(v: unknown, visit: (s: Struct, hasError: boolean) => void, inherited = false): boolean {
  if (Array.isArray(v)) {
    let any = false;
    for (const x of v) any = walkResponse(x, visit, inherited) || any;
    return any;
  }
  if (!v || typeof v !== 'object' || v instanceof Uint8Array) return false;
  const s = v as Struct;
  let own = false;
  for (const [k, x] of Object.entries(s)) if (/ErrorCode$/.test(k) && typeof x === 'number' && x !== 0) own = true;
  let below = false;
  for (const x of Object.values(s)) if (x && typeof x === 'object') below = walkResponse(x, visit, inherited || own) || below;
  visit(s, inherited || own || below);
  return own || below;
}

/** A Fetch v12 request body: partition 0 of each topic from offset 0, in fetch session `sessionId` at `epoch`. */
export function fetchRequest(sessionId: number, epoch: number, topics: string[], forgotten: string[] = [], maxWaitMs = 200): Struct {
  return {
    ClusterId: null,
    ReplicaId: -1,
    MaxWaitMs: maxWaitMs,
    MinBytes: 1,
    MaxBytes: 1 << 20,
    IsolationLevel: 0,
    SessionId: sessionId,
    SessionEpoch: epoch,
    Topics: topics.map((t) => ({ Topic: t, Partitions: [{ Partition: 0, CurrentLeaderEpoch: -1, FetchOffset: 0n, LastFetchedEpoch: -1, LogStartOffset: -1n, PartitionMaxBytes: 1 << 20 }] })),
    ForgottenTopicsData: forgotten.map((t) => ({ Topic: t, Partitions: [0] })),
    RackId: '',
  };
}
