// Kafka wire protocol listener. Unchanged Kafka clients connect here; the gateway
// terminates SASL (OAUTHBEARER / PLAIN carrying a JWT), authorizes every request that
// names a resource through the controls chain, and forwards the request bytes to the
// broker on its own connection. Port per broker: the bootstrap port plus one port per
// broker node id, so the gateway can rewrite every broker address clients learn.
//
// This file holds the servers (bootstrap and one port per broker); a client connection and
// everything it does is connection.ts, each API family a handler in handlers/.

import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { Logger } from 'pino';
import type { KafkaListenerConfig, KafkaUpstreamConfig } from '../../config/schema.ts';
import type { Dispatcher } from '../../dispatcher.ts';
import { GatewayError, type Identity } from '../../operation.ts';
import type { Struct } from './codec.ts';
import { accept } from './intake.ts';
import { Connection, type ConnectionHost } from './connection.ts';
import { loadMessages, type MessageRegistry } from './messages.ts';
import { brokerApiVersions, discoverBrokers, parseHostPort, type HostPort } from './upstream.ts';

export { requestChannel, responseChannel, upstreamChannel, type ResponseMessage, type UpstreamMessage } from './channels.ts';

export class KafkaListener implements ConnectionHost {
  readonly config: KafkaListenerConfig;
  readonly upstream: KafkaUpstreamConfig;
  readonly dispatcher: Dispatcher;
  readonly log: Logger;
  reg!: MessageRegistry;
  readonly advertisedHost: string;
  readonly passthrough = new Set<number>();
  /** broker node id -> the broker's real address (learned from responses, never told to clients) */
  readonly brokers = new Map<number, HostPort>();
  readonly #servers = new Map<number | 'bootstrap', Server>();
  readonly #ports = new Map<number, Promise<number>>();
  readonly #connections = new Set<Connection>();
  #discovery: Promise<void> | undefined;
  /**
   * The brokers' ApiVersions answer (unfiltered), learned on the gateway's own connection at
   * start (again when an authenticated client needs a broker and it is still unknown) and from
   * every answer forwarded to an authenticated client. Clients that have not logged in are
   * answered from it: an anonymous connection never opens a broker connection.
   */
  #brokerVersions: Struct | undefined;
  #learningVersions: Promise<void> | undefined;
  /** the answer to an ApiVersions before login, per version: built once (a flood of them costs an encode each) */
  readonly preLoginAnswers = new Map<number, Struct>();

  get brokerVersions(): Struct | undefined {
    return this.#brokerVersions;
  }

  set brokerVersions(res: Struct | undefined) {
    this.#brokerVersions = res;
    this.preLoginAnswers.clear();
  }

  constructor(config: KafkaListenerConfig, upstream: KafkaUpstreamConfig, dispatcher: Dispatcher, log: Logger) {
    this.config = config;
    this.upstream = upstream;
    this.dispatcher = dispatcher;
    this.log = log.child({ listener: 'kafka' });
    this.advertisedHost = config.advertisedHost ?? config.host;
  }

  async listen(): Promise<{ host: string; port: number }> {
    this.reg = await loadMessages();
    const byName = new Map([...this.reg.names].map(([k, n]) => [n, k]));
    for (const name of this.config.passthroughApis) {
      const key = byName.get(name);
      if (key === undefined) throw new Error(`listeners.kafka.passthroughApis: unknown Kafka API "${name}"`);
      this.passthrough.add(key);
    }
    this.learnBrokerVersions();
    const port = await this.#serve('bootstrap', this.config.port);
    if (this.config.brokerPortBase > 0) {
      // Fixed broker ports: open them now, so clients that learned them before a gateway
      // restart reconnect at once. A broker that is down now is served when first seen.
      try {
        for (const [id, hp] of await discoverBrokers(this.reg, this.upstream)) {
          this.brokers.set(id, hp);
          await this.brokerPort(id);
        }
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'brokers not discovered at start; their ports open when first seen');
      }
    }
    return { host: this.config.host, port };
  }


  /** Closes (audited) every connection whose authenticated identity matches, e.g. a revoked credential's; returns how many. */
  closeSessions(matches: (identity: Identity) => boolean, reason: string): number {
    let closed = 0;
    for (const c of this.#connections) if (c.closeIf(matches, reason)) closed++;
    return closed;
  }

  async close(): Promise<void> {
    for (const c of this.#connections) c.destroy();
    await Promise.all([...this.#servers.values()].map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  #serve(target: number | 'bootstrap', port: number): Promise<number> {
    const tls = this.config.tls;
    const onConnection = (raw: Socket) => {
      // until it has logged in a client gets Kafka's small SASL frame limit, not the data limit
      const accepted = accept(raw, Math.min(this.config.maxFrameBytes, this.config.maxFrameBytesBeforeAuth), !tls);
      const socket = accepted.socket;
      const conn = new Connection(this, accepted, target === 'bootstrap' ? undefined : target);
      const max = this.dispatcher.limits?.().connections.max;
      // over the limit: audited and closed before anything is read
      if (max !== undefined && this.#connections.size >= max) return conn.refuseLimit(`too many connections (limits.connections.max = ${max})`);
      this.#connections.add(conn);
      socket.once('close', () => this.#connections.delete(conn));
    };
    const server = tls
      ? createTlsServer(
          {
            cert: readFileSync(tls.cert),
            key: readFileSync(tls.key),
            ...(tls.clientCa ? { ca: readFileSync(tls.clientCa), requestCert: true, rejectUnauthorized: false } : {}),
          },
          onConnection,
        )
      : // nothing is read before the connection is taken over (intake.ts accept)
        createServer({ noDelay: true, pauseOnConnect: true }, onConnection);
    this.#servers.set(target, server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.config.host, () => {
        server.off('error', reject);
        const addr = server.address();
        resolve(addr && typeof addr === 'object' ? addr.port : port);
      });
    });
  }

  /** The gateway port that stands for broker `nodeId` (listening from the first time it is needed). */
  brokerPort(nodeId: number): Promise<number> {
    let p = this.#ports.get(nodeId);
    if (!p) {
      if (nodeId < 0 || nodeId > this.config.maxNodeId) return Promise.reject(new GatewayError('internal', `broker node id ${nodeId} is outside 0..${this.config.maxNodeId}`));
      p = this.#serve(nodeId, this.config.brokerPortBase === 0 ? 0 : this.config.brokerPortBase + nodeId);
      p.catch(() => this.#ports.delete(nodeId));
      this.#ports.set(nodeId, p);
    }
    return p;
  }

  /** Asks the brokers for their ApiVersions unless known or already asking (never for an anonymous client). */
  learnBrokerVersions(): void {
    if (this.brokerVersions || this.#learningVersions) return;
    this.#learningVersions = brokerApiVersions(this.reg, this.upstream)
      .then((res) => void (this.brokerVersions ??= res))
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'broker ApiVersions not learned; clients are answered from the gateway table until they are'))
      .finally(() => (this.#learningVersions = undefined));
  }

  /** Every broker host the gateway knows (never told to clients). */
  brokerHosts(): Set<string> {
    const hosts = new Set([...this.brokers.values()].map((b) => b.host));
    for (const b of this.upstream.bootstrap) hosts.add(parseHostPort(b).host);
    return hosts;
  }

  learn(nodeId: number, host: string, port: number): void {
    this.brokers.set(nodeId, { host, port });
  }

  /** Where a connection to `nodeId`'s port (or the bootstrap port) goes upstream. */
  async upstreamAddress(nodeId: number | undefined): Promise<HostPort[]> {
    if (nodeId === undefined) return this.upstream.bootstrap.map(parseHostPort);
    if (!this.brokers.has(nodeId)) {
      // e.g. after a gateway restart clients still hold broker ports: ask the cluster
      this.#discovery ??= discoverBrokers(this.reg, this.upstream)
        .then((m) => {
          for (const [id, hp] of m) this.brokers.set(id, hp);
        })
        .finally(() => (this.#discovery = undefined));
      await this.#discovery;
    }
    const addr = this.brokers.get(nodeId);
    if (!addr) throw new GatewayError('upstream-unavailable', `broker ${nodeId} is not part of the cluster`);
    return [addr];
  }
}
