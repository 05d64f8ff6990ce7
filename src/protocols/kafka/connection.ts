// One client connection of the Kafka listener: its lifecycle and limits (authentication
// deadline, idle timeout, KIP-219 throttle time in answers), login and ApiVersions before it,
// the order responses leave in (slots), and the controls chain. Taking requests in and
// backpressure are intake.ts's, the broker connection (send order, cut-through) is
// broker-link.ts's. What each API does is its handler's (handlers/), which sees the
// connection only as a HandlerContext.
//
// Connection model: one upstream connection per client connection (to the broker that
// the client's port stands for). Responses then come back in request order, correlation
// ids pass through unchanged, and one slow client only slows its own broker connection.

import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { KafkaListenerConfig, KafkaUpstreamConfig } from '../../config/schema.ts';
import { GatewayError, type Action, type Identity, type Operation, type RecordNeeds, type Resource, type Session } from '../../operation.ts';
import { BatchFormatError } from '../../formats/kafka-batch.ts';
import { API, ERR } from './apis.ts';
import { BrokerLink } from './broker-link.ts';
import { responseChannel, type ResponseMessage } from './channels.ts';
import type { Struct } from './codec.ts';
import type { Decide, HandlerContext, Header, ListenerFacts, NamedResource, SendPlace, Slot } from './context.ts';
import { fanIn } from './fan-in.ts';
import { FetchSessions } from './fetch-sessions.ts';
import { answerBeforeLogin, gatewayVersions } from './versions.ts';
import { ResponseOrder } from './order.ts';
import { decodeRequestHeader, decodeResponse, encodeRequest, encodeResponse, withThrottleTime } from './frames.ts';
import { FrameError } from './framing.ts';
import { Intake, type Accepted } from './intake.ts';
import { handlerFor, served } from './handlers/index.ts';
import { Login } from './login.ts';
import type { HostPort } from './upstream.ts';

/** What a connection needs of its listener (the listener implements it). */
export interface ConnectionHost extends ListenerFacts {
  readonly config: KafkaListenerConfig;
  readonly upstream: KafkaUpstreamConfig;
  /** the answer to an ApiVersions before login, per version */
  readonly preLoginAnswers: Map<number, Struct>;
  learnBrokerVersions(): void;
  upstreamAddress(nodeId: number | undefined): Promise<HostPort[]>;
}

export class Connection implements HandlerContext {
  readonly #l: ConnectionHost;
  readonly #socket: Socket;
  readonly #target: number | undefined;
  readonly #session: Session;
  /** frames in, handled in order, reads paused under backpressure (intake.ts) */
  readonly #intake: Intake;
  #identity: Identity | undefined;
  /** SASL or mTLS, and the credential's lifetime (login.ts) */
  readonly #login: Login;
  /** the connection to the broker this client's port stands for (broker-link.ts) */
  readonly #broker: BrokerLink;
  readonly #responses = new ResponseOrder((s) => this.#emit(s));
  readonly #maxInflightBytes: number;
  /** no more requests are read or forwarded */
  #closed = false;
  #destroyed = false;
  /** aborted when the connection ends: operations still waiting (for an approval) are dropped */
  readonly #gone = new AbortController();
  #clientId = '';
  /** the incremental fetch sessions (KIP-227) the broker opened for this connection */
  readonly fetchSessions = new FetchSessions();
  /** KIP-219 throttling: the next answer carries the delay as throttle_time_ms */
  #throttleNextMs = 0;
  #authTimer: NodeJS.Timeout | undefined;

  constructor(listener: ConnectionHost, accepted: Accepted, target: number | undefined) {
    const socket = accepted.socket;
    this.#l = listener;
    this.#socket = socket;
    this.#target = target;
    socket.setNoDelay(true);
    this.#session = listener.dispatcher.newSession('kafka', { address: socket.remoteAddress ?? '' });
    // until it has logged in a client gets Kafka's small SASL frame limit, not the data limit
    this.#intake = new Intake(accepted, {
      handle: (frame) => this.#handle(frame),
      failed: (err) => this.#failed(err),
      unreadable: (message) => this.violation(message, undefined),
      closed: () => this.#closed,
      inflightLimit: () => this.#inflightLimit(),
      upstreamBusy: () => this.#upstreamBusy(),
    });
    this.#broker = new BrokerLink({
      reg: listener.reg,
      upstream: listener.upstream,
      sessionId: this.#session.id,
      client: socket,
      clientFramer: this.#intake.framer,
      addresses: () => listener.upstreamAddress(target),
      closed: () => this.#closed,
      head: () => this.#responses.head,
      opened: () => listener.learnBrokerVersions(),
      drained: () => this.#intake.resume(),
      lost: (reason) => {
        if (reason) listener.log.warn({ session: this.#session.id }, `${reason}; closing`);
        this.destroy();
      },
    });
    socket.on('drain', () => {
      this.#broker.resume();
      this.#intake.resume();
    });
    socket.on('error', () => {});
    socket.on('close', () => this.destroy());
    // KIP-219: the answer goes out now with throttle_time_ms, and nothing more is read for `ms`
    this.#session.throttle = (ms) => {
      this.#throttleNextMs = Math.max(this.#throttleNextMs, ms);
      this.#intake.mute(ms);
    };
    const limits = listener.dispatcher.limits?.();
    this.#maxInflightBytes = limits?.maxInflightBytes ?? Infinity;
    if (limits) {
      // slow-loris and port scans: a connection that never logs in costs one timer, then goes
      this.#authTimer = setTimeout(() => {
        if (!this.#identity) this.violation(`not authenticated within ${limits.authTimeoutMs} ms (limits.authTimeoutMs)`, undefined);
      }, limits.authTimeoutMs);
      this.#authTimer.unref();
      socket.setTimeout(limits.idleTimeoutMs, () => this.destroy());
    }
    this.#login = new Login({
      dispatcher: listener.dispatcher,
      session: this.#session,
      maxSessionLifetimeMs: listener.config.maxSessionLifetimeMs,
      identity: () => this.#identity,
      loggedIn: (identity) => this.#loggedIn(identity),
      closed: () => this.#closed,
      expired: () => this.destroy(),
    });
    if (listener.config.tls?.clientCa && (socket as TLSSocket).authorized) {
      // requests read before the login settles are handled after it
      const login = this.#login.mtls((socket as TLSSocket).getPeerCertificate());
      this.#intake.after(login);
    }
  }

  get l(): ListenerFacts {
    return this.#l;
  }

  get identity(): Identity {
    return this.#identity!;
  }

  canDetach(): boolean {
    return this.#intake.canDetach();
  }

  detach(place: SendPlace, forwarded: Promise<void>): void {
    this.#intake.detach(forwarded, () => this.cancelSend(place));
  }

  /** Refused by a connection limit before anything was read: audited, closed. */
  refuseLimit(message: string): void {
    this.#closed = true;
    const op = this.#l.dispatcher.newOperation(this.#session, 'describe', { kind: 'cluster', name: 'kafka' });
    op.meta.violation = message;
    void this.#l.dispatcher.refuse(op, new GatewayError('throttled', message, { rule: 'limits.connections' })).catch(() => {});
    this.destroy();
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
    this.#login.stop();
    clearTimeout(this.#authTimer);
    this.#socket.destroy();
    this.#broker.destroy(new GatewayError('upstream-unavailable', 'the connection closed before the broker answered'));
    this.#l.dispatcher.endSession(this.#session);
  }

  // -------------------------------------------------------------------------
  // inbound

  #failed(err: unknown): void {
    if (err instanceof BatchFormatError || err instanceof FrameError) this.violation(`malformed request: ${err.message}`, undefined);
    else if (err instanceof GatewayError && (err.kind === 'upstream-unavailable' || err.kind === 'upstream-error')) {
      this.#l.log.warn({ err: err.message, session: this.#session.id }, 'upstream failure; closing the client connection');
      this.destroy();
    } else if (!this.#closed) {
      this.#l.log.error({ err, session: this.#session.id }, 'Kafka request failed');
      this.destroy();
    }
  }

  /** Request bytes that may wait before reads pause: small until the client has logged in. */
  #inflightLimit(): number {
    return this.#identity ? this.#maxInflightBytes : Math.min(this.#maxInflightBytes, this.#l.config.maxFrameBytesBeforeAuth);
  }

  /** Logged in (SASL or mTLS): the data path's frame limit applies from now on. */
  #loggedIn(identity: Identity): void {
    this.#identity = identity;
    this.#intake.framer.maxBytes = this.#l.config.maxFrameBytes;
  }

  /**
   * The broker connection is backed up, or the client does not read its answers: a client
   * that sends requests without reading (ApiVersions answers are 30x their request) is not
   * read either, so unread answers cannot pile up in memory.
   */
  #upstreamBusy(): boolean {
    return this.#broker.busy || this.#socket.writableNeedDrain;
  }


  async #handle(frame: Buffer): Promise<void> {
    if (this.#closed) return;
    const reg = this.#l.reg;
    const apiKey = frame.readInt16BE(4);
    const version = frame.readInt16BE(6);
    const api = served(reg, this.#l.passthrough, apiKey);
    if (!api) return this.violation(`API key ${apiKey} (${reg.names.get(apiKey) ?? 'unknown'}) is not served by the gateway`, undefined);
    const { codec, min, max: ceiling } = api;
    const h = decodeRequestHeader(this.#l.reg, frame);
    if (h.clientId && !this.#clientId) {
      this.#clientId = h.clientId;
      this.#session.client.clientId = h.clientId;
    }
    if (apiKey === API.ApiVersions && version > ceiling) {
      // KIP-511: answer in v0 with the versions we serve, so the client can pick one
      return this.localResponse(h, 0, gatewayVersions(this.#l.reg, { ErrorCode: ERR.UNSUPPORTED_VERSION, ApiKeys: [] }));
    }
    if (version < min || version > ceiling) {
      return this.violation(`${reg.names.get(apiKey)} v${version} is not served (versions ${min}-${ceiling})`, h);
    }
    const body = codec.decode(frame, h.bodyOffset, version).value;
    if (this.#l.log.isLevelEnabled('debug')) this.#l.log.debug({ session: this.#session.id, api: reg.names.get(apiKey), version, correlationId: h.correlationId }, 'request');

    switch (apiKey) {
      case API.ApiVersions:
        // before login: answered here from what the brokers said to the gateway, nothing forwarded
        if (!this.#identity) return this.localResponse(h, version, answerBeforeLogin(this.#l, version));
        break;
      case API.SaslHandshake:
        if (h.version < 1) return this.violation('SaslHandshake v0 (unframed SASL) is not supported', h);
        return this.localResponse(h, h.version, this.#login.handshake(body.Mechanism as string));
      case API.SaslAuthenticate:
        return this.#saslAuthenticate(h, body.AuthBytes as Uint8Array);
    }
    if (!this.#identity) return this.#unauthenticated(h, 'authenticate with SASL (OAUTHBEARER or PLAIN) before sending requests');
    if (Date.now() >= this.#login.expiresAt) return this.#unauthenticated(h, 'the session credential expired without re-authentication');

    return handlerFor(apiKey, this.#l.passthrough)(this, frame, h, body);
  }

  permits(action: Action, resource: Resource): boolean {
    return this.#l.dispatcher.permits(this.#identity!, action, resource);
  }

  needs(action: Action, resource: Resource): RecordNeeds {
    return this.#l.dispatcher.needs({ protocol: 'kafka', action, resource, identity: this.#identity! });
  }

  // -------------------------------------------------------------------------
  // slots: responses leave in request order

  slot(h: Header): Slot {
    return this.#responses.slot(h);
  }

  complete(slot: Slot, data: Buffer | undefined): void {
    this.#responses.complete(slot, data);
  }

  /** A response whose turn came: written to the client (unless it was cut through). */
  #emit(s: Slot): void {
    if (s.data && responseChannel.hasSubscribers) responseChannel.publish({ apiKey: s.apiKey, version: s.version, frame: s.data } satisfies ResponseMessage);
    if (s.streamed) {
      const data = s.data;
      if (data) setImmediate(() => this.#broker.release(data));
    } else if (s.data && !this.#closed) {
      // backpressure the other way: a client slow to read pauses its broker connection
      const data = this.#throttleNextMs > 0 ? this.#withThrottle(s, s.data) : s.data;
      if (!this.#socket.write(data, () => this.#broker.release(data))) {
        this.#broker.pause();
        this.#intake.pause();
      }
    }
  }

  /** The answer with throttle_time_ms raised to the pending throttle (rare: only after a quota was exceeded). */
  #withThrottle(slot: Slot, frame: Buffer): Buffer {
    const out = withThrottleTime(this.#l.reg, slot.apiKey, slot.version, frame, this.#throttleNextMs);
    if (out === frame) return frame;
    this.#throttleNextMs = 0;
    this.#broker.release(frame);
    return out;
  }

  encodeResponse(h: Header, body: Struct, version = h.version): Buffer {
    return encodeResponse(this.#l.reg, h.apiKey, version, h.correlationId, body);
  }

  localResponse(h: Header, version: number, body: Struct): void {
    this.complete(this.slot({ ...h, version }), this.encodeResponse(h, body, version));
  }

  responseBody(h: Header, frame: Buffer): Struct {
    return decodeResponse(this.#l.reg, h.apiKey, h.version, frame);
  }

  // -------------------------------------------------------------------------
  // upstream

  connectUpstream(): Promise<Socket> {
    return this.#broker.connect();
  }

  send(up: Socket, frame: Buffer, expectResponse: boolean, streamTo?: Slot, place?: SendPlace): Promise<Buffer> | undefined {
    return this.#broker.send(up, frame, expectResponse, streamTo, place);
  }

  reserveSend(): SendPlace {
    return this.#broker.reserve();
  }

  cancelSend(place: SendPlace): void {
    this.#broker.cancel(place);
  }

  /** Forwards unchanged; `transform` (if any) rewrites the decoded response. */
  async forward(frame: Buffer, h: Header, transform?: (res: Struct) => Promise<Struct>): Promise<void> {
    const up = await this.connectUpstream();
    const slot = this.slot(h);
    const pending = this.send(up, frame, true)!;
    // not awaited: the next request may be forwarded while this one is in flight
    void pending.then(
      async (res) => {
        if (!transform) return this.complete(slot, res);
        this.complete(slot, this.encodeResponse(h, await transform(this.responseBody(h, res))));
      },
      () => this.destroy(),
    ).catch((err: unknown) => {
      this.#l.log.error({ err, session: this.#session.id }, 'rewriting a Kafka response failed');
      this.destroy();
    });
  }

  // -------------------------------------------------------------------------
  // authorization through the controls chain

  newOp(h: Header, n: NamedResource): Operation {
    const resource: Resource = { kind: n.kind, name: n.name };
    if (n.partition !== undefined) resource.partition = n.partition;
    const op = this.#l.dispatcher.newOperation(this.#session, n.action, resource);
    op.identity = this.#identity!;
    op.signal = this.#gone.signal;
    op.meta.api = this.#l.reg.names.get(h.apiKey) ?? String(h.apiKey);
    op.meta.api_version = h.version;
    // Kafka requests carry no timeout of their own unless a handler says (Produce)
    op.answerWithinMs = 0;
    return op;
  }

  /** Runs every operation through the controls chain; `decide` forwards once each is allowed or refused (fan-in.ts). */
  authorize(ops: Operation[], decide: Decide): { forwarded: Promise<void>; settled: Promise<unknown> } {
    return fanIn((op, terminal) => this.#l.dispatcher.run(op, terminal), ops, decide);
  }

  reencode(h: Header, body: Struct): Buffer {
    return encodeRequest(this.#l.reg, h.apiKey, h.version, h.correlationId, body, h.clientId);
  }

  async rewriteBrokers(res: Struct, field: string, idField: string): Promise<Struct> {
    for (const b of (res[field] as Struct[] | undefined) ?? []) {
      const id = b[idField] as number;
      this.#l.learn(id, b.Host as string, b.Port as number);
      b.Host = this.#l.advertisedHost;
      b.Port = await this.#l.brokerPort(id);
    }
    return res;
  }


  // -------------------------------------------------------------------------
  // SASL, terminated here

  async #saslAuthenticate(h: Header, auth: Uint8Array): Promise<void> {
    const slot = this.slot(h);
    const { body, close } = await this.#login.authenticate(auth);
    this.complete(slot, this.encodeResponse(h, body));
    if (!close) return;
    // Kafka closes after a failed authentication; let the answer leave first
    this.#closed = true;
    this.#socket.end(() => this.destroy());
    this.#broker.destroy(new GatewayError('unauthenticated', 'authentication failed'));
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
  violation(message: string, h: Header | undefined): void {
    if (this.#closed) return;
    this.destroy();
    const op = this.#l.dispatcher.newOperation(this.#session, 'describe', { kind: 'cluster', name: 'kafka' });
    if (this.#identity) op.identity = this.#identity;
    op.meta.violation = message;
    if (h) op.meta.api = this.#l.reg.names.get(h.apiKey) ?? String(h.apiKey);
    void this.#l.dispatcher.refuse(op, new GatewayError('invalid', message)).catch(() => {});
  }
}
