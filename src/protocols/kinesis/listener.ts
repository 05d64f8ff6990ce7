import { timingSafeEqual } from 'node:crypto';
import { createServer as createHttp1Server, type IncomingMessage, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { createSecureServer, createServer as createHttp2Server, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { KinesisListenerConfig, KinesisUpstreamConfig } from '../../config/schema.ts';
import type { Dispatcher } from '../../gateway.ts';
import { accessKeyIdFor } from '../../jit/access-keys.ts';
import { GatewayError, type Action, type Operation, type RecordOutcome, type Session, type StreamRecord, type UpstreamResult } from '../../operation.ts';
import type { StateStore } from '../../state/store.ts';
import { KinesisUpstream } from '../../upstream/kinesis.ts';
import { kinesisErrorFor, kinesisRefusal } from './errors.ts';
import { isSigV4, SigV4Verifier, type SigV4Failure, type VerifiedSignature } from './sigv4.ts';
import { KinesisSessions } from './sessions.ts';
import { TokenBinder } from './tokens.ts';

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

interface Call {
  session: Session;
  api: string;
  body: Body;
  /** set when the request was SigV4-signed (the JIT access key must match the identity) */
  signature: VerifiedSignature | undefined;
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
  readonly #upstream: KinesisUpstream;
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
    upstream: KinesisUpstreamConfig,
    dispatcher: Dispatcher,
    log: Logger,
    connections?: { opened(listener: string): void; closed(listener: string): void },
    shared?: Pick<StateStore, 'setIfAbsent'>,
  ) {
    this.#config = config;
    this.#dispatcher = dispatcher;
    this.#log = log;
    this.#connections = connections;
    this.#upstream = new KinesisUpstream(upstream);
    this.#tokens = new TokenBinder(config.iteratorSecret);
    this.#sessions = new KinesisSessions(dispatcher);
    this.#verifier = new SigV4Verifier({
      secretFor: (id) => dispatcher.sigv4Secret?.(id),
      maxSkewSeconds: config.maxClockSkewSeconds,
      service: 'kinesis',
      ...(shared ? { remember: (signature: string, ttlMs: number) => shared.setIfAbsent(`kinesis:sigv4:${signature}`, '1', ttlMs) } : {}),
    });
    const handler = (req: Req, res: Res) => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#log.error({ err }, 'kinesis request failed');
        if (!res.headersSent) send(res, { status: 500, error: { type: 'InternalFailure', message: 'internal error' }, requestId: '' });
      });
    };
    // HTTP/2's default 64 KiB flow-control windows would stall a PutRecords body of a few
    // hundred KiB on WINDOW_UPDATE round trips: open them to the body limit up front
    const window = Math.min(2 ** 31 - 1, Math.max(65_535, config.maxBodyBytes));
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
      const secure = createSecureServer({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key), allowHTTP1: true, settings: { initialWindowSize: window } }, handler);
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
    const h2 = createHttp2Server({ settings: { initialWindowSize: window } }, handler);
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
    await this.#upstream.close();
  }

  ready(): Promise<boolean> {
    return this.#upstream.ready();
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
    const fail = (err: GatewayError) => this.#refuse(session, api, action, err, presented);

    const body = await readBody(req, this.#config.maxBodyBytes);
    if (body === undefined) {
      send(res, await fail(kinesisRefusal('too-large', 'SerializationException', `the request body is over ${this.#config.maxBodyBytes} bytes`, 413)), true);
      return;
    }
    if (req.method !== 'POST') return send(res, await fail(kinesisRefusal('invalid', 'UnknownOperationException', `${req.method} is not a Kinesis API call`)));
    if (!api || !(api in ACTIONS)) {
      return send(res, await fail(kinesisRefusal('invalid', 'UnknownOperationException', target ? `${target} is not served by the gateway` : 'X-Amz-Target is missing')));
    }
    const contentType = String(req.headers['content-type'] ?? '');
    if (contentType.startsWith('application/x-amz-cbor')) {
      return send(res, await fail(kinesisRefusal('invalid', 'SerializationException', 'CBOR is not accepted: use JSON 1.1 (AWS SDK for Java: -Daws.cborEnabled=false or AWS_CBOR_DISABLE=true)')));
    }

    // who is calling: SigV4 over a just-in-time key, or a bearer JWT
    let signature: VerifiedSignature | undefined;
    let token: string;
    if (isSigV4(authorization)) {
      const headers = req.headers as Record<string, string | string[] | undefined>;
      const verified = await this.#verifier.verify({ method: req.method ?? 'POST', path: req.url ?? '/', headers, body });
      if ('error' in verified) return send(res, await fail(sigv4Refusal(verified)));
      if (!verified.sessionToken) {
        return send(res, await fail(kinesisRefusal('unauthenticated', 'UnrecognizedClientException', 'a just-in-time access key needs its session token (X-Amz-Security-Token)')));
      }
      signature = verified;
      token = verified.sessionToken;
    } else if (authorization?.startsWith('Bearer ')) {
      token = authorization.slice('Bearer '.length).trim();
    } else {
      return send(res, await fail(kinesisRefusal('unauthenticated', 'MissingAuthenticationTokenException', 'Missing Authentication Token: sign with a just-in-time access key or send Authorization: Bearer <JWT>')));
    }

    let parsed: Body;
    try {
      const value: unknown = body.byteLength === 0 ? {} : JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
      parsed = value as Body;
    } catch {
      return send(res, await fail(kinesisRefusal('invalid', 'SerializationException', 'the request body is not a JSON object')));
    }

    const call: Call = { session, api, body: parsed, signature };
    let answer: Answer;
    try {
      answer = await this.#dispatch(call, token);
    } catch (err) {
      answer = errorAnswer(err, '');
    }
    send(res, answer);
  }

  /** Audits a request refused before it became an operation of its own, and builds the answer. */
  async #refuse(session: Session, api: string, action: Action, err: GatewayError, token?: string): Promise<Answer> {
    const op = this.#dispatcher.newOperation(session, action, { kind: 'stream', name: '' });
    op.meta.api = api || 'unknown';
    // with a token the row names who tried (the token is verified first); the answer is this error
    if (token) op.credential = { scheme: 'bearer', token };
    await this.#dispatcher.refuse(op, err).catch(() => {});
    return errorAnswer(err, op.id);
  }

  #newOp(call: Call, action: Action, stream: string, token: string): Operation {
    const op = this.#dispatcher.newOperation(call.session, action, { kind: 'stream', name: stream });
    op.meta.api = call.api;
    op.meta.auth = call.signature ? 'sigv4' : 'bearer';
    if (call.signature) {
      op.meta.access_key = call.signature.accessKeyId;
      op.meta.region = call.signature.region;
    }
    op.credential = { scheme: 'bearer', token };
    return op;
  }

  /** SigV4: the access key must be the one derived from the credential the session token proves. */
  #checkKey(op: Operation, call: Call): void {
    if (!call.signature) return;
    const credentialId = op.identity?.credentialId;
    const expected = Buffer.from(credentialId ? accessKeyIdFor(credentialId) : '');
    const actual = Buffer.from(call.signature.accessKeyId);
    if (!credentialId || expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
      throw kinesisRefusal('unauthenticated', 'UnrecognizedClientException', 'the access key does not belong to the credential in X-Amz-Security-Token');
    }
  }

  /** Runs one operation through the controls chain with `forward` as its terminal; maps its failure to a Kinesis error. */
  async #run(op: Operation, call: Call, forward: (op: Operation) => Promise<UpstreamResult>): Promise<string> {
    try {
      await this.#dispatcher.run(op, (o) => {
        this.#checkKey(o, call);
        return forward(o);
      });
    } finally {
      this.#sessions.expires(op.session, op.identity?.expiresAt);
    }
    return op.id;
  }

  async #dispatch(call: Call, token: string): Promise<Answer> {
    const { api, body } = call;
    if (api === 'ListStreams') return this.#listStreams(call, token);
    if (api === 'GetRecords') return this.#getRecords(call, token);
    const named = streamOf(body);
    const stream = named ?? (api === 'ListShards' && typeof body.NextToken === 'string' ? this.#tokens.unwrap(body.NextToken)?.stream : undefined);
    const action = ACTIONS[api]!;
    if (!stream) {
      const why = api === 'ListShards' && body.NextToken !== undefined ? 'NextToken was not issued by this gateway (or has expired)' : 'StreamName (or StreamARN) is required and must match [a-zA-Z0-9_.-]{1,128}';
      return this.#refuse(call.session, api, action, kinesisRefusal('invalid', api === 'ListShards' && body.NextToken !== undefined ? 'ExpiredNextTokenException' : 'ValidationException', why), token);
    }
    if (api === 'PutRecord' || api === 'PutRecords') return this.#put(call, stream, token);

    const op = this.#newOp(call, action, stream, token);
    const out = { ...body };
    if (api === 'ListShards' && typeof body.NextToken === 'string') out.NextToken = this.#tokens.unwrap(body.NextToken)!.upstream;
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
  async #listStreams(call: Call, token: string): Promise<Answer> {
    const op = this.#newOp(call, 'describe', '*', token);
    op.meta.listing = 'true';
    let identity;
    try {
      identity = await this.#dispatcher.login(op);
      this.#sessions.expires(op.session, identity.expiresAt);
      this.#checkKey(op, call);
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

  async #put(call: Call, stream: string, token: string): Promise<Answer> {
    const batch = call.api === 'PutRecords';
    const entries = batch ? call.body.Records : [call.body];
    const invalid = validateEntries(entries, batch);
    if (invalid) return this.#refuse(call.session, call.api, 'produce', kinesisRefusal('invalid', 'ValidationException', invalid), token);
    const list = entries as Body[];
    const op = this.#newOp(call, 'produce', stream, token);
    op.records = list.map((e) => ({ key: Buffer.from(String(e.PartitionKey)), value: Buffer.from(String(e.Data), 'base64'), headers: [] }));
    if (batch) op.recordErrors = [];
    let upstreamAnswer: Body = {};
    // per record, in the client's order: where the upstream stored it, or why it failed
    const outcomes: Array<{ ShardId: string; SequenceNumber: string } | { error: string; message: string }> = [];
    const positions = (now: number): RecordOutcome[] =>
      outcomes.map((x) => ('error' in x ? { partition: -1, offset: '', timestamp: now } : { partition: shardNumber(x.ShardId), offset: x.SequenceNumber, timestamp: now }));
    try {
      await this.#run(op, call, async (o) => {
        const records = o.records!;
        const forwarded: number[] = [];
        for (let i = 0; i < records.length; i++) if (!o.recordErrors?.[i]) forwarded.push(i);
        const wire = (i: number) => {
          const e = list[i]!;
          const r = records[i]!;
          return { ...e, Data: Buffer.from(r.value ?? new Uint8Array(0)).toString('base64') };
        };
        if (!batch) {
          upstreamAnswer = await this.#upstream.call('PutRecord', { ...call.body, Data: wire(0).Data });
          outcomes[0] = { ShardId: String(upstreamAnswer.ShardId ?? ''), SequenceNumber: String(upstreamAnswer.SequenceNumber ?? '') };
          return { records: positions(Date.now()) };
        }
        const { Records: _omit, ...rest } = call.body;
        upstreamAnswer = await this.#upstream.call('PutRecords', { ...rest, Records: forwarded.map(wire) });
        const results = Array.isArray(upstreamAnswer.Records) ? (upstreamAnswer.Records as Body[]) : [];
        if (results.length !== forwarded.length) throw new GatewayError('upstream-error', `the upstream answered ${results.length} record results for ${forwarded.length} records`);
        const now = Date.now();
        for (let i = 0; i < records.length; i++) {
          const refused = o.recordErrors?.[i];
          if (refused) outcomes[i] = { error: 'InvalidArgumentException', message: refused.message };
        }
        forwarded.forEach((i, j) => {
          const r = results[j]!;
          outcomes[i] = typeof r.ErrorCode === 'string'
            ? { error: r.ErrorCode, message: String(r.ErrorMessage ?? '') }
            : { ShardId: String(r.ShardId ?? ''), SequenceNumber: String(r.SequenceNumber ?? '') };
        });
        const failed = outcomes.filter((x) => 'error' in x).length;
        if (failed > 0) {
          o.meta.failed_records = failed;
          o.meta.record_errors = outcomes.flatMap((x, i) => ('error' in x ? [`${i}:${o.recordErrors?.[i]?.rule ?? x.error}`] : [])).join(',').slice(0, 2000);
        }
        // aligned with the records (audit offsets): a refused or failed record has no position (-1:)
        return { records: positions(now) };
      });
    } catch (err) {
      // PutRecords answers per record even when every record was refused by the gateway
      if (batch && err instanceof GatewayError && (err.kind === 'blocked' || err.kind === 'too-large') && op.recordErrors?.length) {
        const records = op.records.map((_r, i) => ({ ErrorCode: 'InvalidArgumentException', ErrorMessage: op.recordErrors![i]?.message ?? err.message }));
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

  async #getRecords(call: Call, token: string): Promise<Answer> {
    const iterator = call.body.ShardIterator;
    if (typeof iterator !== 'string' || iterator.length === 0) {
      return this.#refuse(call.session, 'GetRecords', 'consume', kinesisRefusal('invalid', 'ValidationException', 'ShardIterator is required'), token);
    }
    const bound = this.#tokens.unwrap(iterator);
    if (!bound) {
      return this.#refuse(call.session, 'GetRecords', 'consume', kinesisRefusal('invalid', 'ExpiredIteratorException', 'the shard iterator was not issued by this gateway or has expired; get a new one'), token);
    }
    const partition = shardNumber(bound.shard);
    const op = this.#newOp(call, 'consume', bound.stream, token);
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
        inspectSeparately = decoded.length > 0 && (this.#dispatcher.inspects?.(bound.stream, 'consume', identity.roles) === true || this.#dispatcher.records?.(bound.stream, 'consume', identity) === true);
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
        const inspected = this.#newOp(call, 'consume', bound.stream, token);
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
      Records: records.map((r, i) => ({ ...r, Data: Buffer.from(decoded[i]?.value ?? new Uint8Array(0)).toString('base64') })),
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

/** The whole body, or undefined when it is over `max` bytes (then it is not read further). */
function readBody(req: Req, max: number): Promise<Uint8Array | undefined> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > max) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > max) {
        req.removeAllListeners('data');
        req.pause();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

function streamOf(body: Body): string | undefined {
  if (typeof body.StreamName === 'string') return STREAM_NAME.test(body.StreamName) ? body.StreamName : undefined;
  if (typeof body.StreamARN === 'string') return STREAM_ARN.exec(body.StreamARN)?.[1];
  return undefined;
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
