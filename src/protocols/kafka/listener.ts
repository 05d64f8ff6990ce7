// Kafka wire protocol listener. Unchanged Kafka clients connect here; the gateway
// terminates SASL (OAUTHBEARER / PLAIN carrying a JWT), authorizes every request that
// names a resource through the controls chain, and forwards the request bytes to the
// broker on its own connection. Port per broker: the bootstrap port plus one port per
// broker node id, so the gateway can rewrite every broker address clients learn.
//
// Connection model: one upstream connection per client connection (to the broker that
// the client's port stands for). Responses then come back in request order, correlation
// ids pass through unchanged, and one slow client only slows its own broker connection.

import { channel } from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { KafkaListenerConfig, KafkaUpstreamConfig } from '../../config/schema.ts';
import type { Dispatcher } from '../../dispatcher.ts';
import { GatewayError, type Action, type EncodedRecords, type Identity, type Operation, type Resource, type Session, type StreamRecord, type UpstreamResult } from '../../operation.ts';
import { API, authorizationError, ERR, errorResponse, MAX_VERSION, requestElements, resourcesOf, SUPPORTED, type Named } from './apis.ts';
import { hashInto, summarize } from './batches.ts';
import { filterConsumerGroupDescribe, filterOffsetFetch, redactBrokerConfigs } from './reveal.ts';
import { BatchFormatError, decodedSizeHint, decodeRecords, encodeRecords, streamRecords, type DecodedRecords } from '../../formats/kafka-batch.ts';
import type { Struct } from './codec.ts';
import { FETCH_SESSION_ID_NOT_FOUND, FetchSessions, type SessionPartitions } from './fetch-sessions.ts';
import { FrameError, Framer } from './framing.ts';
import { loadMessages, type MessageRegistry } from './messages.ts';
import { MECHANISMS, oauthBearerFailure, parseOauthBearer, parsePlain, SaslError, type Mechanism } from './sasl.ts';
import { brokerApiVersions, connectUpstream, discoverBrokers, parseHostPort, type HostPort } from './upstream.ts';

const MAX_QUEUED_REQUESTS = 64;
const MIN_FRAME = 8; // api key, version, correlation id

export class KafkaListener {
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

  /** Open connections authenticated as `subject` (limits.connections.perIdentity). */
  connectionsOf(subject: string): number {
    let n = 0;
    for (const c of this.#connections) if (c.subject === subject) n++;
    return n;
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
    const onConnection = (socket: Socket) => {
      const conn = new Connection(this, socket, target === 'bootstrap' ? undefined : target);
      const max = this.dispatcher.limits?.().connections.max;
      // over the limit: audited and closed before anything is read
      if (max !== undefined && this.#connections.size >= max) return conn.refuseLimit(`too many connections (limits.connections.max = ${max})`);
      this.#connections.add(conn);
      socket.once('close', () => this.#connections.delete(conn));
    };
    const tls = this.config.tls;
    const server = tls
      ? createTlsServer(
          {
            cert: readFileSync(tls.cert),
            key: readFileSync(tls.key),
            ...(tls.clientCa ? { ca: readFileSync(tls.clientCa), requestCert: true, rejectUnauthorized: false } : {}),
          },
          onConnection,
        )
      : createServer({ noDelay: true }, onConnection);
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

interface Slot {
  done: boolean;
  data: Buffer | undefined;
  apiKey: number;
  version: number;
  /** the response went to the client while it arrived (cut-through); `data` is not written again */
  streamed?: boolean;
}

/**
 * Every response frame written to a client, for tests and diagnostics (e.g. asserting
 * that no broker address ever leaves the gateway). Costs nothing without subscribers.
 */
export const responseChannel = channel('streamgate:kafka:response');
/** Every request frame read from a client (with its size prefix), before any decision. */
export const requestChannel = channel('streamgate:kafka:request');
/** Every frame the gateway writes to a broker for a client connection, and every broker connection it opens for one. */
export const upstreamChannel = channel('streamgate:kafka:upstream');
export interface UpstreamMessage {
  session: string;
  /** undefined: a broker connection was opened */
  frame?: Buffer;
}
export interface ResponseMessage {
  apiKey: number;
  version: number;
  frame: Buffer;
}

interface Inflight {
  resolve: (frame: Buffer) => void;
  reject: (err: Error) => void;
  /** the response may be cut through to the client when this slot is next in line */
  streamTo?: Slot;
}

/**
 * A request's place in the order requests leave for the broker. An inspected Produce takes
 * its place when it arrives and fills it when its records come back from the pool; requests
 * behind it are handled meanwhile but wait here, so the broker sees the client's order.
 */
interface SendPlace {
  state: 'waiting' | 'ready' | 'cancelled';
  up?: Socket;
  frame?: Buffer;
  inflight?: Inflight;
}

/** The answer for requests still queued for the broker when their connection closed. */
const closedBeforeForwarding = () => new GatewayError('upstream-unavailable', 'the connection closed before the request was forwarded');

/** Inspected Produce requests of one connection that may wait for the pool at the same time. */
const MAX_DETACHED = 8;

interface Header {
  apiKey: number;
  version: number;
  correlationId: number;
  clientId: string | null;
  bodyOffset: number;
}

class Connection {
  readonly #l: KafkaListener;
  readonly #socket: Socket;
  readonly #target: number | undefined;
  readonly #session: Session;
  readonly #framer: Framer;
  #identity: Identity | undefined;
  #credentialExpiresAt = 0;
  #expiryTimer: NodeJS.Timeout | undefined;
  #mechanism: Mechanism | undefined;
  #upstream: Promise<Socket> | undefined;
  #upSocket: Socket | undefined;
  #upFramer: Framer | undefined;
  readonly #slots: Slot[] = [];
  readonly #inflight: Inflight[] = [];
  /** requests not yet written upstream, in client order (only while a detached Produce waits) */
  readonly #sendQueue: SendPlace[] = [];
  /** Produce requests handed on before they were forwarded (their records are in the pool) */
  #detached = 0;
  /** set by a handler that returns before its request left: the connection's accounting waits for it */
  #later: Promise<unknown> | undefined;
  #tail: Promise<void> = Promise.resolve();
  #queued = 0;
  /** bytes of the requests counted in #queued (limits.maxInflightBytes) */
  #queuedBytes = 0;
  readonly #maxInflightBytes: number;
  /** no more requests are read or forwarded */
  #closed = false;
  #destroyed = false;
  /** aborted when the connection ends: operations still waiting (for an approval) are dropped */
  readonly #gone = new AbortController();
  #clientId = '';
  /** the incremental fetch sessions (KIP-227) the broker opened for this connection */
  readonly #fetchSessions = new FetchSessions();
  /** KIP-219 throttling: no reads before this time; the next answer carries the delay as throttle_time_ms */
  #mutedUntil = 0;
  #throttleNextMs = 0;
  #authTimer: NodeJS.Timeout | undefined;

  constructor(listener: KafkaListener, socket: Socket, target: number | undefined) {
    this.#l = listener;
    this.#socket = socket;
    this.#target = target;
    socket.setNoDelay(true);
    this.#session = listener.dispatcher.newSession('kafka', { address: socket.remoteAddress ?? '' });
    // until it has logged in a client gets Kafka's small SASL frame limit, not the data limit
    this.#framer = new Framer(Math.min(listener.config.maxFrameBytes, listener.config.maxFrameBytesBeforeAuth), (f) => this.#onFrame(f), MIN_FRAME);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.#framer.push(chunk);
      } catch (err) {
        this.#violation(err instanceof FrameError ? err.message : 'unreadable frame', undefined);
      }
    });
    socket.on('drain', () => {
      this.#upSocket?.resume();
      this.#resumeReads();
    });
    socket.on('error', () => {});
    socket.on('close', () => this.destroy());
    this.#session.throttle = (ms) => this.#mute(ms);
    const limits = listener.dispatcher.limits?.();
    this.#maxInflightBytes = limits?.maxInflightBytes ?? Infinity;
    if (limits) {
      // slow-loris and port scans: a connection that never logs in costs one timer, then goes
      this.#authTimer = setTimeout(() => {
        if (!this.#identity) this.#violation(`not authenticated within ${limits.authTimeoutMs} ms (limits.authTimeoutMs)`, undefined);
      }, limits.authTimeoutMs);
      this.#authTimer.unref();
      socket.setTimeout(limits.idleTimeoutMs, () => this.destroy());
    }
    if (listener.config.tls?.clientCa && (socket as TLSSocket).authorized) this.#mtls(socket as TLSSocket);
  }

  get subject(): string | undefined {
    return this.#identity?.subject;
  }

  /** Refused by a connection limit before anything was read: audited, closed. */
  refuseLimit(message: string): void {
    this.#closed = true;
    const op = this.#l.dispatcher.newOperation(this.#session, 'describe', { kind: 'cluster', name: 'kafka' });
    op.meta.violation = message;
    void this.#l.dispatcher.refuse(op, new GatewayError('throttled', message, { rule: 'limits.connections' })).catch(() => {});
    this.destroy();
  }

  /** KIP-219: the answer goes out now with throttle_time_ms, and nothing more is read for `ms`. */
  #mute(ms: number): void {
    this.#mutedUntil = Math.max(this.#mutedUntil, Date.now() + ms);
    this.#throttleNextMs = Math.max(this.#throttleNextMs, ms);
    this.#socket.pause();
    setTimeout(() => this.#resumeReads(), ms + 1).unref();
  }

  /** Reads again unless muted, the request queue is full, or the broker connection is backed up. */
  #resumeReads(): void {
    if (this.#closed || Date.now() < this.#mutedUntil || this.#queued >= MAX_QUEUED_REQUESTS / 2 || this.#queuedBytes >= this.#inflightLimit() / 2 || this.#upstreamBusy()) return;
    try {
      this.#framer.go();
    } catch (err) {
      return this.#violation(err instanceof FrameError ? err.message : 'unreadable frame', undefined);
    }
    if (this.#closed || this.#queued >= MAX_QUEUED_REQUESTS) return; // the held-back frames filled the queue again
    if (this.#socket.isPaused()) this.#socket.resume();
  }

  /**
   * A client certificate verified against listeners.kafka.tls.clientCa is an identity: its
   * subject CN, with its OUs as groups. Requests wait for this login like for SASL.
   */
  #mtls(socket: TLSSocket): void {
    const cert = socket.getPeerCertificate();
    const cn = cert.subject?.CN;
    if (!cn) return;
    const ou = cert.subject.OU;
    const op = this.#l.dispatcher.newOperation(this.#session, 'describe', { kind: 'cluster', name: 'mtls' });
    op.meta.api = 'mTLS';
    op.credential = {
      scheme: 'certificate',
      subject: String(cn),
      issuer: `mtls:${String(cert.issuer?.CN ?? '')}`,
      groups: ou === undefined ? [] : Array.isArray(ou) ? ou.map(String) : [String(ou)],
      expiresAt: Math.floor(new Date(cert.valid_to).getTime() / 1000),
    };
    const login = this.#l.dispatcher.login(op).then(
      (identity) => {
        this.#loggedIn(identity);
        this.#credentialExpiresAt = Math.min((identity.expiresAt ?? 0) * 1000, Date.now() + 10 * 365 * 86_400_000);
      },
      () => {},
    );
    // requests read before the login settles are handled after it
    this.#tail = this.#tail.then(() => login);
  }

  /** Audits `reason` and closes when this connection's identity matches (revocation); true when it closed. */
  closeIf(matches: (identity: Identity) => boolean, reason: string): boolean {
    if (this.#closed || !this.#identity || !matches(this.#identity)) return false;
    const op = this.#l.dispatcher.newOperation(this.#session, 'describe', { kind: 'cluster', name: 'sasl' });
    op.identity = this.#identity;
    op.meta.api = 'session-revoked';
    void this.#l.dispatcher.refuse(op, new GatewayError('unauthenticated', reason)).catch(() => {});
    this.destroy();
    return true;
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#closed = true;
    this.#gone.abort();
    clearTimeout(this.#expiryTimer);
    clearTimeout(this.#authTimer);
    this.#socket.destroy();
    this.#upSocket?.destroy();
    this.#upstream?.then((s) => s.destroy(), () => {});
    const err = new GatewayError('upstream-unavailable', 'the connection closed before the broker answered');
    for (const i of this.#inflight.splice(0)) i.reject(err);
    for (const p of this.#sendQueue.splice(0)) p.inflight?.reject(err);
    this.#l.dispatcher.endSession(this.#session);
  }

  // -------------------------------------------------------------------------
  // inbound

  #onFrame(frame: Buffer): void {
    if (this.#closed) return;
    if (requestChannel.hasSubscribers) requestChannel.publish({ frame });
    this.#queued++;
    this.#queuedBytes += frame.byteLength;
    // backpressure: a client that pipelines faster than the gateway forwards is paused
    if (this.#queued >= MAX_QUEUED_REQUESTS || this.#queuedBytes >= this.#inflightLimit()) {
      this.#socket.pause();
      this.#framer.stop();
    }
    const done = () => {
      this.#queued--;
      this.#queuedBytes -= frame.byteLength;
      this.#resumeReads();
    };
    this.#tail = this.#tail
      .then(() => this.#handle(frame))
      .then(() => {
        // a detached Produce stays counted until it has been forwarded
        const later = this.#later;
        this.#later = undefined;
        if (later) void later.finally(done);
        else done();
      })
      .catch((err: unknown) => {
        done();
        if (err instanceof BatchFormatError || err instanceof FrameError) this.#violation(`malformed request: ${err.message}`, undefined);
        else if (err instanceof GatewayError && (err.kind === 'upstream-unavailable' || err.kind === 'upstream-error')) {
          this.#l.log.warn({ err: err.message, session: this.#session.id }, 'upstream failure; closing the client connection');
          this.destroy();
        } else if (!this.#closed) {
          this.#l.log.error({ err, session: this.#session.id }, 'Kafka request failed');
          this.destroy();
        }
      });
  }

  /** Request bytes that may wait before reads pause: small until the client has logged in. */
  #inflightLimit(): number {
    return this.#identity ? this.#maxInflightBytes : Math.min(this.#maxInflightBytes, this.#l.config.maxFrameBytesBeforeAuth);
  }

  /** Logged in (SASL or mTLS): the data path's frame limit applies from now on. */
  #loggedIn(identity: Identity): void {
    this.#identity = identity;
    this.#framer.maxBytes = this.#l.config.maxFrameBytes;
  }

  /**
   * The broker connection is backed up, or the client does not read its answers: a client
   * that sends requests without reading (ApiVersions answers are 30x their request) is not
   * read either, so unread answers cannot pile up in memory.
   */
  #upstreamBusy(): boolean {
    return (this.#upSocket !== undefined && this.#upSocket.writableNeedDrain) || this.#socket.writableNeedDrain;
  }

  #header(frame: Buffer): Header {
    const apiKey = frame.readInt16BE(4);
    const version = frame.readInt16BE(6);
    const codec = this.#l.reg.requests.get(apiKey);
    const flexible = codec ? codec.isFlexible(version) : false;
    const { value, offset } = this.#l.reg.requestHeader.decode(frame, 4, flexible ? 2 : 1);
    return { apiKey, version, correlationId: value.CorrelationId as number, clientId: (value.ClientId as string | null) ?? null, bodyOffset: offset };
  }

  async #handle(frame: Buffer): Promise<void> {
    if (this.#closed) return;
    const reg = this.#l.reg;
    const apiKey = frame.readInt16BE(4);
    const version = frame.readInt16BE(6);
    const codec = reg.requests.get(apiKey);
    const passthrough = this.#l.passthrough.has(apiKey);
    if (!codec || (!SUPPORTED.has(apiKey) && !passthrough)) {
      return this.#violation(`API key ${apiKey} (${reg.names.get(apiKey) ?? 'unknown'}) is not served by the gateway`, undefined);
    }
    const [min, max] = codec.validVersions;
    const ceiling = Math.min(max, MAX_VERSION[apiKey] ?? max);
    const h = this.#header(frame);
    if (h.clientId && !this.#clientId) {
      this.#clientId = h.clientId;
      this.#session.client.clientId = h.clientId;
    }
    if (apiKey === API.ApiVersions && version > ceiling) {
      // KIP-511: answer in v0 with the versions we serve, so the client can pick one
      return this.#localResponse(h, 0, await this.#apiVersions({ ErrorCode: ERR.UNSUPPORTED_VERSION, ApiKeys: [] }, 0, true));
    }
    if (version < min || version > ceiling) {
      return this.#violation(`${reg.names.get(apiKey)} v${version} is not served (versions ${min}-${ceiling})`, h);
    }
    const body = codec.decode(frame, h.bodyOffset, version).value;
    if (this.#l.log.isLevelEnabled('debug')) this.#l.log.debug({ session: this.#session.id, api: reg.names.get(apiKey), version, correlationId: h.correlationId }, 'request');

    switch (apiKey) {
      case API.ApiVersions:
        // before login: answered here from what the brokers said to the gateway, nothing forwarded
        if (!this.#identity) return this.#localResponse(h, version, await this.#apiVersionsBeforeLogin(version));
        return this.#forward(frame, h, async (res) => {
          if (res.ErrorCode === 0 && version >= 3) this.#l.brokerVersions = { ...res, ApiKeys: (res.ApiKeys as Struct[]).map((a) => ({ ...a })) };
          return this.#apiVersions(res, version, false);
        });
      case API.SaslHandshake:
        return this.#saslHandshake(h, body);
      case API.SaslAuthenticate:
        return this.#saslAuthenticate(h, body);
    }
    if (!this.#identity) return this.#unauthenticated(h, 'authenticate with SASL (OAUTHBEARER or PLAIN) before sending requests');
    if (Date.now() >= this.#credentialExpiresAt) return this.#unauthenticated(h, 'the session credential expired without re-authentication');

    switch (apiKey) {
      case API.Metadata:
        return this.#metadata(frame, h, body);
      case API.Produce:
        return this.#produce(frame, h, body);
      case API.Fetch:
        return this.#fetch(frame, h, body);
      case API.DescribeCluster:
        return this.#forward(frame, h, async (res) => this.#rewriteBrokers(res, 'Brokers', 'BrokerId'));
      case API.ListGroups:
        return this.#forward(frame, h, async (res) => {
          res.Groups = (res.Groups as Struct[]).filter((g) => this.#permits('describe', { kind: 'group', name: g.GroupId as string }));
          return res;
        });
    }
    if (passthrough && !SUPPORTED.has(apiKey)) return this.#forward(frame, h);
    if (apiKey === API.ConsumerGroupHeartbeat) {
      const regex = body.SubscribedTopicRegex;
      // the broker resolves a regex against every topic it has: only an identity that may
      // consume every topic may subscribe by one (the gateway cannot narrow the broker's match)
      if (typeof regex === 'string' && regex !== '' && !this.#l.dispatcher.permitsEvery?.(this.#identity, 'consume', 'topic')) {
        return this.#refuseHere(h, body, { kind: 'topic', name: `regex:${regex.slice(0, 200)}`, action: 'consume' }, 'a topic regex subscription needs consume on every topic; subscribe by topic name');
      }
    }
    const named = resourcesOf(apiKey, version, body);
    const transform = this.#responseFilter(apiKey, version);
    if (named.length === 0) return this.#forward(frame, h, transform);
    return this.#gated(frame, h, body, named, transform);
  }

  /** What a response may reveal, cut down to what this identity may see (reveal.ts). */
  #responseFilter(apiKey: number, version: number): ((res: Struct) => Promise<Struct>) | undefined {
    const canDescribe = (topic: string) => this.#permits('describe', { kind: 'topic', name: topic });
    switch (apiKey) {
      case API.FindCoordinator:
        return (res) => this.#findCoordinator(res, version);
      case API.OffsetFetch:
        return async (res) => filterOffsetFetch(res, version, canDescribe);
      case API.ConsumerGroupDescribe:
        return async (res) => filterConsumerGroupDescribe(res, canDescribe);
      case API.DescribeConfigs:
        return async (res) => redactBrokerConfigs(res, this.#l.brokerHosts());
      default:
        return undefined;
    }
  }

  /** Refused by the listener before the chain could name the resource (e.g. a regex): audited, answered with the API's own error. */
  #refuseHere(h: Header, body: Struct, n: Named, message: string): void {
    const slot = this.#slot(h);
    const op = this.#newOp(h, n);
    const err = new GatewayError('forbidden', message, { rule: 'kafka.unauthorizable' });
    void this.#l.dispatcher.refuse(op, err).catch(() => {});
    const codec = this.#l.reg.responses.get(h.apiKey)!;
    this.#complete(slot, this.#encodeResponse(h, errorResponse(h.apiKey, codec.defaults(h.version), body, authorizationError(n.kind), message)));
  }

  #permits(action: Action, resource: Resource): boolean {
    return this.#l.dispatcher.permits(this.#identity!, action, resource);
  }

  // -------------------------------------------------------------------------
  // slots: responses leave in request order

  #slot(h: Header): Slot {
    const s: Slot = { done: false, data: undefined, apiKey: h.apiKey, version: h.version };
    this.#slots.push(s);
    return s;
  }

  #complete(slot: Slot, data: Buffer | undefined): void {
    slot.done = true;
    slot.data = data;
    while (this.#slots.length > 0 && this.#slots[0]!.done) {
      const s = this.#slots.shift()!;
      if (s.data && responseChannel.hasSubscribers) responseChannel.publish({ apiKey: s.apiKey, version: s.version, frame: s.data } satisfies ResponseMessage);
      if (s.streamed) {
        const data = s.data;
        if (data) setImmediate(() => this.#upFramer?.release(data));
      } else if (s.data && !this.#closed) {
        // backpressure the other way: a client slow to read pauses its broker connection
        const data = this.#throttleNextMs > 0 ? this.#withThrottle(s, s.data) : s.data;
        if (!this.#socket.write(data, () => this.#upFramer?.release(data))) {
          this.#upSocket?.pause();
          this.#socket.pause();
          this.#framer.stop();
        }
      }
    }
  }

  /** The answer re-encoded with throttle_time_ms raised to the pending throttle (rare: only after a quota was exceeded). */
  #withThrottle(slot: Slot, frame: Buffer): Buffer {
    const reg = this.#l.reg;
    const codec = reg.responses.get(slot.apiKey);
    if (!codec) return frame;
    const headerVersion = slot.apiKey !== API.ApiVersions && codec.isFlexible(slot.version) ? 1 : 0;
    const { value: header, offset } = reg.responseHeader.decode(frame, 4, headerVersion);
    const body = codec.decode(frame, offset, slot.version).value;
    if (!('ThrottleTimeMs' in body)) return frame;
    body.ThrottleTimeMs = Math.max(Number(body.ThrottleTimeMs), this.#throttleNextMs);
    this.#throttleNextMs = 0;
    const w = reg.responseHeader.encode(header, headerVersion);
    codec.encode(body, slot.version, w);
    const out = w.finish(true);
    this.#upFramer?.release(frame);
    return out;
  }

  #encodeResponse(h: Header, body: Struct, version = h.version): Buffer {
    const reg = this.#l.reg;
    const codec = reg.responses.get(h.apiKey)!;
    const headerVersion = h.apiKey !== API.ApiVersions && codec.isFlexible(version) ? 1 : 0;
    const w = reg.responseHeader.encode({ CorrelationId: h.correlationId }, headerVersion);
    codec.encode(body, version, w);
    return w.finish(true);
  }

  #localResponse(h: Header, version: number, body: Struct): void {
    this.#complete(this.#slot({ ...h, version }), this.#encodeResponse(h, body, version));
  }

  #responseBody(h: Header, frame: Buffer): Struct {
    const reg = this.#l.reg;
    const codec = reg.responses.get(h.apiKey)!;
    const headerVersion = h.apiKey !== API.ApiVersions && codec.isFlexible(h.version) ? 1 : 0;
    const { offset } = reg.responseHeader.decode(frame, 4, headerVersion);
    return codec.decode(frame, offset, h.version).value;
  }

  // -------------------------------------------------------------------------
  // upstream

  #connectUpstream(): Promise<Socket> {
    this.#upstream ??= (async () => {
      let last: unknown;
      for (const addr of await this.#l.upstreamAddress(this.#target)) {
        try {
          if (upstreamChannel.hasSubscribers) upstreamChannel.publish({ session: this.#session.id } satisfies UpstreamMessage);
          const { socket: s, framer } = await connectUpstream(this.#l.reg, this.#l.upstream, addr);
          if (this.#closed) {
            s.destroy();
            throw new GatewayError('upstream-unavailable', 'client went away');
          }
          this.#upSocket = s;
          framer.onFrame = (f) => this.#onUpstreamFrame(f);
          framer.onStart = (size) => this.#cutThrough(size);
          this.#upFramer = framer;
          this.#l.learnBrokerVersions();
          s.on('drain', () => this.#resumeReads());
          s.on('error', () => {});
          s.on('close', () => this.destroy());
          return s;
        } catch (err) {
          last = err;
        }
      }
      throw new GatewayError('upstream-unavailable', last instanceof Error ? last.message : 'no broker reachable');
    })();
    return this.#upstream;
  }

  /**
   * A large Fetch response is written to the client as it arrives when nothing is ahead of
   * it in the response order; it is still counted, hashed and audited once complete.
   */
  #cutThrough(size: number): ((part: Buffer) => void) | undefined {
    const slot = this.#inflight[0]?.streamTo;
    if (!slot || this.#slots[0] !== slot || this.#closed) return undefined;
    slot.streamed = true;
    let left = 4 + size;
    return (part) => {
      left -= part.length;
      if (this.#closed) return;
      // the parts are views of the frame's memory: it is not reused before the last write is done
      const framer = this.#upFramer!;
      const last = left === 0;
      if (last) framer.hold(part);
      if (!this.#socket.write(part, last ? () => framer.release(part) : undefined)) this.#upSocket?.pause();
    };
  }

  #onUpstreamFrame(frame: Buffer): void {
    const waiter = this.#inflight.shift();
    if (!waiter) {
      this.#l.log.warn({ session: this.#session.id }, 'unexpected response from the broker; closing');
      this.destroy();
      return;
    }
    waiter.resolve(frame);
  }

  /**
   * Writes a request upstream (at `place` in the order, or now when nothing waits ahead of
   * it); resolves with the response frame, or undefined when none comes (acks=0).
   */
  #send(up: Socket, frame: Buffer, expectResponse: boolean, streamTo?: Slot, place?: SendPlace): Promise<Buffer> | undefined {
    let inflight: Inflight | undefined;
    const p = expectResponse ? new Promise<Buffer>((resolve, reject) => (inflight = streamTo ? { resolve, reject, streamTo } : { resolve, reject })) : undefined;
    if (!place && this.#sendQueue.length === 0) {
      this.#write(up, frame, inflight);
      return p;
    }
    if (this.#closed) {
      // a detached Produce that finished after the connection closed: nothing to wait for
      inflight?.reject(closedBeforeForwarding());
      return p;
    }
    const at = place ?? { state: 'waiting' };
    if (!place) this.#sendQueue.push(at);
    Object.assign(at, { state: 'ready', up, frame, inflight });
    this.#pump();
    return p;
  }

  #write(up: Socket, frame: Buffer, inflight: Inflight | undefined): void {
    if (inflight) this.#inflight.push(inflight);
    if (upstreamChannel.hasSubscribers) upstreamChannel.publish({ session: this.#session.id, frame } satisfies UpstreamMessage);
    // the frame's memory goes back to the framer once the kernel has it
    if (!up.write(frame, () => this.#framer.release(frame))) this.#socket.pause();
  }

  /** Takes a place in the upstream order for a request forwarded later. */
  #reserveSend(): SendPlace {
    const place: SendPlace = { state: 'waiting' };
    this.#sendQueue.push(place);
    return place;
  }

  /** A reserved place that will not be used (the request was refused): the requests behind it go on. */
  #cancelSend(place: SendPlace): void {
    if (place.state !== 'waiting') return;
    place.state = 'cancelled';
    this.#pump();
  }

  #pump(): void {
    while (this.#sendQueue.length > 0 && this.#sendQueue[0]!.state !== 'waiting') {
      const next = this.#sendQueue.shift()!;
      if (next.state !== 'ready') continue;
      if (this.#closed) next.inflight?.reject(closedBeforeForwarding());
      else this.#write(next.up!, next.frame!, next.inflight);
    }
  }

  /** Forwards unchanged; `transform` (if any) rewrites the decoded response. */
  async #forward(frame: Buffer, h: Header, transform?: (res: Struct) => Promise<Struct>): Promise<void> {
    const up = await this.#connectUpstream();
    const slot = this.#slot(h);
    const pending = this.#send(up, frame, true)!;
    // not awaited: the next request may be forwarded while this one is in flight
    void pending.then(
      async (res) => {
        if (!transform) return this.#complete(slot, res);
        this.#complete(slot, this.#encodeResponse(h, await transform(this.#responseBody(h, res))));
      },
      () => this.destroy(),
    ).catch((err: unknown) => {
      this.#l.log.error({ err, session: this.#session.id }, 'rewriting a Kafka response failed');
      this.destroy();
    });
  }

  // -------------------------------------------------------------------------
  // authorization through the controls chain

  #newOp(h: Header, n: { kind: Resource['kind']; name: string; action: Action; partition?: number }): Operation {
    const resource: Resource = { kind: n.kind, name: n.name };
    if (n.partition !== undefined) resource.partition = n.partition;
    const op = this.#l.dispatcher.newOperation(this.#session, n.action, resource);
    op.identity = this.#identity!;
    op.signal = this.#gone.signal;
    op.meta.api = this.#l.reg.names.get(h.apiKey) ?? String(h.apiKey);
    op.meta.api_version = h.version;
    return op;
  }

  /**
   * Runs every operation through the controls chain. When each has either reached the
   * end of the chain (allowed) or been refused, `decide` runs once with both sets: it
   * forwards what may be forwarded and returns the per-operation results, which flow
   * back through the chain (audit writes each row). Resolves `forwarded` as soon as the
   * request has left for the broker, `settled` when every row is written.
   */
  #authorize(
    ops: Operation[],
    decide: (allowed: Operation[], denied: Map<Operation, GatewayError>) => Promise<Map<Operation, UpstreamResult | Error>> | undefined,
  ): { forwarded: Promise<void>; settled: Promise<unknown> } {
    const arrived: Array<{ op: Operation; resolve: (r: UpstreamResult) => void; reject: (e: unknown) => void }> = [];
    const denied = new Map<Operation, GatewayError>();
    let fired = false;
    let markForwarded!: () => void;
    const forwarded = new Promise<void>((r) => (markForwarded = r));
    const fire = () => {
      if (fired || arrived.length + denied.size < ops.length) return;
      fired = true;
      let results: Promise<Map<Operation, UpstreamResult | Error>> | undefined;
      try {
        results = decide(
          arrived.map((a) => a.op),
          denied,
        );
      } catch (err) {
        results = Promise.reject(err);
      }
      markForwarded();
      if (!results) {
        for (const a of arrived) a.resolve({});
        return;
      }
      results.then(
        (map) => {
          for (const a of arrived) {
            const r = map.get(a.op);
            if (r instanceof Error) a.reject(r);
            else a.resolve(r ?? {});
          }
        },
        (err: unknown) => {
          for (const a of arrived) a.reject(err);
        },
      );
    };
    const runs = ops.map((op) =>
      this.#l.dispatcher
        .run(op, (o) => new Promise<UpstreamResult>((resolve, reject) => {
          arrived.push({ op: o, resolve, reject });
          fire();
        }))
        .catch((err: unknown) => {
          if (!fired) {
            denied.set(op, err instanceof GatewayError ? err : new GatewayError('internal', 'internal error'));
            fire();
          }
          throw err;
        }),
    );
    if (ops.length === 0) fire();
    return { forwarded, settled: Promise.allSettled(runs) };
  }

  /**
   * APIs that name resources: a request the policy refuses in part is answered like the
   * broker's own authorizer would. Requests that list independent resources (CreateTopics,
   * DescribeConfigs, ...) forward the allowed elements and answer each refused one with its
   * error; the others (a group with its topics, a transaction with its partitions) are
   * refused whole with the API's own error codes.
   */
  async #gated(frame: Buffer, h: Header, body: Struct, named: Named[], transform?: (res: Struct) => Promise<Struct>): Promise<void> {
    const up = await this.#connectUpstream();
    const slot = this.#slot(h);
    const ops = named.map((n) => this.#newOp(h, n));
    /** a request that lists independent resources, split once something in it is refused */
    let split: ReturnType<typeof requestElements>;
    let response: Promise<Buffer> | undefined;
    let refusal: GatewayError | undefined;
    let refusedKind: Resource['kind'] = 'topic';
    /** split requests: the refused elements, each with why */
    const refusedElements: Array<{ element: unknown; kind: Resource['kind']; err: GatewayError }> = [];
    const { forwarded, settled } = this.#authorize(ops, (allowed, denied) => {
      if (denied.size === 0) {
        response = this.#send(up, frame, true)!;
        return response.then(() => new Map());
      }
      const [op, err] = [...denied][0]!;
      split = requestElements(h.apiKey, h.version, body);
      if (split) {
        const refusedBy = new Map<string, [Operation, GatewayError]>();
        for (const [o, e] of denied) refusedBy.set(`${o.resource.kind}\0${o.resource.name}`, [o, e]);
        const forward: unknown[] = [];
        for (const { element, named: names } of split.elements) {
          const hit = names.map((n) => refusedBy.get(`${n.kind}\0${n.name}`)).find((x) => x !== undefined);
          if (hit) refusedElements.push({ element, kind: hit[0].resource.kind, err: hit[1] });
          else forward.push(element);
        }
        if (forward.length > 0) {
          response = this.#send(up, this.#reencode(h, { ...body, [split.list]: forward }), true)!;
          return response.then(() => new Map());
        }
      }
      refusal = err;
      refusedKind = op.resource.kind;
      const notForwarded = new GatewayError('forbidden', `not forwarded: ${err.message}`, err.rule ? { rule: err.rule } : undefined);
      return Promise.resolve(new Map(allowed.map((o) => [o, notForwarded] as [Operation, Error])));
    });
    await forwarded;
    void settled.then(async () => {
      const codec = this.#l.reg.responses.get(h.apiKey)!;
      if (refusal) {
        const code = refusal.kind === 'forbidden' ? authorizationError(refusedKind) : kafkaErrorFor(refusal);
        return this.#complete(slot, this.#encodeResponse(h, errorResponse(h.apiKey, codec.defaults(h.version), body, code, refusal.message)));
      }
      const res = await response!;
      if (!transform && refusedElements.length === 0) return this.#complete(slot, res);
      let decoded = this.#responseBody(h, res);
      if (transform) decoded = await transform(decoded);
      if (split && refusedElements.length > 0) {
        const answers = decoded[split.responseList] as unknown[];
        for (const { element, kind, err } of refusedElements) {
          const code = err.kind === 'forbidden' ? authorizationError(kind) : kafkaErrorFor(err);
          const part = errorResponse(h.apiKey, codec.defaults(h.version), { ...body, [split.list]: [element] }, code, err.message);
          answers.push(...(part[split.responseList] as unknown[]));
        }
      }
      this.#complete(slot, this.#encodeResponse(h, decoded));
    }).catch(() => this.destroy());
  }

  // -------------------------------------------------------------------------
  // Produce and Fetch: per-topic operations, partial forwarding, records never decoded

  async #produce(frame: Buffer, h: Header, body: Struct): Promise<void> {
    const up = await this.#connectUpstream();
    const acks = body.Acks as number;
    const slot = acks === 0 ? undefined : this.#slot(h);
    const topics = body.TopicData as Struct[];
    const byOp = new Map<Operation, Struct[]>();
    const ops: Operation[] = [];
    const txnId = body.TransactionalId as string | null;
    let txnOp: Operation | undefined;
    if (txnId !== null && txnId !== undefined) {
      txnOp = this.#newOp(h, { kind: 'transactional-id', name: txnId, action: 'produce' });
      ops.push(txnOp);
    }
    // one operation per topic, even where a topic is listed more than once
    const entries = new Map<string, Struct[]>();
    for (const t of topics) {
      const list = entries.get(t.Name as string);
      if (list) list.push(t);
      else entries.set(t.Name as string, [t]);
    }
    // Hashing is deferred until the request is on its way to the broker (it costs about as
    // much as the forwarding itself) unless a denial's row will need the hash before that.
    const hashNow = txnOp !== undefined && !this.#permits('produce', txnOp.resource);
    const hashPending: Array<[Operation, Struct[]]> = [];
    // topics with produce rules: records decoded here, inspected in the chain, re-encoded before forwarding
    const decodedByOp = new Map<Operation, DecodedRecords[]>();
    for (const [name, list] of entries) {
      const parts = list.flatMap((t) => t.PartitionData as Struct[]);
      const op = this.#newOp(h, { kind: 'topic', name, action: 'produce', ...(parts.length === 1 ? { partition: parts[0]!.Index as number } : {}) });
      op.batch = { ...countParts(parts), hash: '' };
      // an operation an approval rule covers may go through once approved: decoded (inspected) and hashed now like an allowed one
      const approvable = this.#l.dispatcher.approvable?.(this.#identity!, 'produce', op.resource) ?? false;
      const mayGo = approvable || this.#permits('produce', op.resource);
      // session recording needs the decoded records (with offsets); inspection alone takes them encoded
      const recorded = this.#l.dispatcher.records?.(name, 'produce', this.#identity!) === true;
      const inspected = this.#l.dispatcher.inspects?.(name, 'produce', this.#identity!.roles) === true;
      if (inspected && !recorded && mayGo) {
        // the engine decodes, masks and re-encodes them in one task
        op.encoded = encodedParts(parts, 'Index');
        op.batch.hash = hashParts(parts);
      } else if (recorded && mayGo) {
        const decoded = parts.map((p) => decodeRecords(p.Records as Uint8Array | null));
        const records: StreamRecord[] = [];
        parts.forEach((p, k) => streamRecords(decoded[k]!, p.Index as number, records));
        op.records = records;
        decodedByOp.set(op, decoded);
        // the original bytes: they are replaced by the masked ones before forwarding
        op.batch.hash = hashParts(parts);
      } else if (hashNow || approvable || !mayGo) op.batch.hash = hashParts(parts);
      else hashPending.push([op, parts]);
      op.meta.partitions = parts.map((p) => p.Index as number).join(',');
      op.meta.acks = acks;
      // how long the client waits for the answer: bounds how long an approval may hold it
      if (approvable) op.meta.timeout_ms = body.TimeoutMs as number;
      byOp.set(op, list);
      ops.push(op);
    }
    const hashRest = () => {
      for (const [op, parts] of hashPending.splice(0)) op.batch!.hash = hashParts(parts);
    };
    // Records inspected in the pool: the connection goes on with the next requests while
    // they are there (their own sends wait behind this one's place). Approvals stay in line.
    const detach = this.#detached < MAX_DETACHED && ops.some((o) => o.encoded) && !ops.some((o) => o.meta.timeout_ms !== undefined);
    const place = detach ? this.#reserveSend() : undefined;
    let response: Promise<Buffer> | undefined;
    let denied = new Map<Operation, GatewayError>();
    const { forwarded, settled } = this.#authorize(ops, (allowed, refused) => {
      denied = refused;
      // a refused transactional id refuses the whole request
      const txnDenied = txnOp !== undefined && refused.has(txnOp);
      const send = txnDenied ? [] : allowed.filter((o) => byOp.has(o));
      if (send.length === 0) {
        if (place) this.#cancelSend(place);
        hashRest();
        const notForwarded = new GatewayError('forbidden', `not forwarded: ${refused.get(txnOp!)?.message ?? 'refused'}`);
        return txnDenied ? Promise.resolve(new Map(allowed.map((o) => [o, notForwarded] as [Operation, Error]))) : undefined;
      }
      let rewritten = false;
      for (const o of send) {
        if (o.encoded) {
          if (rebuilt(byOp.get(o)!.flatMap((t) => t.PartitionData as Struct[]), o.encoded)) rewritten = true;
          continue;
        }
        const decoded = decodedByOp.get(o);
        if (!decoded || !o.records) continue;
        let at = 0;
        (byOp.get(o)!.flatMap((t) => t.PartitionData as Struct[])).forEach((p, k) => {
          const r = encodeRecords(decoded[k]!, o.records!, at);
          at += r.used;
          if (r.changed) {
            p.Records = r.blob;
            rewritten = true;
          }
        });
      }
      const out = send.length === byOp.size && !rewritten ? frame : this.#reencode(h, { ...body, TopicData: send.flatMap((o) => byOp.get(o)!) });
      response = this.#send(up, out, acks !== 0, undefined, place);
      // still this tick: the frame's memory is only reused after the socket write completes
      hashRest();
      if (!response) return undefined;
      return response.then((res) => {
        const results = new Map<Operation, UpstreamResult | Error>();
        const decoded = this.#responseBody(h, res);
        for (const tr of decoded.Responses as Struct[]) {
          const op = send.find((o) => o.resource.name === tr.Name);
          if (!op) continue;
          const prior = results.get(op);
          if (prior instanceof Error) continue;
          const records = prior?.records ?? [];
          let failed: Error | undefined;
          for (const p of tr.PartitionResponses as Struct[]) {
            if (p.ErrorCode !== 0) failed = new GatewayError('upstream-error', `the broker refused partition ${String(p.Index)}: error ${String(p.ErrorCode)}`);
            else records.push({ partition: p.Index as number, offset: String(p.BaseOffset), timestamp: Number(p.LogAppendTimeMs) });
          }
          results.set(op, failed ?? { records });
        }
        return results;
      });
    });
    if (place) {
      // whatever did not reach decide (a failure) gives its place up
      this.#detached++;
      this.#later = forwarded.finally(() => {
        this.#detached--;
        this.#cancelSend(place);
      });
    } else await forwarded;
    const done = settled.then(async () => {
      if (acks === 0) {
        // Kafka's own answer to a refused acks=0 produce: close, so the client notices
        if (denied.size > 0) this.destroy();
        return;
      }
      const refusedTopics = [...denied].filter(([op]) => byOp.has(op));
      const txnRefusal = txnOp ? denied.get(txnOp) : undefined;
      if (!response) {
        const codec = this.#l.reg.responses.get(h.apiKey)!;
        const first = txnRefusal ?? refusedTopics[0]?.[1];
        const code = txnRefusal ? ERR.TRANSACTIONAL_ID_AUTHORIZATION_FAILED : first?.kind === 'forbidden' ? ERR.TOPIC_AUTHORIZATION_FAILED : kafkaErrorFor(first);
        const refusal = errorResponse(h.apiKey, codec.defaults(h.version), body, code, first?.message ?? 'refused');
        if (!txnRefusal) recordErrors(refusal, refusedTopics);
        return this.#complete(slot!, this.#encodeResponse(h, refusal));
      }
      const res = await response;
      let decoded: Struct | undefined;
      if (refusedTopics.length > 0) {
        decoded = this.#responseBody(h, res);
        const codec = this.#l.reg.responses.get(h.apiKey)!;
        for (const [op, err] of refusedTopics) {
          const part = errorResponse(h.apiKey, codec.defaults(h.version), { TopicData: byOp.get(op)! }, err.kind === 'forbidden' ? ERR.TOPIC_AUTHORIZATION_FAILED : kafkaErrorFor(err), err.message);
          (decoded.Responses as Struct[]).push(...(part.Responses as Struct[]));
        }
        recordErrors(decoded, refusedTopics);
      }
      if (h.version >= 10) {
        decoded ??= this.#responseBody(h, res);
        if ((decoded.NodeEndpoints as Struct[] | undefined)?.length) await this.#rewriteBrokers(decoded, 'NodeEndpoints', 'NodeId');
        else if (refusedTopics.length === 0) decoded = undefined;
      }
      this.#complete(slot!, decoded ? this.#encodeResponse(h, decoded) : res);
    });
    done.catch(() => this.destroy());
  }

  async #fetch(frame: Buffer, h: Header, body: Struct): Promise<void> {
    if ((body.ReplicaId as number | undefined) !== undefined && (body.ReplicaId as number) >= 0) {
      return this.#violation('follower fetches are not served by the gateway', h);
    }
    // fetch sessions are this connection's own: another's id is refused before anything leaves
    const plan = this.#fetchSessions.plan(body.SessionId as number | undefined, body.SessionEpoch as number | undefined);
    if (plan.kind === 'foreign') return this.#foreignFetchSession(h, plan.id);
    const up = await this.#connectUpstream();
    const slot = this.#slot(h);
    const topics = body.Topics as Struct[];
    // one operation per topic, even where a client lists a topic once per partition
    const entries = new Map<string, Struct[]>();
    for (const t of topics) {
      const list = entries.get(t.Topic as string);
      if (list) list.push(t);
      else entries.set(t.Topic as string, [t]);
    }
    const byOp = new Map<Operation, Struct[]>();
    const byName = new Set(entries.keys());
    for (const [name, list] of entries) {
      const parts = list.flatMap((t) => t.Partitions as Struct[]);
      const op = this.#newOp(h, { kind: 'topic', name, action: 'consume', ...(parts.length === 1 ? { partition: parts[0]!.Partition as number } : {}) });
      op.meta.partitions = parts.map((p) => p.Partition as number).join(',');
      byOp.set(op, list);
    }
    // Topics the session serves without this request naming them are authorized again now,
    // before the request leaves: one no longer allowed is dropped from the broker's session
    // (ForgottenTopicsData) and answered with an authorization error per partition.
    const sessionOnly = this.#fetchSessions.topics(plan).filter((t) => !byName.has(t));
    const sessionRefused = sessionOnly.filter((t) => !this.#permits('consume', { kind: 'topic', name: t }));
    const sessionRefusals = sessionRefused.map((t) => ({ topic: t, partitions: this.#fetchSessions.partitions(plan, t) }));
    for (const t of sessionRefused) this.#refuseSessionTopic(h, t, plan.kind === 'incremental' ? plan.id : 0);
    let response: Promise<Buffer> | undefined;
    let denied = new Map<Operation, GatewayError>();
    // Consume-side rules for this reader: such topics are decoded, masked and re-encoded,
    // so their responses are never cut through. (recorded topics take the same path: their
    // records are decoded with their offsets.) The session's topics count as named.
    const recorded = (topic: string) => this.#l.dispatcher.records?.(topic, 'consume', this.#identity!) === true;
    const inspected = (topic: string) => this.#l.dispatcher.inspects?.(topic, 'consume', this.#identity!.roles) === true || recorded(topic);
    const servesInspected = [...byName, ...sessionOnly].some(inspected);
    const { forwarded, settled } = this.#authorize([...byOp.keys()], (allowed, refused) => {
      denied = refused;
      // an incremental fetch (session) may name no topic at all: still forwarded
      if (allowed.length === 0 && topics.length > 0) return undefined;
      const forwardedTopics = allowed.flatMap((o) => byOp.get(o)!);
      const forgotten = [...((body.ForgottenTopicsData as Struct[] | undefined) ?? []), ...sessionRefusals.map((r) => ({ Topic: r.topic, Partitions: r.partitions }))];
      const rewrite = refused.size > 0 || sessionRefusals.length > 0 || plan.forwardId !== (body.SessionId ?? 0);
      const out = rewrite
        ? this.#reencode(h, { ...body, Topics: forwardedTopics, ...(body.SessionId !== undefined ? { SessionId: plan.forwardId, ForgottenTopicsData: forgotten } : {}) })
        : frame;
      // nothing to merge into the answer and nothing to mask: it may go to the client as it arrives
      const cutThrough = refused.size === 0 && sessionRefusals.length === 0 && !servesInspected;
      response = this.#send(up, out, true, cutThrough ? slot : undefined)!;
      return response.then((res) => {
        const results = new Map<Operation, UpstreamResult>();
        decodedRes = this.#responseBody(h, res);
        this.#fetchSessions.settle(plan, forwardedTopics.map(sessionPartitions), forgotten.map(sessionPartitions), decodedRes.ErrorCode as number ?? 0, decodedRes.SessionId as number ?? 0);
        const toInspect = (decodedRes.Responses as Struct[]).some((tr) => inspected(tr.Topic as string) && hasRecords(tr));
        // Reads are delivered first and audited right after (hashing a large fetch costs about
        // as much as the broker's answer): every topic was authorized before the request left.
        // A topic the request and its session did not cover is never delivered unchecked.
        const covered = (t: string) => byName.has(t) || sessionOnly.includes(t);
        if (slot.streamed || (!toInspect && refused.size === 0 && sessionRefusals.length === 0 && this.#sessionTopics(topics, decodedRes).every((t) => covered(t.Topic as string) && this.#permits('consume', { kind: 'topic', name: t.Topic as string })))) {
          delivered = true;
          this.#complete(slot, res);
        }
        // summaries now, in this tick: a delivered frame's memory is reused once written
        for (const tr of decodedRes.Responses as Struct[]) summaries.set(tr.Topic as string, fetchedSummary(tr));
        for (const op of allowed) {
          const sum = summaries.get(op.resource.name);
          // inspected topics: the records are counted by their inspection operation
          if (sum && (delivered || !inspected(op.resource.name))) op.batch = sum;
          results.set(op, {});
        }
        return results;
      });
    });
    let decodedRes: Struct | undefined;
    let delivered = false;
    const summaries = new Map<string, { records: number; bytes: number; hash: string }>();
    await forwarded;
    settled
      .then(async () => {
        const refused = [...denied];
        const codec = this.#l.reg.responses.get(h.apiKey)!;
        if (!response) {
          const err = refused[0]?.[1];
          const answer = errorResponse(h.apiKey, codec.defaults(h.version), body, err?.kind === 'forbidden' ? ERR.TOPIC_AUTHORIZATION_FAILED : kafkaErrorFor(err), err?.message ?? 'refused');
          // the session stays as it was: keep its id in the answer so the client does not start over
          if (plan.kind === 'incremental') answer.SessionId = plan.id;
          return this.#complete(slot, this.#encodeResponse(h, answer));
        }
        const res = await response;
        const decoded = (decodedRes ??= this.#responseBody(h, res));
        let changed = refused.length > 0 || sessionRefusals.length > 0;
        // incremental fetch sessions (KIP-227) return partitions the request did not name:
        // their records are authorized and audited here, and withheld if no longer allowed
        const unnamed = delivered ? (decoded.Responses as Struct[]).filter((t) => !byName.has(t.Topic as string) && (summaries.get(t.Topic as string)?.bytes ?? 0) > 0) : this.#sessionTopics(topics, decoded);
        // topics with consume rules for this reader, named or not: one operation each whose
        // records the inspect control masks (audited with hashes and the reader's roles)
        if (!delivered) for (const tr of decoded.Responses as Struct[]) if (byName.has(tr.Topic as string) && inspected(tr.Topic as string) && hasRecords(tr)) unnamed.push(tr);
        if (unnamed.length > 0) {
          const decodedParts = new Map<Struct, DecodedRecords[]>();
          const ops = unnamed.map((tr) => {
            const op = this.#newOp(h, { kind: 'topic', name: tr.Topic as string, action: 'consume' });
            const parts = tr.Partitions as Struct[];
            op.meta.partitions = parts.map((p) => p.PartitionIndex as number).join(',');
            op.meta.fetch_session = String(body.SessionId ?? 0);
            if (!delivered && inspected(tr.Topic as string) && !recorded(tr.Topic as string)) {
              // masked only: the engine decodes, masks and re-encodes the batches in one task
              op.encoded = encodedParts(parts, 'PartitionIndex');
              op.meta.inspect_roles = this.#identity!.roles.join(',');
              // counted from the batch headers until the engine has read them (then hashed per record)
              op.batch = { ...countParts(parts), hash: '' };
            } else if (!delivered && inspected(tr.Topic as string)) {
              const dec = parts.map((p) => decodeRecords(p.Records as Uint8Array | null));
              const records: StreamRecord[] = [];
              parts.forEach((p, k) => streamRecords(dec[k]!, p.PartitionIndex as number, records, true));
              op.records = records;
              op.meta.inspect_roles = this.#identity!.roles.join(',');
              decodedParts.set(tr, dec);
            } else op.batch = summaries.get(tr.Topic as string) ?? fetchedSummary(tr);
            return op;
          });
          const checks = await Promise.allSettled(ops.map((op) => this.#l.dispatcher.run(op, () => Promise.resolve({}))));
          unnamed.forEach((tr, i) => {
            if (checks[i]!.status === 'rejected') return;
            const encoded = ops[i]!.encoded;
            if (encoded) {
              if (rebuilt(tr.Partitions as Struct[], encoded)) changed = true;
              return;
            }
            const dec = decodedParts.get(tr);
            if (!dec) return;
            let at = 0;
            (tr.Partitions as Struct[]).forEach((p, k) => {
              const r = encodeRecords(dec[k]!, ops[i]!.records!, at);
              at += r.used;
              if (r.changed) {
                p.Records = r.blob;
                changed = true;
              }
            });
          });
          // fail closed: records whose inspection (or authorization) failed are not delivered
          const withheld = new Set(unnamed.filter((_t, i) => checks[i]!.status === 'rejected').map((t) => t.Topic));
          if (withheld.size > 0 && !delivered) {
            decoded.Responses = (decoded.Responses as Struct[]).filter((t) => !withheld.has(t.Topic));
            changed = true;
          }
        }
        if (delivered) return;
        if (!changed) return this.#complete(slot, res);
        for (const [op, err] of refused) {
          const part = errorResponse(h.apiKey, codec.defaults(h.version), { Topics: byOp.get(op)! }, err.kind === 'forbidden' ? ERR.TOPIC_AUTHORIZATION_FAILED : kafkaErrorFor(err), err.message);
          (decoded.Responses as Struct[]).push(...(part.Responses as Struct[]));
        }
        for (const r of sessionRefusals) {
          const request = { Topics: [{ Topic: r.topic, Partitions: r.partitions.map((p) => ({ Partition: p })) }] };
          const part = errorResponse(h.apiKey, codec.defaults(h.version), request, ERR.TOPIC_AUTHORIZATION_FAILED, `consume on ${r.topic} is no longer allowed`);
          (decoded.Responses as Struct[]).push(...(part.Responses as Struct[]));
        }
        this.#complete(slot, this.#encodeResponse(h, decoded));
      })
      .catch(() => this.destroy());
  }

  /** A Fetch naming a session another connection opened (or none): FETCH_SESSION_ID_NOT_FOUND, audited; the client starts a new session. */
  #foreignFetchSession(h: Header, id: number): void {
    const slot = this.#slot(h);
    const op = this.#newOp(h, { kind: 'cluster', name: 'fetch-session', action: 'consume' });
    op.meta.fetch_session = String(id);
    const message = `fetch session ${id} was not opened on this connection`;
    void this.#l.dispatcher.refuse(op, new GatewayError('forbidden', message, { rule: 'kafka.fetch-session' })).catch(() => {});
    const codec = this.#l.reg.responses.get(h.apiKey)!;
    const answer = codec.defaults(h.version);
    answer.ErrorCode = FETCH_SESSION_ID_NOT_FOUND;
    answer.SessionId = 0;
    answer.Responses = [];
    this.#complete(slot, this.#encodeResponse(h, answer));
  }

  /**
   * A topic the session serves that the reader may no longer consume: run through the chain
   * so the refusal is audited with its rule; the caller drops it from the session.
   */
  #refuseSessionTopic(h: Header, topic: string, sessionId: number): void {
    const op = this.#newOp(h, { kind: 'topic', name: topic, action: 'consume' });
    op.meta.fetch_session = String(sessionId);
    void this.#l.dispatcher.run(op, () => Promise.resolve({})).catch(() => {});
  }

  /** Topics with records in a Fetch response that the request did not name (incremental fetch sessions). */
  #sessionTopics(requested: Struct[], response: Struct): Struct[] {
    // (the caller may append to the returned list)
    const named = new Set(requested.map((t) => t.Topic as string));
    return (response.Responses as Struct[]).filter(
      (tr) => !named.has(tr.Topic as string) && (tr.Partitions as Struct[]).some((p) => ((p.Records as Uint8Array | null)?.byteLength ?? 0) > 0),
    );
  }

  #reencode(h: Header, body: Struct): Buffer {
    const reg = this.#l.reg;
    const codec = reg.requests.get(h.apiKey)!;
    const w = reg.requestHeader.encode({ RequestApiKey: h.apiKey, RequestApiVersion: h.version, CorrelationId: h.correlationId, ClientId: h.clientId }, codec.isFlexible(h.version) ? 2 : 1);
    codec.encode(body, h.version, w);
    return w.finish(true);
  }

  // -------------------------------------------------------------------------
  // Metadata: explicit topics are authorized (describe) and audited; listings are filtered

  async #metadata(frame: Buffer, h: Header, body: Struct): Promise<void> {
    const up = await this.#connectUpstream();
    const slot = this.#slot(h);
    // Metadata before v4 has no AllowAutoTopicCreation and the broker takes it as true: an
    // identity without the admin action could create topics by asking for them. Old versions
    // are forwarded as v4 (v0's empty list, "every topic", becomes v4's null) and answered
    // in the client's version, so creation is decided below like for every other version.
    const legacy = h.version < 4;
    const forward: Header = legacy ? { ...h, version: 4 } : h;
    const requested = legacy && h.version === 0 && (body.Topics as Struct[]).length === 0 ? null : (body.Topics as Struct[] | null);
    const autoCreate = legacy ? true : body.AllowAutoTopicCreation === true;
    const ops = (requested ?? []).map((t) => this.#newOp(h, { kind: 'topic', name: (t.Name as string | null) ?? '<topic-id>', action: 'describe' }));
    let response: Promise<Buffer> | undefined;
    let denied = new Map<Operation, GatewayError>();
    const { forwarded, settled } = this.#authorize(ops, (allowed, refused) => {
      denied = refused;
      let out = frame;
      // (a request whose every topic was refused creates nothing: `every` of nothing is true)
      const mayCreate = autoCreate && allowed.length > 0 && allowed.every((o) => this.#permits('admin', o.resource));
      if (legacy || refused.size > 0 || (autoCreate && !mayCreate)) {
        const keep = requested === null ? null : requested.filter((_t, i) => !refused.has(ops[i]!));
        out = this.#reencode(forward, { ...body, Topics: keep, AllowAutoTopicCreation: mayCreate });
      }
      response = this.#send(up, out, true)!;
      return response.then(() => new Map());
    });
    await forwarded;
    settled
      .then(async () => {
        const res = this.#responseBody(forward, await response!);
        const deniedNames = new Set([...denied.keys()].map((o) => o.resource.name));
        res.Topics = (res.Topics as Struct[]).filter((t) => typeof t.Name === 'string' && !deniedNames.has(t.Name) && this.#permits('describe', { kind: 'topic', name: t.Name }));
        const codec = this.#l.reg.responses.get(h.apiKey)!;
        for (const [op, err] of denied) {
          const t = (codec.defaults(h.version) as Struct & { __proto_Topics: () => Struct }).__proto_Topics();
          t.Name = op.resource.name;
          t.ErrorCode = err.kind === 'forbidden' ? ERR.TOPIC_AUTHORIZATION_FAILED : kafkaErrorFor(err);
          (res.Topics as Struct[]).push(t);
        }
        await this.#rewriteBrokers(res, 'Brokers', 'NodeId');
        this.#complete(slot, this.#encodeResponse(h, res));
      })
      .catch(() => this.destroy());
  }

  async #rewriteBrokers(res: Struct, field: string, idField: string): Promise<Struct> {
    for (const b of (res[field] as Struct[] | undefined) ?? []) {
      const id = b[idField] as number;
      this.#l.learn(id, b.Host as string, b.Port as number);
      b.Host = this.#l.advertisedHost;
      b.Port = await this.#l.brokerPort(id);
    }
    return res;
  }

  async #findCoordinator(res: Struct, version: number): Promise<Struct> {
    const rewrite = async (c: Struct) => {
      if (c.ErrorCode !== 0 || (c.NodeId as number) < 0) return;
      this.#l.learn(c.NodeId as number, c.Host as string, c.Port as number);
      c.Host = this.#l.advertisedHost;
      c.Port = await this.#l.brokerPort(c.NodeId as number);
    };
    if (version >= 4) for (const c of res.Coordinators as Struct[]) await rewrite(c);
    else await rewrite(res);
    return res;
  }

  /** The answer to an ApiVersions before login: the brokers' versions the gateway learned, else its own table. */
  async #apiVersionsBeforeLogin(version: number): Promise<Struct> {
    const cached = this.#l.preLoginAnswers.get(version);
    if (cached) return cached;
    const res = this.#l.reg.responses.get(API.ApiVersions)!.defaults(version);
    const known = this.#l.brokerVersions;
    const answer = known
      ? await this.#apiVersions({ ...res, ...known, ThrottleTimeMs: 0, ApiKeys: (known.ApiKeys as Struct[]).map((a) => ({ ...a })) }, version, false)
      : await this.#apiVersions({ ...res, ErrorCode: ERR.NONE, ApiKeys: [] }, version, true);
    // the gateway's own table stands in only until the brokers' versions are known
    if (known) this.#l.preLoginAnswers.set(version, answer);
    return answer;
  }

  async #apiVersions(res: Struct, version: number, local: boolean): Promise<Struct> {
    const reg = this.#l.reg;
    if (local) {
      // our own table, for a client whose ApiVersions version is newer than ours
      res.ApiKeys = [...SUPPORTED].map((k) => {
        const [min, max] = reg.requests.get(k)!.validVersions;
        return { ApiKey: k, MinVersion: min, MaxVersion: Math.min(max, MAX_VERSION[k] ?? max) };
      });
      return res;
    }
    if (res.ErrorCode !== 0) return res;
    const out: Struct[] = [];
    for (const a of res.ApiKeys as Struct[]) {
      const key = a.ApiKey as number;
      const codec = reg.requests.get(key);
      if (!codec || (!SUPPORTED.has(key) && !this.#l.passthrough.has(key))) continue;
      const [min, max] = codec.validVersions;
      const ceiling = Math.min(max, MAX_VERSION[key] ?? max, a.MaxVersion as number);
      // versions the broker still lists but the definitions (and so the gateway) no longer serve are not offered
      const floor = Math.max(min, a.MinVersion as number);
      if (ceiling < floor) continue;
      a.MinVersion = floor;
      a.MaxVersion = ceiling;
      out.push(a);
    }
    // v0 handshakes (unframed SASL) are refused when used, but librdkafka wants v0 listed
    for (const [key, min, max] of [[API.SaslHandshake, 0, 1], [API.SaslAuthenticate, 0, 2]] as const) {
      if (!out.some((a) => a.ApiKey === key)) out.push({ ApiKey: key, MinVersion: min, MaxVersion: max });
    }
    res.ApiKeys = out;
    return res;
  }

  // -------------------------------------------------------------------------
  // SASL, terminated here

  #saslHandshake(h: Header, body: Struct): void {
    const mechanism = body.Mechanism as string;
    const ok = (MECHANISMS as readonly string[]).includes(mechanism);
    if (h.version < 1) return this.#violation('SaslHandshake v0 (unframed SASL) is not supported', h);
    this.#mechanism = ok ? (mechanism as Mechanism) : undefined;
    this.#localResponse(h, h.version, { ErrorCode: ok ? ERR.NONE : ERR.UNSUPPORTED_SASL_MECHANISM, Mechanisms: [...MECHANISMS] });
  }

  async #saslAuthenticate(h: Header, body: Struct): Promise<void> {
    const slot = this.#slot(h);
    const mechanism = this.#mechanism;
    this.#mechanism = undefined;
    const op = this.#l.dispatcher.newOperation(this.#session, 'describe', { kind: 'cluster', name: 'sasl' });
    op.meta.api = 'SaslAuthenticate';
    op.meta.mechanism = mechanism ?? '';
    const fail = (message: string, bytes?: Uint8Array) => {
      this.#complete(slot, this.#encodeResponse(h, { ErrorCode: ERR.SASL_AUTHENTICATION_FAILED, ErrorMessage: message, AuthBytes: bytes ?? new Uint8Array(0), SessionLifetimeMs: 0n }));
      // Kafka closes after a failed authentication; let the answer leave first
      this.#closed = true;
      this.#socket.end(() => this.destroy());
      this.#upSocket?.destroy();
    };
    if (!mechanism) {
      await this.#l.dispatcher.refuse(op, new GatewayError('unauthenticated', 'SaslAuthenticate without a SaslHandshake')).catch(() => {});
      return fail('SaslAuthenticate without a SaslHandshake');
    }
    let identity: Identity;
    try {
      const auth = body.AuthBytes as Uint8Array;
      // PLAIN's user name is kept: for a just-in-time credential it must be the credential id
      op.credential = mechanism === 'OAUTHBEARER' ? { scheme: 'bearer', token: parseOauthBearer(auth).token } : { scheme: 'bearer', ...parsePlain(auth) };
      identity = await this.#l.dispatcher.login(op);
    } catch (err) {
      const message = err instanceof SaslError || err instanceof GatewayError ? err.message : 'authentication failed';
      if (err instanceof SaslError) await this.#l.dispatcher.refuse(op, new GatewayError('unauthenticated', message)).catch(() => {});
      return fail(message, mechanism === 'OAUTHBEARER' ? oauthBearerFailure() : undefined);
    }
    if (this.#identity && this.#identity.subject !== identity.subject) {
      return fail(`re-authentication must keep the principal (${this.#identity.subject}), not switch to ${identity.subject}`);
    }
    const perIdentity = this.#l.dispatcher.limits?.().connections.perIdentity;
    if (!this.#identity && perIdentity !== undefined && this.#l.connectionsOf(identity.subject) >= perIdentity) {
      const message = `${identity.subject} already holds ${perIdentity} connections (limits.connections.perIdentity)`;
      await this.#l.dispatcher.refuse(op, new GatewayError('throttled', message, { rule: 'limits.connections.perIdentity' })).catch(() => {});
      return fail(message);
    }
    this.#loggedIn(identity);
    const now = Date.now();
    const expiresAt = identity.expiresAt !== undefined ? identity.expiresAt * 1000 : now + this.#l.config.maxSessionLifetimeMs;
    const lifetime = Math.min(this.#l.config.maxSessionLifetimeMs, expiresAt - now);
    if (lifetime <= 0) {
      await this.#l.dispatcher.refuse(op, new GatewayError('unauthenticated', 'the token has expired')).catch(() => {});
      return fail('the token has expired');
    }
    this.#credentialExpiresAt = now + lifetime;
    clearTimeout(this.#expiryTimer);
    this.#expiryTimer = setTimeout(() => this.#expired(), lifetime + 50);
    this.#expiryTimer.unref();
    this.#complete(slot, this.#encodeResponse(h, { ErrorCode: 0, ErrorMessage: null, AuthBytes: new Uint8Array(0), SessionLifetimeMs: BigInt(lifetime) }));
  }

  #expired(): void {
    if (this.#closed || Date.now() < this.#credentialExpiresAt) return;
    const op = this.#l.dispatcher.newOperation(this.#session, 'describe', { kind: 'cluster', name: 'sasl' });
    op.identity = this.#identity!;
    op.meta.api = 'session-expiry';
    void this.#l.dispatcher.refuse(op, new GatewayError('unauthenticated', 'the session credential expired without re-authentication')).catch(() => {});
    this.destroy();
  }

  // -------------------------------------------------------------------------
  // refusals that end the connection

  async #unauthenticated(h: Header, message: string): Promise<void> {
    const op = this.#l.dispatcher.newOperation(this.#session, 'describe', { kind: 'cluster', name: 'kafka' });
    op.meta.api = this.#l.reg.names.get(h.apiKey) ?? String(h.apiKey);
    op.meta.api_version = h.version;
    this.#closed = true; // nothing more is read or forwarded for this client
    await this.#l.dispatcher.refuse(op, new GatewayError('unauthenticated', message)).catch(() => {});
    this.destroy();
  }

  /** Malformed, oversized or unknown input: audit, then close this connection only. */
  #violation(message: string, h: Header | undefined): void {
    if (this.#closed) return;
    this.destroy();
    const op = this.#l.dispatcher.newOperation(this.#session, 'describe', { kind: 'cluster', name: 'kafka' });
    if (this.#identity) op.identity = this.#identity;
    op.meta.violation = message;
    if (h) op.meta.api = this.#l.reg.names.get(h.apiKey) ?? String(h.apiKey);
    void this.#l.dispatcher.refuse(op, new GatewayError('invalid', message)).catch(() => {});
  }
}

/**
 * Produce v8+ (KIP-467): a batch refused by inspection names its offending record, so the
 * Java client reports that record's error and the rest as "part of a batch with an
 * invalid record". The inspect control names the record by its index in the operation.
 */
function recordErrors(res: Struct, refused: Array<[Operation, GatewayError]>): void {
  for (const [op, err] of refused) {
    const at = err.record !== undefined && (err.kind === 'blocked' || err.kind === 'too-large') ? recordPosition(op, err.record) : undefined;
    if (!at) continue;
    for (const tr of res.Responses as Struct[]) {
      if (tr.Name !== op.resource.name) continue;
      for (const p of tr.PartitionResponses as Struct[]) {
        if (p.Index === at.partition && 'RecordErrors' in p) p.RecordErrors = [{ BatchIndex: at.index, BatchIndexErrorMessage: err.message }];
      }
    }
  }
}

/** The partition of the operation's i-th record, and its index within that partition's records. */
function recordPosition(op: Operation, i: number): { partition: number; index: number } | undefined {
  if (op.records) {
    const rec = op.records[i];
    if (rec?.partition === undefined) return undefined;
    let index = 0;
    for (let k = 0; k < i; k++) if (op.records[k]!.partition === rec.partition) index++;
    return { partition: rec.partition, index };
  }
  const counts = op.encoded?.counts;
  if (!counts) return undefined;
  let index = i;
  for (let k = 0; k < counts.length; k++) {
    if (index < counts[k]!) return { partition: op.encoded!.partitions[k]!, index };
    index -= counts[k]!;
  }
  return undefined;
}

const NO_RECORDS = new Uint8Array(0);

/** The records of some partitions, still encoded, for the inspect control. */
function encodedParts(parts: Struct[], indexField: 'Index' | 'PartitionIndex'): EncodedRecords {
  let decodedBytes = 0;
  for (const p of parts) decodedBytes += decodedSizeHint(p.Records as Uint8Array | null);
  return {
    format: 'kafka',
    parts: parts.map((p) => (p.Records as Uint8Array | null) ?? NO_RECORDS),
    partitions: parts.map((p) => p[indexField] as number),
    decodedBytes,
  };
}

/** A Fetch request's topic entry (or forgotten topic) as the session's partitions. */
function sessionPartitions(t: Struct): SessionPartitions {
  const parts = (t.Partitions as Array<Struct | number> | undefined) ?? [];
  return { topic: t.Topic as string, partitions: parts.map((p) => (typeof p === 'number' ? p : (p.Partition as number))) };
}

function hasRecords(tr: Struct): boolean {
  return (tr.Partitions as Struct[]).some((p) => ((p.Records as Uint8Array | null)?.byteLength ?? 0) > 0);
}

function hashParts(parts: Struct[]): string {
  let hash;
  for (const p of parts) hash = hashInto(hash, p.Records as Uint8Array | null);
  return hash ? hash.digest('hex') : '';
}

/** Records of one topic in a Fetch response, counted and hashed without decoding them. */
function fetchedSummary(tr: Struct): { records: number; bytes: number; hash: string } {
  const parts = tr.Partitions as Struct[];
  return { ...countParts(parts), hash: hashParts(parts) };
}

/** Records and bytes of some partitions' records, from the batch headers. */
function countParts(parts: Struct[]): { records: number; bytes: number } {
  const sum = { records: 0, bytes: 0, batches: 0 };
  for (const p of parts) summarize(p.Records as Uint8Array | null, sum);
  return { records: sum.records, bytes: sum.bytes };
}

/** Puts the inspect control's rebuilt batches into the partitions they came from; true when any changed. */
function rebuilt(parts: Struct[], encoded: EncodedRecords): boolean {
  let any = false;
  encoded.changed?.forEach((changed, k) => {
    if (!changed) return;
    parts[k]!.Records = encoded.parts[k]!;
    any = true;
  });
  return any;
}

function kafkaErrorFor(err: GatewayError | undefined): number {
  switch (err?.kind) {
    case 'forbidden':
      return ERR.TOPIC_AUTHORIZATION_FAILED;
    case 'unauthenticated':
      return ERR.SASL_AUTHENTICATION_FAILED;
    case 'too-large':
      return ERR.MESSAGE_TOO_LARGE;
    case 'blocked':
      return ERR.POLICY_VIOLATION;
    case 'invalid':
      // a record batch the gateway could not open: what the broker answers for one
      return err.rule === 'records.format' ? ERR.CORRUPT_MESSAGE : ERR.INVALID_REQUEST;
    case 'upstream-unavailable':
      return ERR.REQUEST_TIMED_OUT;
    case 'throttled':
      return ERR.THROTTLING_QUOTA_EXCEEDED;
    default:
      return ERR.UNKNOWN_SERVER_ERROR;
  }
}
