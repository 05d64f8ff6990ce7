import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Identity } from '../operation.ts';
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from './page.ts';
import { ApprovalApiError, type ApprovalRequest, type ApprovalService, type ApprovalStatus } from './service.ts';

const STATUSES = new Set<ApprovalStatus>(['pending', 'approved', 'denied', 'expired']);
const ITEM = /^\/v1\/approvals\/([0-9a-f-]{36})(?:\/(approve|deny))?$/;
const MAX_BODY = 16 * 1024;

/** The page's own files only: no inline script or style, no other origin, no framing. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * The approvers' interface on the admin listener:
 *   GET  /v1/approvals[?status=pending]        requests the caller may decide or made
 *   GET  /v1/approvals/<id>                      one request (also the requester's status URL)
 *   POST /v1/approvals/<id>/approve|deny         {"reason": "..."}
 *   GET  /approvals                              the web page (its script and style beside it)
 * The API takes the approver's OIDC token as a bearer token; the page keeps it in the
 * tab's sessionStorage and sends it the same way (no cookies, so no cross-site requests).
 */
export function approvalRoutes(service: ApprovalService, identify: (token: string) => Promise<Identity>, log: Logger): (req: IncomingMessage, res: ServerResponse) => boolean {
  const alog = log.child({ listener: 'admin', api: 'approvals' });
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path === '/approvals' || path === '/approvals/') return page(req, res, 'text/html; charset=utf-8', PAGE_HTML);
    if (path === '/approvals/app.js') return page(req, res, 'text/javascript; charset=utf-8', PAGE_JS);
    if (path === '/approvals/app.css') return page(req, res, 'text/css; charset=utf-8', PAGE_CSS);
    if (path === '/favicon.ico') {
      // browsers ask for it with every page; an empty answer keeps their consoles clean
      res.writeHead(204, { 'cache-control': 'max-age=86400' }).end();
      return true;
    }
    if (path !== '/v1/approvals' && !path.startsWith('/v1/approvals/')) return false;
    handle(req, res, path).catch((err: unknown) => {
      if (err instanceof ApprovalApiError) return json(res, err.status, { error: err.message });
      alog.error({ err }, 'approvals API failed');
      json(res, 500, { error: 'internal error' });
    });
    return true;
  };

  async function handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const item = ITEM.exec(path);
    const verb = item?.[2] as 'approve' | 'deny' | undefined;
    if (path !== '/v1/approvals' && !item) throw new ApprovalApiError(404, `no route for ${path}`);
    const method = verb ? 'POST' : 'GET';
    if (req.method !== method && !(method === 'GET' && req.method === 'HEAD')) {
      res.setHeader('allow', method);
      throw new ApprovalApiError(405, `use ${method} here`);
    }
    const caller = await authenticate(req, res);
    if (!item) {
      const status = new URL(req.url ?? '/', 'http://x').searchParams.get('status') ?? undefined;
      if (status !== undefined && !STATUSES.has(status as ApprovalStatus)) throw new ApprovalApiError(400, `status must be one of ${[...STATUSES].join(', ')}`);
      const visible = (await service.list(status as ApprovalStatus | undefined)).filter((r) => mayDecide(caller, r) || isRequester(caller, r));
      return json(res, 200, { approvals: visible.map((r) => view(r, caller)) });
    }
    const id = item[1]!;
    if (!verb) {
      const request = await service.get(id);
      if (!request || !(mayDecide(caller, request) || isRequester(caller, request))) throw new ApprovalApiError(404, `no approval request ${id}`);
      return json(res, 200, view(request, caller));
    }
    const body = await readJson(req);
    const reason = typeof body.reason === 'string' ? body.reason.trim().slice(0, 1000) : '';
    if (verb === 'deny' && !reason) throw new ApprovalApiError(400, 'a denial needs a reason: {"reason": "..."}');
    const decided = await service.decide(id, caller, verb, reason);
    alog.info({ approval: id, verdict: verb, approver: caller.subject }, 'approval decided');
    return json(res, 200, view(decided, caller));
  }

  async function authenticate(req: IncomingMessage, res: ServerResponse): Promise<Identity> {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m) {
      res.setHeader('www-authenticate', 'Bearer realm="streamgate-approvals"');
      throw new ApprovalApiError(401, 'an OIDC bearer token is required (Authorization: Bearer <JWT>)');
    }
    try {
      return await identify(m[1]!);
    } catch (err) {
      res.setHeader('www-authenticate', 'Bearer realm="streamgate-approvals", error="invalid_token"');
      throw new ApprovalApiError(401, `the token was not accepted: ${(err as Error).message}`);
    }
  }

  function view(r: ApprovalRequest, caller: Identity) {
    return { ...r, url: service.url(r.id), canDecide: r.status === 'pending' && mayDecide(caller, r) && !isRequester(caller, r) };
  }
}

const mayDecide = (caller: Identity, r: ApprovalRequest) => caller.roles.some((role) => r.approvers.includes(role));
const isRequester = (caller: Identity, r: ApprovalRequest) => caller.subject === r.subject && caller.issuer === r.issuer;

function page(req: IncomingMessage, res: ServerResponse, type: string, body: string): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET' }).end();
    return true;
  }
  res.writeHead(200, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new ApprovalApiError(413, `the body exceeds ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return {};
  try {
    const value: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // answered below
  }
  throw new ApprovalApiError(400, 'the body must be a JSON object such as {"reason": "..."}');
}
