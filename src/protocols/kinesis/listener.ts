import { createServer as createHttp1Server, type IncomingMessage, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { createSecureServer, createServer as createHttp2Server, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { KinesisListenerConfig } from '../../config/schema.ts';
import type { Dispatcher } from '../../dispatcher.ts';
import { GatewayError, keptRecords, Refusals, type Action, type Identity, type Operation, type RecordOutcome, type Session, type StreamRecord, type UpstreamResult } from '../../operation.ts';
import type { StateStore } from '../../state/store.ts';
import { errorType } from '../../upstream/kinesis.ts';
import { BODY_BYTES_BEFORE_AUTH, describeJsonError, expectsContinue, JSON_BYTES_PARSED_UNCOUNTED, jsonValuesOver, unreadBodyNeedsClose } from '../request-body.ts';
import { kinesisErrorFor, kinesisRefusal } from './errors.ts';
import { isSigV4, SigV4Verifier, type SignatureClaim, type SigV4Failure, type VerifiedSignature } from './sigv4.ts';
import { KinesisSessions } from './sessions.ts';
import { TokenBinder } from './tokens.ts';
import { deliveredRecord, entryRecord, forwardedEntry } from './records.ts';

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;
type Body = Record<string, unknown>;

const TARGET_PREFIX = 'Kinesis_20131202.';
const JSON_11 = 'application/x-amz-json-1.1';
const STREAM_NAME = /^[a-zA-Z0-9_.-]{1,128}$/;
const STREAM_ARN = /^arn:aws[a-z-]*:kinesis:[^:]*:[^:]*:stream\/([a-zA-Z0-9_.-]{1,128})$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const MAX_PUT_RECORDS = 500;
const HTTP2_PREFACE = 'PRI';
/**
 * The most JSON values one request body may hold (see `jsonValuesOver`): the largest valid
 * request, PutRecords with 500 records, has about 2,000, and a body of many small values is
 * what makes JSON.parse slow (an 8 MiB one of empty objects: over half a second).
 */
const MAX_JSON_VALUES = 10_000;
/**
 * HTTP/2 streams a client may have open on one connection. Each may hold up to
 * BODY_BYTES_BEFORE_AUTH of body before the gateway reads it, so this bounds what an
 * unauthenticated connection can make the gateway hold (2 MiB); the AWS SDK uses one stream
 * per connection.
 */
const MAX_CONCURRENT_STREAMS = 32;

/** Every Kinesis API the gateway serves and the action it needs on the stream. */
const ACTIONS: Record<string, Action> = {
  PutRecord: 'produce',
  PutRecords: 'produce',
  GetShardIterator: 'consume',
  GetRecords: 'consume',
  ListShards: 'describe',
  DescribeStream: 'describe',
  DescribeStreamSummary: 'describe',
  ListStreams: 'describe',
  ListTagsForStream: 'describe',
  CreateStream: 'admin',
  DeleteStream: 'admin',
  UpdateShardCount: 'admin',
  SplitShard: 'admin',
  MergeShards: 'admin',
  AddTagsToStream: 'admin',
  RemoveTagsFromStream: 'admin',
  IncreaseStreamRetentionPeriod: 'admin',
  DecreaseStreamRetentionPeriod: 'admin',
};

/** The Kinesis endpoint calls go to (the gateway makes it: src/upstream/kinesis.ts), re-signed with the gateway's own credentials. */
export interface KinesisEndpoint {
  /** `Kinesis_20131202.<action>` with a JSON body; rejects with a GatewayError */
  call(action: string, body: unknown): Promise<Record<string, unknown>>;
}

interface Call {
  session: Session;
  api: string;
  body: Body;
  /** set when the request was SigV4-signed (the JIT access key must match the identity) */
  signature: VerifiedSignature | undefined;
  /** who the credential proved to be, before the body was read */
  identity: Identity;
  /** the credential: the bearer JWT or the SigV4 session token */
  token: string;
}

/** Who sent a request, as far as it is known when the request is refused (for the audit row). */
interface Caller {
  token?: string | undefined;
  identity?: Identity;
  /** the access key id the Authorization header names (audited; proven only once the signature is) */
  accessKeyId?: string | undefined;
}

/** What the listener answers: a JSON body or a Kinesis error. */
type Answer = { status: 200; body: Body; requestId: string } | { status: number; error: { type: string; message: string }; requestId: string };

/**
 * The AWS Kinesis API (JSON 1.1, `X-Amz-Target: Kinesis_20131202.*`) over HTTP/1.1 and
 * cleartext HTTP/2 (prior knowledge, what the AWS SDK v3 sends to an http:// endpoint) on
 * one port. Callers prove who they are with SigV4 over a just-in-time access key (the
 * credential itself rides as the session token) or `Authorization: Bearer <JWT>`. Each API
 * call becomes an Operation on its stream; records (PutRecord(s), GetRecords) are decoded
 * into the operation so the inspect, audit and record controls see them, and the request is
 * re-signed with the gateway's own credentials towards the upstream.
 */
export class KinesisListener {
  readonly #config: KinesisListenerConfig;
  readonly #dispatcher: Dispatcher;
  readonly #log: Logger;
  readonly #upstream: KinesisEndpoint;
  readonly #tokens: TokenBinder;
  readonly #verifier: SigV4Verifier;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #connections: { opened(listener: string): void; closed(listener: string): void } | undefined;

  /**
   * `connections` is told about accepted and closed TCP connections (metrics); `shared`, when
   * several instances share state (Redis), holds the SigV4 replay cache so a request replayed
   * to another instance is refused too.
   */
  constructor(
    config: KinesisListenerConfig,
    upstream: KinesisEndpoint,
    dispatcher: Dispatcher,
    log: Logger,
    connections?: { opened(listener: string): void; closed(listener: string): void },
    shared?: Pick<StateStore, 'setIfAbsent'>,
  ) {
    this.#config = config;
    this.#dispatcher = dispatcher;
    this.#log = log;
    this.#connections = connections;
    this.#upstream = upstream;
    this.#tokens = new TokenBinder(config.iteratorSecret);
    this.#sessions = new KinesisSessions(dispatcher);
    this.#verifier = new SigV4Verifier({
      secretFor: (id) => dispatcher.sigv4Secret?.(id),
      maxSkewSeconds: config.maxClockSkewSeconds,
      service: 'kinesis',
      ...(shared ? { remember: (signature: string, ttlMs: number) => shared.setIfAbsent(`kinesis:sigv4:${signature}`, '1', ttlMs) } : {}),
      // a signature that does not cover the body is only worth something when TLS protects it
      allowUnsignedPayload: config.allowUnsignedPayload && config.tls !== undefined,
    });
    const handler = (req: Req, res: Res) => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#log.error({ err }, 'kinesis request failed');
        if (!res.headersSent) send(res, { status: 500, error: { type: 'InternalFailure', message: 'internal error' }, requestId: '' });
      });
    };
    // HTTP/2 flow control: the connection's window is opened to the body limit up front, so
    // streams do not wait on each other's WINDOW_UPDATEs; each stream starts with
    // BODY_BYTES_BEFORE_AUTH, the most a client can send before the gateway starts reading that
    // stream, which it does only once the credential is verified (then every read opens the
    // window again). Opening stream windows to the body limit instead let an anonymous
    // client park maxBodyBytes per stream in the gateway.
    const window = Math.min(2 ** 31 - 1, Math.max(65_535, config.maxBodyBytes));
    const settings = { initialWindowSize: BODY_BYTES_BEFORE_AUTH, maxConcurrentStreams: MAX_CONCURRENT_STREAMS };
    const track = (socket: Socket) => {
      this.#sockets.add(socket);
      this.#connections?.opened('kinesis');
      socket.on('error', () => {});
      socket.once('close', () => {
        this.#sockets.delete(socket);
        this.#connections?.closed('kinesis');
      });
    };
    if (config.tls) {
      // TLS: ALPN picks HTTP/2 or HTTP/1.1, one server answers both
      const secure = createSecureServer({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key), allowHTTP1: true, settings }, handler);
      // `Expect: 100-continue` is answered once the credential is verified (#handle)
      secure.on('checkContinue', handler);
      secure.on('session', (h2session) => h2session.setLocalWindowSize(window));
      secure.on('sessionError', () => {});
      secure.on('connection', (socket: Socket) => {
        socket.setNoDelay(true);
        track(socket);
      });
      this.#server = secure;
      return;
    }
    const h1 = createHttp1Server({ requestTimeout: config.requestTimeoutMs }, handler);
    const h2 = createHttp2Server({ settings }, handler);
    h1.on('checkContinue', handler);
    h2.on('checkContinue', handler);
    h2.on('session', (h2session) => h2session.setLocalWindowSize(window));
    h2.on('sessionError', () => {});
    // Node's cleartext HTTP/2 server cannot also speak HTTP/1.1 (allowHTTP1 is TLS-only), so
    // the first bytes decide: the HTTP/2 connection preface goes to the h2 server, anything
    // else to the HTTP/1.1 one.
    this.#server = createNetServer({ noDelay: true, keepAlive: true }, (socket) => {
      track(socket);
      let head = Buffer.alloc(0);
      const sniff = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        if (head.byteLength < HTTP2_PREFACE.length) return;
        socket.off('data', sniff);
        socket.pause();
        socket.unshift(head);
        if (head.subarray(0, 3).toString('latin1') === HTTP2_PREFACE) {
          h2.emit('connection', socket);
        } else {
          h1.emit('connection', socket);
          // the HTTP/1.1 server reads the socket's handle directly unless a 'data' listener
          // exists; with one it reads through the stream, which still holds the sniffed bytes
          socket.on('data', () => {});
          socket.resume();
        }
      };
      socket.on('data', sniff);
    });
  }

  readonly #sessions: KinesisSessions;

  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#config.port, this.#config.host, () => {
        const addr = this.#server.address();
        resolve({ host: this.#config.host, port: typeof addr === 'object' && addr ? addr.port : this.#config.port });
      });
    });
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
    this.#sessions.close();
  }

  async #handle(req: Req, res: Res): Promise<void> {
    const ua = req.headers['user-agent'];
    const session = this.#sessions.for(credentialKey(req.headers.authorization), { address: req.socket.remoteAddress ?? '', ...(ua ? { software: String(ua).slice(0, 200) } : {}) });
    const target = String(req.headers['x-amz-target'] ?? '');
    const api = target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : '';
    const action: Action = ACTIONS[api] ?? 'describe';
    // the token the caller presented (bearer, or the SigV4 session token): refusals are audited
    // under the identity it proves, when it proves one
    const authorization = req.headers.authorization;
    const securityToken = req.headers['x-amz-security-token'];
    const presented = authorization?.startsWith('Bearer ') ? authorization.slice('Bearer '.length).trim() : typeof securityToken === 'string' ? securityToken : undefined;
    const sigv4 = isSigV4(authorization);
    const caller: Caller = { token: presented, accessKeyId: sigv4 ? claimedAccessKey(authorization) : undefined };
    const fail = (err: unknown) => this.#refuse(session, api, action, err, caller);
    // refused before the body is read: it stays unread (Node drains a small rest; a larger one
    // closes the HTTP/1.1 connection, and an HTTP/2 stream the gateway never read is reset)
    const refuseUnread = async (err: unknown) => send(res, await fail(err), unreadBodyNeedsClose(req.headers));

    if (req.method !== 'POST') return refuseUnread(kinesisRefusal('invalid', 'UnknownOperationException', `${req.method} is not a Kinesis API call`));
    if (!api || !(api in ACTIONS)) {
      return refuseUnread(kinesisRefusal('invalid', 'UnknownOperationException', target ? `${target.slice(0, 100)} is not served by the gateway` : 'X-Amz-Target is missing'));
    }
    const contentType = String(req.headers['content-type'] ?? '');
    if (contentType.startsWith('application/x-amz-cbor')) {
      return refuseUnread(kinesisRefusal('invalid', 'SerializationException', 'CBOR is not accepted: use JSON 1.1 (AWS SDK for Java: -Daws.cborEnabled=false or AWS_CBOR_DISABLE=true)'));
    }
    if (Number(req.headers['content-length'] ?? 0) > this.#config.maxBodyBytes) return refuseUnread(this.#tooLarge());

    // who is calling: SigV4 over a just-in-time key (the credential rides as the session token),
    // or a bearer JWT. Both are in the headers, so they are checked before any body is read:
    // an unauthenticated client never makes the gateway hold or parse its body.
    const headers = req.headers as Record<string, string | string[] | undefined>;
    let claim: SignatureClaim | undefined;
    let token: string;
    if (sigv4) {
      const checked = this.#verifier.check(headers);
      if ('error' in checked) return refuseUnread(sigv4Refusal(checked));
      if (!checked.sessionToken) {
        return refuseUnread(kinesisRefusal('unauthenticated', 'UnrecognizedClientException', 'a just-in-time access key needs its session token (X-Amz-Security-Token)'));
      }
      claim = checked;
      token = checked.sessionToken;
    } else if (authorization?.startsWith('Bearer ')) {
      token = authorization.slice('Bearer '.length).trim();
    } else {
      return refuseUnread(kinesisRefusal('unauthenticated', 'MissingAuthenticationTokenException', 'Missing Authentication Token: sign with a just-in-time access key or send Authorization: Bearer <JWT>'));
    }
    let identity: Identity;
    try {
      const probe = this.#dispatcher.newOperation(session, action, { kind: 'stream', name: '' });
      // SigV4: the authenticate control binds the access key to the credential the session token proves
      probe.credential = { scheme: 'bearer', token, ...(claim ? { accessKeyId: claim.accessKeyId } : {}) };
      identity = await this.#dispatcher.authenticate(probe);
    } catch (err) {
      return refuseUnread(err);
    }

    // from here on the caller is authenticated; the body is read (bounded) and, for SigV4,
    // the signature checked over it
    const body = await readBody(req, res, this.#config.maxBodyBytes);
    const known: Caller = { ...caller, identity };
    if (body === 'too-large') return send(res, await this.#refuse(session, api, action, this.#tooLarge(), known), true);
    if (body === 'failed') {
      return send(res, await this.#refuse(session, api, action, kinesisRefusal('invalid', 'SerializationException', 'the request body could not be read (the connection failed)'), known), true);
    }
    let signature: VerifiedSignature | undefined;
    if (claim) {
      const verified = await this.#verifier.verify({ method: req.method ?? 'POST', path: req.url ?? '/', headers, body });
      if ('error' in verified) return send(res, await this.#refuse(session, api, action, sigv4Refusal(verified), known));
      signature = verified;
    }

    let parsed: Body;
    if (body.byteLength > JSON_BYTES_PARSED_UNCOUNTED && jsonValuesOver(body, MAX_JSON_VALUES)) {
      const refusal = kinesisRefusal('too-large', 'SerializationException', `the request body holds more than ${MAX_JSON_VALUES} JSON values (no Kinesis request needs that many)`, 413);
      return send(res, await this.#refuse(session, api, action, refusal, known));
    }
    try {
      const value: unknown = body.byteLength === 0 ? {} : JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        return send(res, await this.#refuse(session, api, action, kinesisRefusal('invalid', 'SerializationException', 'the request body is not a JSON object'), known));
      }
      parsed = value as Body;
    } catch {
      // V8's message quotes the body: say where instead
      return send(res, await this.#refuse(session, api, action, kinesisRefusal('invalid', 'SerializationException', describeJsonError('the request body', body)), known));
    }

    const call: Call = { session, api, body: parsed, signature, identity, token };
    let answer: Answer;
    try {
      answer = await this.#dispatch(call);
    } catch (err) {
      answer = errorAnswer(err, '');
    }
    send(res, answer);
  }

  #tooLarge(): GatewayError {
    return kinesisRefusal('too-large', 'SerializationException', `the request body is over ${this.#config.maxBodyBytes} bytes`, 413);
  }

  /** Audits a request refused before it became an operation of its own, and builds the answer. */
  async #refuse(session: Session, api: string, action: Action, err: unknown, caller: Caller): Promise<Answer> {
    const op = this.#dispatcher.newOperation(session, action, { kind: 'stream', name: '' });
    op.meta.api = api || 'unknown';
    if (caller.accessKeyId) {
      op.meta.auth = 'sigv4';
      op.meta.access_key = caller.accessKeyId;
    }
    // the row names who tried: the identity when it is known, else the one the token proves
    // (verified by `refuse` first); the answer is this error either way
    if (caller.identity) op.identity = caller.identity;
    else if (caller.token) op.credential = { scheme: 'bearer', token: caller.token };
    await this.#dispatcher.refuse(op, err).catch(() => {});
    return errorAnswer(err, op.id);
  }

  /** Refuses a call of an authenticated caller (audited under its identity). */
  #refuseCall(call: Call, action: Action, err: GatewayError): Promise<Answer> {
    return this.#refuse(call.session, call.api, action, err, { token: call.token, identity: call.identity, accessKeyId: call.signature?.accessKeyId });
  }

  #newOp(call: Call, action: Action, stream: string): Operation {
    const op = this.#dispatcher.newOperation(call.session, action, { kind: 'stream', name: stream });
    op.meta.api = call.api;
    op.meta.auth = call.signature ? 'sigv4' : 'bearer';
    if (call.signature) {
      op.meta.access_key = call.signature.accessKeyId;
      op.meta.region = call.signature.region;
    }
    op.credential = { scheme: 'bearer', token: call.token };
    // verified from the headers before the body was read: the chain does not verify it again
    op.identity = call.identity;
    return op;
  }

  /** Runs one operation through the controls chain with `forward` as its terminal; maps its failure to a Kinesis error. */
  async #run(op: Operation, call: Call, forward: (op: Operation) => Promise<UpstreamResult>): Promise<string> {
    try {
      await this.#dispatcher.run(op, forward);
    } finally {
      this.#sessions.expires(op.session, op.identity?.expiresAt);
    }
    return op.id;
  }

  async #dispatch(call: Call): Promise<Answer> {
    const { api, body } = call;
    if (api === 'ListStreams') return this.#listStreams(call);
    const action = ACTIONS[api]!;
    // the upstream must act on the stream that is authorized: StreamName and StreamARN have to
    // agree, and a gateway token (shard iterator, ListShards page) carries its own stream
    const named = namedStream(body);
    if (named && 'invalid' in named) return this.#refuseCall(call, action, kinesisRefusal('invalid', named.type, named.invalid));
    if (api === 'GetRecords') return this.#getRecords(call, named?.stream);
    let stream = named?.stream;
    let pageToken: string | undefined;
    if (api === 'ListShards' && body.NextToken !== undefined) {
      const bound = typeof body.NextToken === 'string' ? this.#tokens.unwrap(body.NextToken) : undefined;
      if (!bound) return this.#refuseCall(call, action, kinesisRefusal('invalid', 'ExpiredNextTokenException', 'NextToken was not issued by this gateway (or has expired)'));
      if (stream !== undefined && stream !== bound.stream) {
        return this.#refuseCall(call, action, kinesisRefusal('invalid', 'InvalidArgumentException', `NextToken belongs to stream "${bound.stream}", not to "${stream}"`));
      }
      stream = bound.stream;
      pageToken = bound.upstream;
    }
    if (!stream) return this.#refuseCall(call, action, kinesisRefusal('invalid', 'ValidationException', 'StreamName (or StreamARN) is required'));
    if (api === 'PutRecord' || api === 'PutRecords') return this.#put(call, stream);

    const op = this.#newOp(call, action, stream);
    const out = { ...body };
    if (pageToken !== undefined) out.NextToken = pageToken;
    let result: Body = {};
    try {
      await this.#run(op, call, async () => {
        result = await this.#upstream.call(api, out);
        return {};
      });
    } catch (err) {
      return errorAnswer(err, op.id);
    }
    if (api === 'GetShardIterator' && typeof result.ShardIterator === 'string') {
      result = { ...result, ShardIterator: this.#tokens.wrap(stream, String(body.ShardId ?? ''), result.ShardIterator) };
    }
    if (api === 'ListShards' && typeof result.NextToken === 'string') result = { ...result, NextToken: this.#tokens.wrap(stream, '', result.NextToken) };
    return { status: 200, body: result, requestId: op.id };
  }

  /** ListStreams: any authenticated identity; the answer lists only streams it may describe. */
  async #listStreams(call: Call): Promise<Answer> {
    const op = this.#newOp(call, 'describe', '*');
    op.meta.listing = 'true';
    let identity;
    try {
      identity = await this.#dispatcher.login(op);
      this.#sessions.expires(op.session, identity.expiresAt);
    } catch (err) {
      return errorAnswer(err, op.id);
    }
    let result: Body;
    try {
      result = await this.#upstream.call('ListStreams', call.body);
    } catch (err) {
      return errorAnswer(err, op.id);
    }
    const visible = (name: unknown) => typeof name === 'string' && this.#dispatcher.permits(identity, 'describe', { kind: 'stream', name });
    const filtered: Body = { ...result };
    if (Array.isArray(result.StreamNames)) filtered.StreamNames = result.StreamNames.filter(visible);
    if (Array.isArray(result.StreamSummaries)) filtered.StreamSummaries = (result.StreamSummaries as Body[]).filter((s) => visible(s.StreamName));
    return { status: 200, body: filtered, requestId: op.id };
  }

  async #put(call: Call, stream: string): Promise<Answer> {
    const batch = call.api === 'PutRecords';
    const entries = batch ? call.body.Records : [call.body];
    const invalid = validateEntries(entries, batch);
    if (invalid) return this.#refuseCall(call, 'produce', kinesisRefusal('invalid', 'ValidationException', invalid));
    const list = entries as Body[];
    const op = this.#newOp(call, 'produce', stream);
    op.records = list.map(entryRecord);
    if (batch) op.refusals = new Refusals<number>();
    let upstreamAnswer: Body = {};
    // per record, in the client's order: where the upstream stored it, or why it failed
    const outcomes: Array<{ ShardId: string; SequenceNumber: string } | { error: string; message: string }> = [];
    const positions = (now: number): RecordOutcome[] =>
      outcomes.map((x) => ('error' in x ? { partition: -1, offset: '', timestamp: now } : { partition: shardNumber(x.ShardId), offset: x.SequenceNumber, timestamp: now }));
    try {
      await this.#run(op, call, async (o) => {
        const records = o.records!;
        const forwarded = keptRecords(o, records.length);
        // built from the inspected records: masked Data, PartitionKey and ExplicitHashKey
        const wire = (i: number) => forwardedEntry(list[i]!, records[i]!);
        if (!batch) {
          upstreamAnswer = await this.#upstream.call('PutRecord', wire(0));
          outcomes[0] = { ShardId: String(upstreamAnswer.ShardId ?? ''), SequenceNumber: String(upstreamAnswer.SequenceNumber ?? '') };
          return { records: positions(Date.now()) };
        }
        const { Records: _omit, ...rest } = call.body;
        upstreamAnswer = await this.#upstream.call('PutRecords', { ...rest, Records: forwarded.map(wire) });
        const results = Array.isArray(upstreamAnswer.Records) ? (upstreamAnswer.Records as Body[]) : [];
        if (results.length !== forwarded.length) throw new GatewayError('upstream-error', `the upstream answered ${results.length} record results for ${forwarded.length} records`);
        const now = Date.now();
        for (const [i, refused] of o.refusals ?? []) outcomes[i] = { error: 'InvalidArgumentException', message: refused.message };
        forwarded.forEach((i, j) => {
          const r = results[j]!;
          // (Kinesis' ErrorMessage is not passed on, like its error messages: the code says it)
          outcomes[i] = typeof r.ErrorCode === 'string'
            ? { error: errorType(r.ErrorCode), message: `the Kinesis endpoint did not store this record (${errorType(r.ErrorCode)})` }
            : { ShardId: String(r.ShardId ?? ''), SequenceNumber: String(r.SequenceNumber ?? '') };
        });
        const failed = outcomes.filter((x) => 'error' in x).length;
        if (failed > 0) {
          o.meta.failed_records = failed;
          o.meta.record_errors = outcomes.flatMap((x, i) => ('error' in x ? [`${i}:${o.refusals?.get(i)?.rule ?? x.error}`] : [])).join(',').slice(0, 2000);
        }
        // aligned with the records (audit offsets): a refused or failed record has no position (-1:)
        return { records: positions(now) };
      });
    } catch (err) {
      // PutRecords answers per record even when every record was refused by the gateway
      const perRecord = err instanceof GatewayError && (err.kind === 'blocked' || err.kind === 'too-large' || (err.kind === 'invalid' && err.rule?.startsWith('schema.') === true));
      if (batch && perRecord && op.refusals?.size) {
        const records = op.records.map((_r, i) => ({ ErrorCode: 'InvalidArgumentException', ErrorMessage: op.refusals!.get(i)?.message ?? err.message }));
        return { status: 200, body: { FailedRecordCount: records.length, Records: records }, requestId: op.id };
      }
      return errorAnswer(err, op.id);
    }
    if (!batch) {
      return { status: 200, body: upstreamAnswer, requestId: op.id };
    }
    const records = outcomes.map((x) => ('error' in x ? { ErrorCode: x.error, ErrorMessage: x.message } : x));
    const failed = records.filter((r) => 'ErrorCode' in r).length;
    return {
      status: 200,
      body: { FailedRecordCount: failed, Records: records, ...(upstreamAnswer.EncryptionType ? { EncryptionType: upstreamAnswer.EncryptionType } : {}) },
      requestId: op.id,
    };
  }

  /** `named`: the stream of the request's StreamARN, when it has one (it must be the iterator's). */
  async #getRecords(call: Call, named: string | undefined): Promise<Answer> {
    const iterator = call.body.ShardIterator;
    if (typeof iterator !== 'string' || iterator.length === 0) {
      return this.#refuseCall(call, 'consume', kinesisRefusal('invalid', 'ValidationException', 'ShardIterator is required'));
    }
    const bound = this.#tokens.unwrap(iterator);
    if (!bound) {
      return this.#refuseCall(call, 'consume', kinesisRefusal('invalid', 'ExpiredIteratorException', 'the shard iterator was not issued by this gateway or has expired; get a new one'));
    }
    if (named !== undefined && named !== bound.stream) {
      return this.#refuseCall(call, 'consume', kinesisRefusal('invalid', 'InvalidArgumentException', `the shard iterator belongs to stream "${bound.stream}", not to "${named}"`));
    }
    const partition = shardNumber(bound.shard);
    const op = this.#newOp(call, 'consume', bound.stream);
    if (partition >= 0) op.resource.partition = partition;
    op.meta.shard = bound.shard;
    let answer: Body = {};
    let decoded: StreamRecord[] = [];
    let inspectSeparately = false;
    const outcomes = () => decoded.map((r) => ({ partition, offset: r.offset ?? '', timestamp: r.timestamp ?? 0 }));
    try {
      await this.#run(op, call, async (o) => {
        answer = await this.#upstream.call('GetRecords', { ...call.body, ShardIterator: bound.upstream });
        decoded = decodeRecords(answer.Records, partition);
        const identity = o.identity!;
        // consume-side rules (or recording) for this reader: a second operation carries the
        // records through the chain so the inspect control masks them before delivery
        inspectSeparately = decoded.length > 0 && this.#dispatcher.needs({ protocol: 'kinesis', action: 'consume', resource: o.resource, identity }).records !== 'none';
        if (inspectSeparately) return {};
        // an idle poll (no records) is not audited, like an empty Kafka fetch
        if (decoded.length === 0) {
          o.batch = { records: 0, bytes: 0, hash: '' };
          return {};
        }
        o.records = decoded;
        return { records: outcomes() };
      });
      if (inspectSeparately) {
        const inspected = this.#newOp(call, 'consume', bound.stream);
        if (partition >= 0) inspected.resource.partition = partition;
        inspected.identity = op.identity!;
        inspected.meta.shard = bound.shard;
        inspected.meta.inspect_roles = op.identity!.roles.join(',');
        inspected.records = decoded;
        await this.#run(inspected, call, async () => ({ records: outcomes() }));
      }
    } catch (err) {
      // fail closed: records whose inspection failed are not delivered
      return errorAnswer(err, op.id);
    }
    const records = Array.isArray(answer.Records) ? (answer.Records as Body[]) : [];
    const out: Body = {
      ...answer,
      Records: records.map((r, i) => deliveredRecord(r, decoded[i])),
    };
    if (typeof answer.NextShardIterator === 'string') out.NextShardIterator = this.#tokens.wrap(bound.stream, bound.shard, answer.NextShardIterator);
    return { status: 200, body: out, requestId: op.id };
  }
}

/** What a Kinesis session is keyed by: the access key id of a SigV4 request, the bearer token, or nothing. */
function credentialKey(authorization: string | undefined): string {
  if (!authorization) return '';
  if (authorization.startsWith('Bearer ')) return authorization.slice(7).trim();
  return /Credential=([^/,\s]+)\//.exec(authorization)?.[1] ?? '';
}

/** The access key id an AWS4-HMAC-SHA256 Authorization header names, when it has the shape of one (for the audit row of a refusal). */
function claimedAccessKey(authorization: string | undefined): string | undefined {
  const id = /Credential=([^/,\s]+)\//.exec(authorization ?? '')?.[1];
  return id !== undefined && /^[A-Z0-9]{1,128}$/.test(id) ? id : undefined;
}

/** SigV4: the access key must be the one derived from the just-in-time credential the session token proved. */
function sigv4Refusal(f: SigV4Failure): GatewayError {
  return kinesisRefusal('unauthenticated', f.error, f.message);
}

function errorAnswer(err: unknown, requestId: string): Answer {
  const e = kinesisErrorFor(err);
  return { status: e.status, error: { type: e.type, message: e.message }, requestId };
}

function send(res: Res, answer: Answer, close = false): void {
  if (res.headersSent || res.destroyed) return;
  const payload = JSON.stringify('error' in answer ? { __type: answer.error.type, message: answer.error.message } : answer.body);
  const headers: Record<string, string | number> = { 'content-type': JSON_11, 'content-length': Buffer.byteLength(payload), 'x-amzn-requestid': answer.requestId };
  if ('error' in answer) headers['x-amzn-errortype'] = answer.error.type;
  if (close && 'req' in res && (res as ServerResponse).req.httpVersionMajor === 1) headers.connection = 'close';
  (res as ServerResponse).writeHead(answer.status, headers);
  res.end(payload);
}

/**
 * The whole body; 'too-large' when it is over `max` bytes (then it is not read further), or
 * 'failed' when the connection broke before its end. Called once the caller is authenticated:
 * a client waiting for 100 Continue is told to send now.
 */
function readBody(req: Req, res: Res, max: number): Promise<Uint8Array | 'too-large' | 'failed'> {
  if (expectsContinue(req.headers)) res.writeContinue();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > max) {
        req.removeAllListeners('data');
        req.pause();
        resolve('too-large');
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    // (what broke is the connection, not the body: nothing of it is worth an error text)
    req.once('error', () => resolve('failed'));
    req.once('aborted', () => resolve('failed'));
  });
}

/**
 * The stream a request names by StreamName and/or StreamARN (null counts as absent). Both are
 * forwarded, and Kinesis acts on one of them: when both are given they must name the same
 * stream, or the policy would judge one stream while the upstream writes another.
 */
function namedStream(body: Body): { stream: string } | { invalid: string; type: 'ValidationException' | 'InvalidArgumentException' } | undefined {
  let byName: string | undefined;
  let byArn: string | undefined;
  if (body.StreamName !== undefined && body.StreamName !== null) {
    if (typeof body.StreamName !== 'string' || !STREAM_NAME.test(body.StreamName)) return { invalid: 'StreamName must match [a-zA-Z0-9_.-]{1,128}', type: 'ValidationException' };
    byName = body.StreamName;
  }
  if (body.StreamARN !== undefined && body.StreamARN !== null) {
    const arn = typeof body.StreamARN === 'string' ? STREAM_ARN.exec(body.StreamARN) : null;
    if (!arn) return { invalid: 'StreamARN must be arn:aws:kinesis:<region>:<account>:stream/<name>', type: 'ValidationException' };
    byArn = arn[1]!;
  }
  if (byName !== undefined && byArn !== undefined && byName !== byArn) {
    return { invalid: `StreamName "${byName}" and StreamARN (stream "${byArn}") name different streams`, type: 'InvalidArgumentException' };
  }
  const stream = byName ?? byArn;
  return stream === undefined ? undefined : { stream };
}

/** Why PutRecord(s) entries are malformed, or undefined when they are fine. */
function validateEntries(entries: unknown, batch: boolean): string | undefined {
  if (!Array.isArray(entries)) return 'Records must be a list';
  if (batch && (entries.length < 1 || entries.length > MAX_PUT_RECORDS)) return `Records must hold 1 to ${MAX_PUT_RECORDS} entries`;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as Body | null;
    const where = batch ? `Records[${i}].` : '';
    if (e === null || typeof e !== 'object') return `${where.slice(0, -1) || 'the body'} must be an object`;
    if (typeof e.Data !== 'string' || e.Data.length % 4 !== 0 || !BASE64.test(e.Data)) return `${where}Data must be base64`;
    if (typeof e.PartitionKey !== 'string' || e.PartitionKey.length < 1 || e.PartitionKey.length > 256) return `${where}PartitionKey must be 1 to 256 characters`;
    if (e.ExplicitHashKey !== undefined && (typeof e.ExplicitHashKey !== 'string' || !/^\d{1,39}$/.test(e.ExplicitHashKey))) return `${where}ExplicitHashKey must be a decimal number`;
  }
  return undefined;
}

function decodeRecords(raw: unknown, partition: number): StreamRecord[] {
  if (!Array.isArray(raw)) return [];
  return (raw as Body[]).map((r) => {
    const arrival = Number(r.ApproximateArrivalTimestamp);
    return {
      key: typeof r.PartitionKey === 'string' ? Buffer.from(r.PartitionKey) : null,
      value: Buffer.from(typeof r.Data === 'string' ? r.Data : '', 'base64'),
      headers: [],
      partition,
      ...(Number.isFinite(arrival) ? { timestamp: Math.round(arrival * 1000) } : {}),
      offset: String(r.SequenceNumber ?? ''),
    };
  });
}

/** shardId-000000000003 -> 3 (the Operation's partition); -1 when it is not that shape */
function shardNumber(shard: unknown): number {
  const m = typeof shard === 'string' ? /(\d+)$/.exec(shard) : null;
  return m ? Number(m[1]) : -1;
}
