import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.ts';
import type { AuditRow } from '../audit/row.ts';
import type { Identity } from '../operation.ts';

/** What the erasure API needs from the gateway. */
export interface DataSubjectApiDeps {
  identify(token: string): Promise<Identity>;
  /** whether the identity may erase data subjects (admin on the cluster) */
  mayErase(identity: Identity): boolean;
  /** erases the subject's key everywhere; null when no rule names a data subject */
  erase(subject: string): Promise<{ sid: string; existed: boolean } | null>;
  record(fields: Partial<AuditRow>): Promise<void>;
}

const MAX_BODY = 16 * 1024;

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(text);
};

/**
 * `POST /v1/data-subjects/erase` on the admin listener, body `{"subject": "...", "reason": "..."}`:
 * crypto-shredding of one data subject (src/protect/subjects.ts). Needs an identity-provider token
 * with admin on the cluster. The audit row (`subject-erase`) names the subject by its id, never by
 * the value erased, so the trail does not keep what the erasure removes.
 */
export function dataSubjectRoutes(deps: DataSubjectApiDeps, log: Logger): (req: IncomingMessage, res: ServerResponse) => boolean {
  const alog = log.child({ listener: 'admin', api: 'data-subjects' });
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/v1/data-subjects/erase') return false;
    handle(req, res).catch((err: unknown) => {
      alog.error({ err }, 'data subject erasure failed');
      if (!res.headersSent) json(res, 500, { error: 'internal', message: 'the erasure failed; retry (nothing was audited as erased)' });
      else res.destroy();
    });
    return true;
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') return json(res, 405, { error: 'method-not-allowed', message: 'POST only' }, { allow: 'POST' });
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    let caller: Identity;
    try {
      if (!m) throw new Error('an identity provider token is required (Authorization: Bearer <JWT>)');
      caller = await deps.identify(m[1]!);
    } catch (err) {
      return json(res, 401, { error: 'unauthenticated', message: (err as Error).message }, { 'www-authenticate': 'Bearer realm="streamgate-admin"' });
    }
    let body: { subject?: unknown; reason?: unknown };
    try {
      body = JSON.parse(await readBody(req)) as typeof body;
    } catch (err) {
      return json(res, 400, { error: 'invalid', message: `the body is not a JSON object with "subject": ${(err as Error).message}` });
    }
    const subject = typeof body?.subject === 'string' || typeof body?.subject === 'number' ? String(body.subject) : '';
    const reason = typeof body?.reason === 'string' ? body.reason.slice(0, 500) : '';
    if (subject === '' || subject.length > 1024) return json(res, 400, { error: 'invalid', message: '"subject" is the data subject\'s value (the field a rule names), 1-1024 characters' });
    const who: Partial<AuditRow> = { subject: caller.subject, issuer: caller.issuer, groups: caller.groups, roles: caller.roles, action: 'erase', resource_kind: 'data-subject', meta: { client_address: req.socket.remoteAddress ?? '' } };
    if (!deps.mayErase(caller)) {
      await deps.record({ ...who, decision: 'deny', reason: 'forbidden', message: `${caller.subject} may not erase data subjects (admin on the cluster)` });
      return json(res, 403, { error: 'forbidden', message: `${caller.subject} may not erase data subjects` });
    }
    const erased = await deps.erase(subject);
    if (!erased) return json(res, 404, { error: 'not-found', message: 'no inspection rule encrypts under data subjects\' keys (encrypt {subject})' });
    await deps.record({ ...who, resource: erased.sid, decision: 'allow', message: reason || (erased.existed ? 'erased' : 'no key existed for this subject') });
    json(res, 200, { erased: erased.existed, subjectId: erased.sid });
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new Error(`the body exceeds ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
