import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import type { Logger } from '../log.ts';
import { GatewayError, type Action, type ClientInfo, type Identity, type Next, type Operation, type Protocol, type Resource, type Session, type UpstreamResult } from '../operation.ts';
import type { RecordingRow } from './ddl.ts';
import { completeLines, listRecordingSegments } from './segments.ts';

const gunzipAsync = promisify(gunzip);
const ITEM = /^\/v1\/sessions\/([A-Za-z0-9-]{1,64})\/records$/;

/** What the sessions API needs from the gateway. */
export interface SessionApiDeps {
  dir: string;
  identify(token: string): Promise<Identity>;
  permits(identity: Identity, action: Action, resource: Resource): boolean;
  newSession(protocol: Protocol, client: ClientInfo): Session;
  newOperation(session: Session, action: Action, resource: Resource): Operation;
  run(op: Operation, forward?: Next): Promise<UpstreamResult>;
  endSession(session: Session): void;
}

/** Every recorded row, read without blocking the event loop (files and gunzip off the accept thread). */
async function readRows(dir: string, filter: (line: string) => boolean): Promise<RecordingRow[]> {
  const rows: RecordingRow[] = [];
  for (const segment of listRecordingSegments(dir)) {
    let data: Buffer;
    try {
      data = await gunzipAsync(await readFile(segment), { finishFlush: 2 /* Z_SYNC_FLUSH: a segment being written */ });
    } catch {
      continue;
    }
    for (const line of completeLines(data)) if (filter(line)) rows.push(JSON.parse(line) as RecordingRow);
  }
  return rows;
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
};

/**
 * Sessions on the admin listener, for a caller with a bearer token:
 *   GET /v1/sessions?identity=&topic=       recorded sessions (topics the caller may consume)
 *   GET /v1/sessions/{id}/records           the session's recorded records as NDJSON (masked values;
 *                                           raw payloads never leave through the API)
 * Reading a session's records is a consume of each of its topics: it runs through the controls
 * chain (authenticate, authorize, audit) like any read, so the caller needs consume on the topic
 * and leaves an audit row; records of topics it may not read are withheld (x-streamgate-withheld).
 */
export function sessionRoutes(deps: SessionApiDeps, log: Logger): (req: IncomingMessage, res: ServerResponse) => boolean {
  const alog = log.child({ listener: 'admin', api: 'sessions' });
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    if (url.pathname !== '/v1/sessions' && !url.pathname.startsWith('/v1/sessions/')) return false;
    handle(req, res, url).catch((err: unknown) => {
      if (err instanceof GatewayError) return json(res, err.kind === 'unauthenticated' ? 401 : err.kind === 'forbidden' ? 403 : 400, { error: err.message });
      alog.error({ err }, 'sessions API failed');
      json(res, 500, { error: 'internal error' });
    });
    return true;
  };

  async function handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (req.method !== 'GET') {
      res.setHeader('allow', 'GET');
      return json(res, 405, { error: 'use GET here' });
    }
    const auth = req.headers.authorization ?? '';
    const token = /^Bearer (\S+)$/i.exec(auth)?.[1];
    if (!token) throw new GatewayError('unauthenticated', 'a bearer token is required');
    const item = ITEM.exec(url.pathname);
    if (!item && url.pathname !== '/v1/sessions') return json(res, 404, { error: `no route for ${url.pathname}` });
    if (!item) {
      const caller = await deps.identify(token);
      const identity = url.searchParams.get('identity');
      const topic = url.searchParams.get('topic');
      const sessions = new Map<string, { session_id: string; protocol: string; subjects: Set<string>; topics: Set<string>; records: number; first: string; last: string }>();
      for (const r of await readRows(deps.dir, () => true)) {
        if (!deps.permits(caller, 'consume', { kind: 'topic', name: r.topic })) continue;
        if (topic && r.topic !== topic) continue;
        const s = sessions.get(r.session_id) ?? { session_id: r.session_id, protocol: r.protocol, subjects: new Set(), topics: new Set(), records: 0, first: r.ts, last: r.ts };
        s.subjects.add(r.subject);
        s.topics.add(r.topic);
        s.records++;
        if (r.ts < s.first) s.first = r.ts;
        if (r.ts > s.last) s.last = r.ts;
        sessions.set(r.session_id, s);
      }
      const list = [...sessions.values()]
        .filter((s) => !identity || s.subjects.has(identity))
        .sort((a, b) => (a.first < b.first ? 1 : -1))
        .map((s) => ({ ...s, subjects: [...s.subjects], topics: [...s.topics] }));
      return json(res, 200, { sessions: list });
    }
    const id = item[1]!;
    const needle = `{"session_id":${JSON.stringify(id)}`;
    const rows = (await readRows(deps.dir, (line) => line.startsWith(needle))).sort((a, b) => a.seq - b.seq);
    // one consume operation per topic through the chain: authentication, authorization and an audit row
    const session = deps.newSession('http', { address: req.socket.remoteAddress ?? '', software: String(req.headers['user-agent'] ?? '') });
    const allowed = new Set<string>();
    let refusal: GatewayError | undefined;
    try {
      for (const topic of new Set(rows.map((r) => r.topic))) {
        const op = deps.newOperation(session, 'consume', { kind: 'topic', name: topic });
        op.credential = { scheme: 'bearer', token };
        op.meta.path = `/v1/sessions/${id}/records`;
        op.meta.recorded_session = id;
        const mine = rows.filter((r) => r.topic === topic);
        op.batch = { records: mine.length, bytes: mine.reduce((n, r) => n + Buffer.byteLength(r.value ?? '', 'base64'), 0), hash: '' };
        try {
          await deps.run(op, () => Promise.resolve({}));
          allowed.add(topic);
        } catch (err) {
          if (err instanceof GatewayError && err.kind === 'unauthenticated') throw err;
          refusal ??= err instanceof GatewayError ? err : new GatewayError('internal', 'internal error');
        }
      }
      if (rows.length > 0 && allowed.size === 0) throw refusal ?? new GatewayError('forbidden', 'not allowed');
    } finally {
      deps.endSession(session);
    }
    if (rows.length === 0) {
      // authenticate before saying whether a session exists
      await deps.identify(token);
      return json(res, 404, { error: `nothing recorded for session ${id}` });
    }
    const visible = rows.filter((r) => allowed.has(r.topic));
    let body = '';
    for (const { raw: _raw, kid: _kid, ...row } of visible) body += JSON.stringify(row) + '\n';
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', 'x-streamgate-withheld': String(rows.length - visible.length) });
    res.end(body);
  }
}
