// One client connection of the Kafka listener: its lifecycle and limits (authentication
// deadline, KIP-219 muting, backpressure both ways), SASL and ApiVersions before login, the
// order responses leave in (slots), the order requests leave for the broker (send queue,
// cut-through), and the controls chain. What each API does is its handler's (handlers/),
// which sees the connection only as a HandlerContext.
//
// Connection model: one upstream connection per client connection (to the broker that
// the client's port stands for). Responses then come back in request order, correlation
// ids pass through unchanged, and one slow client only slows its own broker connection.

import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { KafkaListenerConfig, KafkaUpstreamConfig } from '../../config/schema.ts';
import { GatewayError, type Action, type Identity, type Operation, type Resource, type Session } from '../../operation.ts';
import { BatchFormatError } from '../../formats/kafka-batch.ts';
import { API, ERR, MAX_VERSION, SUPPORTED } from './apis.ts';
import { requestChannel, responseChannel, upstreamChannel, type ResponseMessage, type UpstreamMessage } from './channels.ts';
import type { Struct } from './codec.ts';
import type { Decide, HandlerContext, Header, Inflight, ListenerFacts, NamedResource, SendPlace, Slot } from './context.ts';
import { fanIn } from './fan-in.ts';
import { FetchSessions } from './fetch-sessions.ts';
import { gatewayVersions, offeredVersions, preLoginVersions } from './versions.ts';
import { ResponseOrder, SendQueue } from './order.ts';
import { decodeRequestHeader, decodeResponse, decodeResponseFrame, encodeRequest, encodeResponse } from './frames.ts';
import { FrameError, Framer } from './framing.ts';
import { handlerFor } from './handlers/index.ts';
import { Login } from './login.ts';
import { connectUpstream, type HostPort } from './upstream.ts';

const MAX_QUEUED_REQUESTS = 64;
const MIN_FRAME = 8; // api key, version, correlation id

/** The answer for requests still queued for the broker when their connection closed. */
const closedBeforeForwarding = () => new GatewayError('upstream-unavailable', 'the connection closed before the request was forwarded');

/** Inspected Produce requests of one connection that may wait for the pool at the same time. */
const MAX_DETACHED = 8;

/** What a connection needs of its listener (the listener implements it). */
export interface ConnectionHost extends ListenerFacts {
  readonly config: KafkaListenerConfig;
  readonly upstream: KafkaUpstreamConfig;
  readonly passthrough: ReadonlySet<number>;
  brokerVersions: Struct | undefined;
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
  readonly #framer: Framer;
  #identity: Identity | undefined;
  /** SASL or mTLS, and the credential's lifetime (login.ts) */
  readonly #login: Login;
  #upstream: Promise<Socket> | undefined;
  #upSocket: Socket | undefined;
  #upFramer: Framer | undefined;
  readonly #responses = new ResponseOrder((s) => this.#emit(s));
  readonly #inflight: Inflight[] = [];
  /** requests not yet written upstream, in client order (only while a detached Produce waits) */
  readonly #sendQueue = new SendQueue(
    (up, frame, inflight) => this.#write(up, frame, inflight),
    () => this.#closed,
    closedBeforeForwarding,
  );
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
  readonly fetchSessions = new FetchSessions();
  /** KIP-219 throttling: no reads before this time; the next answer carries the delay as throttle_time_ms */
  #mutedUntil = 0;
  #throttleNextMs = 0;
  #authTimer: NodeJS.Timeout | undefined;

  constructor(listener: ConnectionHost, socket: Socket, target: number | undefined) {
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
        this.violation(err instanceof FrameError ? err.message : 'unreadable frame', undefined);
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
      this.#tail = this.#tail.then(() => login);
    }
  }

  get l(): ListenerFacts {
    return this.#l;
  }

  get identity(): Identity {
    return this.#identity!;
  }

  canDetach(): boolean {
    return this.#detached < MAX_DETACHED;
  }

  detach(place: SendPlace, forwarded: Promise<void>): void {
    this.#detached++;
    this.#later = forwarded.finally(() => {
      this.#detached--;
      this.cancelSend(place);
    });
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
      return this.violation(err instanceof FrameError ? err.message : 'unreadable frame', undefined);
    }
    if (this.#closed || this.#queued >= MAX_QUEUED_REQUESTS) return; // the held-back frames filled the queue again
    if (this.#socket.isPaused()) this.#socket.resume();
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
    this.#upSocket?.destroy();
    this.#upstream?.then((s) => s.destroy(), () => {});
    const err = new GatewayError('upstream-unavailable', 'the connection closed before the broker answered');
    for (const i of this.#inflight.splice(0)) i.reject(err);
    this.#sendQueue.rejectAll(err);
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
        if (err instanceof BatchFormatError || err instanceof FrameError) this.violation(`malformed request: ${err.message}`, undefined);
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


  async #handle(frame: Buffer): Promise<void> {
    if (this.#closed) return;
    const reg = this.#l.reg;
    const apiKey = frame.readInt16BE(4);
    const version = frame.readInt16BE(6);
    const codec = reg.requests.get(apiKey);
    const passthrough = this.#l.passthrough.has(apiKey);
    if (!codec || (!SUPPORTED.has(apiKey) && !passthrough)) {
      return this.violation(`API key ${apiKey} (${reg.names.get(apiKey) ?? 'unknown'}) is not served by the gateway`, undefined);
    }
    const [min, max] = codec.validVersions;
    const ceiling = Math.min(max, MAX_VERSION[apiKey] ?? max);
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
        if (!this.#identity) return this.localResponse(h, version, this.#apiVersionsBeforeLogin(version));
        return this.forward(frame, h, async (res) => {
          if (res.ErrorCode === 0 && version >= 3) this.#l.brokerVersions = { ...res, ApiKeys: (res.ApiKeys as Struct[]).map((a) => ({ ...a })) };
          return offeredVersions(this.#l.reg, this.#l.passthrough, res);
        });
      case API.SaslHandshake:
        if (h.version < 1) return this.violation('SaslHandshake v0 (unframed SASL) is not supported', h);
        return this.localResponse(h, h.version, this.#login.handshake(body.Mechanism as string));
      case API.SaslAuthenticate:
        return this.#saslAuthenticate(h, body.AuthBytes as Uint8Array);
    }
    if (!this.#identity) return this.#unauthenticated(h, 'authenticate with SASL (OAUTHBEARER or PLAIN) before sending requests');
    if (Date.now() >= this.#login.expiresAt) return this.#unauthenticated(h, 'the session credential expired without re-authentication');

    if (passthrough && !SUPPORTED.has(apiKey)) return this.forward(frame, h);
    return handlerFor(apiKey)(this, frame, h, body);
  }



  permits(action: Action, resource: Resource): boolean {
    return this.#l.dispatcher.permits(this.#identity!, action, resource);
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

  /** The answer re-encoded with throttle_time_ms raised to the pending throttle (rare: only after a quota was exceeded). */
  #withThrottle(slot: Slot, frame: Buffer): Buffer {
    const reg = this.#l.reg;
    if (!reg.responses.has(slot.apiKey)) return frame;
    const { correlationId, body } = decodeResponseFrame(reg, slot.apiKey, slot.version, frame);
    if (!('ThrottleTimeMs' in body)) return frame;
    body.ThrottleTimeMs = Math.max(Number(body.ThrottleTimeMs), this.#throttleNextMs);
    this.#throttleNextMs = 0;
    const out = encodeResponse(reg, slot.apiKey, slot.version, correlationId, body);
    this.#upFramer?.release(frame);
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
    if (!slot || this.#responses.head !== slot || this.#closed) return undefined;
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
  send(up: Socket, frame: Buffer, expectResponse: boolean, streamTo?: Slot, place?: SendPlace): Promise<Buffer> | undefined {
    let inflight: Inflight | undefined;
    const p = expectResponse ? new Promise<Buffer>((resolve, reject) => (inflight = streamTo ? { resolve, reject, streamTo } : { resolve, reject })) : undefined;
    this.#sendQueue.send(up, frame, inflight, place);
    return p;
  }

  #write(up: Socket, frame: Buffer, inflight: Inflight | undefined): void {
    if (inflight) this.#inflight.push(inflight);
    if (upstreamChannel.hasSubscribers) upstreamChannel.publish({ session: this.#session.id, frame } satisfies UpstreamMessage);
    // the frame's memory goes back to the framer once the kernel has it
    if (!up.write(frame, () => this.#framer.release(frame))) this.#socket.pause();
  }

  /** Takes a place in the upstream order for a request forwarded later. */
  reserveSend(): SendPlace {
    return this.#sendQueue.reserve();
  }

  /** A reserved place that will not be used (the request was refused): the requests behind it go on. */
  cancelSend(place: SendPlace): void {
    this.#sendQueue.cancel(place);
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


  /** The answer to an ApiVersions before login: the brokers' versions the gateway learned, else its own table. */
  #apiVersionsBeforeLogin(version: number): Struct {
    const l = this.#l;
    const cached = l.preLoginAnswers.get(version);
    if (cached) return cached;
    const answer = preLoginVersions(l.reg, l.passthrough, l.brokerVersions, version);
    // the gateway's own table stands in only until the brokers' versions are known
    if (l.brokerVersions) l.preLoginAnswers.set(version, answer);
    return answer;
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
    this.#upSocket?.destroy();
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
