import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { HttpListenerConfig } from '../../config/schema.ts';
import { GatewayError, Refusals, type Operation, type Session } from '../../operation.ts';
import { errorBody, sendError, sendJson } from './errors.ts';
import type { Dispatcher } from '../../dispatcher.ts';
import { decodeBatch, decodeRecord, type DecodedRecord, type SchemaData } from './records.ts';
import type { SchemaRef } from '../../schemas/serializer.ts';
import { describeJsonError, expectsContinue, JSON_BYTES_PARSED_UNCOUNTED, jsonValuesOver, unreadBodyNeedsClose } from '../request-body.ts';

/**
 * The most JSON values (objects, arrays, members, elements) one request body may hold. Parse
 * time grows with them, not with bytes: at this bound the costliest shape measured (one object
 * of distinct keys) parses and re-serializes in about 40 ms, every other shape in under 10 ms,
 * where one 8 MiB body of empty objects or distinct keys kept every listener waiting for 0.5-1 s.
 */
export const MAX_JSON_VALUES = 50_000;

const ROUTE = /^\/v3\/clusters\/([^/]+)\/topics\/([^/]+)\/records(:batch)?$/;
const TOPIC = /^[A-Za-z0-9._-]{1,249}$/;

/**
 * Kafka REST Proxy v3 compatible produce API:
 *   POST /v3/clusters/{cluster_id}/topics/{topic}/records        one record
 *   POST /v3/clusters/{cluster_id}/topics/{topic}/records:batch  {"entries": [...]}, 207
 * Each request is one Operation; a batch is inspected, authorized and audited as a whole.
 */
export class HttpListener {
  readonly #config: HttpListenerConfig;
  readonly #dispatcher: Dispatcher;
  readonly #log: Logger;
  readonly #server: Server;
  readonly #sessions = new WeakMap<Socket, Session>();
  #closing = false;

  /** `connections` is told about every accepted and closed TCP connection (metrics) */
  constructor(config: HttpListenerConfig, dispatcher: Dispatcher, log: Logger, connections?: { opened(listener: string): void; closed(listener: string): void }) {
    this.#config = config;
    this.#dispatcher = dispatcher;
    this.#log = log.child({ listener: 'http' });
    this.#server = createServer(
      { keepAliveTimeout: config.keepAliveTimeoutMs, requestTimeout: config.requestTimeoutMs, headersTimeout: Math.min(config.requestTimeoutMs, 60_000) },
      (req, res) => this.#serve(req, res),
    );
    // `Expect: 100-continue` is answered by #handle once the credential is verified, so a
    // refused client never sends its body
    this.#server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => this.#serve(req, res));
    if (connections) {
      this.#server.on('connection', (socket: Socket) => {
        connections.opened('http');
        socket.once('close', () => connections.closed('http'));
      });
    }
    const max = dispatcher.limits?.().connections.max;
    if (max !== undefined) this.#server.maxConnections = max; // node closes connections over it at accept
    this.#server.on('clientError', (err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy(err);
    });
  }

  async listen(): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#config.port, this.#config.host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const addr = this.#server.address();
    if (addr === null || typeof addr === 'string') throw new Error('HTTP listener has no TCP address');
    return { host: addr.address, port: addr.port };
  }

  /**
   * Graceful drain: stop accepting, close idle keep-alive connections, answer what is in
   * flight with `Connection: close` (a busy keep-alive client would otherwise hold the
   * server open forever), and cut whatever is left after `drainMs`.
   */
  async close(drainMs = 10_000): Promise<void> {
    this.#closing = true;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => this.#server.closeAllConnections(), drainMs);
      force.unref();
      this.#server.close(() => {
        clearTimeout(force);
        resolve();
      });
      this.#server.closeIdleConnections();
    });
  }

  #serve(req: IncomingMessage, res: ServerResponse): void {
    this.#handle(req, res).catch((err: unknown) => {
      // last line of defence: a bug must cost one request, never the process
      this.#log.error({ err }, 'unhandled error in HTTP handler');
      if (!res.headersSent) sendError(res, new GatewayError('internal', 'internal error'));
      else res.destroy();
    });
  }

  #session(req: IncomingMessage): Session {
    const socket = req.socket;
    let session = this.#sessions.get(socket);
    if (!session) {
      session = this.#dispatcher.newSession('http', { address: socket.remoteAddress ?? '', software: req.headers['user-agent'] ?? '' });
      this.#sessions.set(socket, session);
      const ended = session;
      socket.once('close', () => this.#dispatcher.endSession(ended));
    }
    return session;
  }

  async #serialize(topic: string, d: DecodedRecord): Promise<void> {
    const serialize = this.#dispatcher.serializeWithSchema;
    if (!serialize) throw new GatewayError('invalid', 'this gateway has no schema registry or catalog: send type JSON, STRING or BINARY', { rule: 'schema.unavailable' });
    const { key, value } = d.withSchema!;
    for (const part of ['key', 'value'] as const) {
      const sent = part === 'key' ? key : value;
      if (!sent) continue;
      const out = await serialize.call(this.#dispatcher, topic, schemaRef(topic, part, sent.ref), sent.data, part);
      if (part === 'key') [d.record.key, d.keyType] = [out.bytes, out.format];
      else [d.record.value, d.valueType] = [out.bytes, out.format];
      // the schema named in a header (apicurio-header framing): replaces one the client sent
      if (out.header) d.record.headers = [...d.record.headers.filter(([name]) => name !== out.header![0]), out.header];
    }
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.#closing) res.setHeader('connection', 'close');
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const route = ROUTE.exec(path);
    if (!route) {
      // the gateway's own endpoints on the data port (token exchange, JWKS)
      if (this.#dispatcher.serveHttp && (await this.#dispatcher.serveHttp(req, res, path))) return;
      if (path === '/healthz' && req.method === 'GET') return sendJson(res, 200, { status: 'ok' });
      return sendError(res, new GatewayError('not-found', `no route for ${req.method} ${path}`));
    }
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return sendJson(res, 405, { error_code: 40501, message: `${req.method} is not allowed here; use POST` });
    }
    const clusterId = safeDecode(route[1]!);
    const topic = safeDecode(route[2]!);
    const batch = route[3] !== undefined;

    const op = this.#dispatcher.newOperation(this.#session(req), 'produce', { kind: 'topic', name: topic ?? route[2]! });
    op.meta.path = batch ? 'records:batch' : 'records';
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer[ ]+(\S+)\s*$/i.exec(auth);
      if (m) op.credential = { scheme: 'bearer', token: m[1]! };
    }
    // approvals: why the client asks (shown to approvers), and whether it waits or takes a 202 with a status URL
    const justification = req.headers['x-streamgate-justification'];
    if (typeof justification === 'string' && justification) op.meta.justification = justification.slice(0, 500);
    const respondAsync = /\brespond-async\b/i.test(String(req.headers.prefer ?? ''));
    if (respondAsync) op.answerWithinMs = 0;
    const gone = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    op.signal = gone.signal;

    let decoded: DecodedRecord[] | undefined;
    let ids: string[] | undefined;
    let readingBody = false;
    try {
      if (clusterId !== this.#config.clusterId) throw new GatewayError('not-found', `cluster "${clusterId}" is not served here (this gateway serves "${this.#config.clusterId}")`);
      if (topic === undefined || !TOPIC.test(topic)) throw new GatewayError('invalid', 'the topic name must be 1-249 characters of [A-Za-z0-9._-]');
      const ctype = req.headers['content-type'] ?? '';
      if (!/^application\/(?:[\w.+-]*\+)?json\b/i.test(ctype)) throw new GatewayError('invalid', 'Content-Type must be application/json');
      // the credential is in the headers: check it before reading (and parsing) any body, so
      // an anonymous client costs a token verification, not maxBodyBytes of memory and CPU
      await this.#dispatcher.authenticate(op);
      readingBody = true;
      const body = await readBody(req, res, this.#config.maxBodyBytes);
      if (body.byteLength > JSON_BYTES_PARSED_UNCOUNTED && jsonValuesOver(body, MAX_JSON_VALUES)) {
        throw new GatewayError('too-large', `the body holds more than ${MAX_JSON_VALUES} JSON values (the limit for one request)`);
      }
      let json: unknown;
      try {
        json = JSON.parse(body.toString('utf8'));
      } catch {
        // V8's message quotes the body: say where instead
        throw new GatewayError('invalid', describeJsonError('the body', body));
      }
      if (batch) {
        const entries = decodeBatch(json);
        decoded = entries;
        ids = entries.map((e) => e.id);
      } else {
        decoded = [decodeRecord(json)];
      }
      // JSON data with a registry schema: serialized and framed before any control sees the
      // record; only for a client that may write the topic (else the registry's answers would
      // tell anyone which schemas exist), the rest is refused by the chain as usual
      if (decoded.some((d) => d.withSchema) && this.#dispatcher.permits(op.identity!, 'produce', op.resource)) {
        for (const d of decoded) if (d.withSchema) await this.#serialize(topic, d);
      }
      op.records = decoded.map((d) => d.record);
      // a batch is answered per entry (207): a record refused by inspection fails alone
      if (batch) op.refusals = new Refusals<number>();
    } catch (err) {
      if (!res.headersSent) {
        // what is left of the body: a small rest is drained (the connection stays), a body over
        // the limit, or one never read because it is large or held back for 100 Continue, is
        // not: the connection closes after the answer
        if (!req.complete && (readingBody || unreadBodyNeedsClose(req.headers))) res.setHeader('connection', 'close');
        await this.#dispatcher.refuse(op, err).catch((e: unknown) => sendError(res, e));
      }
      return;
    }

    let result;
    try {
      result = await this.#dispatcher.run(op);
    } catch (err) {
      // a batch whose every record was refused alone is still answered per entry
      if (ids && op.refusals?.size && err instanceof GatewayError && (err.kind === 'blocked' || err.kind === 'too-large' || (err.kind === 'invalid' && err.rule?.startsWith('schema.') === true))) {
        return sendJson(res, 207, { successes: [], failures: [...op.refusals].sort(([x], [y]) => x - y).map(([i, e]) => ({ id: ids[i], ...errorBody(e) })) });
      }
      if (err instanceof GatewayError && err.approval?.status === 'pending' && respondAsync) {
        res.setHeader('location', err.approval.url);
        res.setHeader('preference-applied', 'respond-async');
        return sendJson(res, 202, { error_code: 202, message: err.message, approval: err.approval });
      }
      return sendError(res, err);
    }
    const outcomes = result.records ?? [];
    const entries = decoded.map((d, i) => {
      const o = outcomes[i];
      return {
        error_code: 200,
        cluster_id: clusterId,
        topic_name: topic,
        partition_id: o?.partition ?? -1,
        offset: o ? Number(o.offset) : -1,
        timestamp: new Date(o?.timestamp ?? Date.now()).toISOString(),
        key: d.keyType === null ? null : { type: d.keyType, size: d.record.key?.byteLength ?? 0 },
        value: d.valueType === null ? null : { type: d.valueType, size: d.record.value?.byteLength ?? 0 },
      };
    });
    if (ids) {
      const refusals = op.refusals;
      sendJson(res, 207, {
        successes: entries.flatMap((e, i) => (refusals?.has(i) ? [] : [{ id: ids[i], ...e }])),
        failures: [...(refusals ?? [])].sort(([a], [b]) => a - b).map(([i, err]) => ({ id: ids[i], ...errorBody(err) })),
      });
    } else {
      sendJson(res, 200, entries[0]);
    }
  }
}

function schemaRef(topic: string, part: 'key' | 'value', ref: SchemaData['ref']): SchemaRef {
  if ('schemaId' in ref) return ref;
  if (ref.subject !== null) return { subject: ref.subject, version: ref.version };
  return ref.version === 'latest' ? { strategy: 'TOPIC_NAME', topic, part } : { subject: `${topic}-${part}`, version: ref.version };
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

function readBody(req: IncomingMessage, res: ServerResponse, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) {
    req.resume(); // drain what is in flight; the connection closes after the answer
    return Promise.reject(new GatewayError('too-large', `the body is ${declared} bytes; the limit is ${limit}`));
  }
  if (expectsContinue(req.headers)) res.writeContinue();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new GatewayError('too-large', `the body exceeds the limit of ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
    // (the stream's error describes the connection, never the body: say how far it got)
    req.on('error', () => reject(new GatewayError('invalid', `the request body could not be read (the connection failed after ${size} bytes)`)));
  });
}


