// The gateway's own connections to the brokers: plaintext, or TLS, optionally SASL/PLAIN
// with the gateway's configured credentials. Client credentials never travel here.

import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { saslScramSha } from '@platformatic/kafka';
import type { KafkaUpstreamConfig } from '../../config/schema.ts';
import { API } from './apis.ts';
import type { Struct } from './codec.ts';
import { decodeResponse, encodeRequest } from './frames.ts';
import { Framer } from './framing.ts';
import type { MessageRegistry } from './messages.ts';

export interface HostPort {
  host: string;
  port: number;
}

const CONNECT_TIMEOUT_MS = 10_000;

export function parseHostPort(s: string): HostPort {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

export { decodeResponse, encodeRequest } from './frames.ts';

/** A connection to a broker and the framer that reads every byte it sends. */
export interface BrokerConnection {
  socket: Socket;
  /** set its `onFrame` (and `onStart` for cut-through) once the connection is handed over */
  framer: Framer;
}

/** One request/response on a connection nobody else reads yet (set-up traffic only). */
function exchange(conn: BrokerConnection, frame: Buffer): Promise<Buffer> {
  const { socket, framer } = conn;
  return new Promise((resolve, reject) => {
    framer.onFrame = (f) => {
      cleanup();
      resolve(f);
    };
    const onClose = (err?: Error) => {
      cleanup();
      reject(err instanceof Error ? err : new Error('the broker closed the connection during set-up'));
    };
    const cleanup = () => {
      framer.onFrame = unexpected(socket);
      socket.off('close', onClose);
      socket.off('error', onClose);
    };
    socket.once('close', onClose);
    socket.once('error', onClose);
    socket.write(frame);
  });
}

/** A frame nobody asked for: the connection is out of step with the broker. */
function unexpected(socket: Socket): (frame: Buffer) => void {
  return () => socket.destroy(new Error('unexpected response from the broker'));
}

/**
 * Connects (and logs in, with the gateway's own credentials) to one broker. Plain TCP reads
 * go straight into frame buffers (`onread`); TLS sockets hand their decrypted chunks over.
 */
export async function connectUpstream(reg: MessageRegistry, config: KafkaUpstreamConfig, target: HostPort): Promise<BrokerConnection> {
  const tls = config.security?.tls;
  const framer = new Framer(Number.MAX_SAFE_INTEGER, () => {});
  const socket: Socket = await new Promise((resolve, reject) => {
    const s: Socket = tls
      ? tlsConnect({ host: target.host, port: target.port, servername: tls.serverName ?? target.host, ...(tls.ca ? { ca: readFileSync(tls.ca) } : {}) })
      : netConnect({ host: target.host, port: target.port, onread: framer.reader((err) => s.destroy(err as Error)) });
    if (tls) {
      s.on('data', (d: Buffer) => {
        try {
          framer.push(d);
        } catch (err) {
          s.destroy(err as Error);
        }
      });
    }
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connecting to the broker ${target.host}:${target.port} timed out`));
    }, CONNECT_TIMEOUT_MS);
    s.once(tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      resolve(s);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(new Error(`the broker ${target.host}:${target.port} is not reachable: ${err.message}`));
    };
    s.once('error', onError);
  });
  socket.setNoDelay(true);
  framer.onFrame = unexpected(socket);
  const conn = { socket, framer };
  const sasl = config.security?.sasl;
  if (sasl) {
    try {
      const hs = decodeResponse(reg, API.SaslHandshake, 1, await exchange(conn, encodeRequest(reg, API.SaslHandshake, 1, -1, { Mechanism: sasl.mechanism })));
      if (hs.ErrorCode !== 0) throw new Error(`the broker refused SASL ${sasl.mechanism} (error ${String(hs.ErrorCode)})`);
      let correlation = -2;
      const step = async (bytes: Buffer): Promise<Buffer> => {
        const res = decodeResponse(reg, API.SaslAuthenticate, 1, await exchange(conn, encodeRequest(reg, API.SaslAuthenticate, 1, correlation--, { AuthBytes: bytes })));
        if (res.ErrorCode !== 0) throw new Error(`the broker rejected the gateway's credentials: ${String(res.ErrorMessage ?? res.ErrorCode)}`);
        return Buffer.from(res.AuthBytes as Uint8Array);
      };
      if (sasl.mechanism === 'PLAIN') await step(Buffer.from(`\0${sasl.username}\0${sasl.password}`));
      else await scram(sasl.mechanism === 'SCRAM-SHA-256' ? 'SHA-256' : 'SHA-512', sasl.username, sasl.password, step);
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }
  return conn;
}

/**
 * SCRAM (RFC 5802) as the gateway's own login to the broker: the exchange and the proofs are
 * @platformatic/kafka's (the client the gateway already uses), driven over this socket.
 */
async function scram(algorithm: 'SHA-256' | 'SHA-512', username: string, password: string, step: (bytes: Buffer) => Promise<Buffer>): Promise<void> {
  const api = (_connection: unknown, bytes: Buffer, callback: (error: Error | null, response?: { authBytes: Buffer }) => void) => {
    step(bytes).then(
      (authBytes) => callback(null, { authBytes }),
      (err: unknown) => callback(err as Error),
    );
  };
  try {
    await saslScramSha.authenticate(api as never, undefined as never, algorithm, username, password);
  } catch (err) {
    // the library wraps the broker's answer; say what the broker said
    const cause = (err as { cause?: Error }).cause;
    throw new Error(cause?.message ?? (err as Error).message);
  }
}

/** Runs `ask` on a fresh connection to the first bootstrap broker that answers (the gateway's own set-up traffic). */
async function askCluster<T>(reg: MessageRegistry, config: KafkaUpstreamConfig, ask: (conn: BrokerConnection) => Promise<T>): Promise<T> {
  let last: unknown;
  for (const b of config.bootstrap) {
    try {
      const conn = await connectUpstream(reg, config, parseHostPort(b));
      try {
        return await ask(conn);
      } finally {
        conn.socket.destroy();
      }
    } catch (err) {
      last = err;
    }
  }
  throw last instanceof Error ? last : new Error('no bootstrap broker answered');
}

/** The brokers' ApiVersions answer (v3), asked on the gateway's own connection: what clients are told before they log in. */
export function brokerApiVersions(reg: MessageRegistry, config: KafkaUpstreamConfig): Promise<Struct> {
  return askCluster(reg, config, async (conn) => {
    const frame = await exchange(conn, encodeRequest(reg, API.ApiVersions, 3, 1, { ClientSoftwareName: 'streamgate', ClientSoftwareVersion: '1' }));
    const res = decodeResponse(reg, API.ApiVersions, 3, frame);
    if (res.ErrorCode !== 0) throw new Error(`the broker answered ApiVersions with error ${String(res.ErrorCode)}`);
    return res;
  });
}

/** The brokers of the cluster, asked directly (used when a broker port is hit before any Metadata passed through). */
export function discoverBrokers(reg: MessageRegistry, config: KafkaUpstreamConfig): Promise<Map<number, HostPort>> {
  return askCluster(reg, config, async (conn) => {
    const frame = await exchange(conn, encodeRequest(reg, API.Metadata, 12, 1, { Topics: [], AllowAutoTopicCreation: false }));
    const res = decodeResponse(reg, API.Metadata, 12, frame);
    const out = new Map<number, HostPort>();
    for (const br of res.Brokers as Struct[]) out.set(br.NodeId as number, { host: br.Host as string, port: br.Port as number });
    return out;
  });
}
