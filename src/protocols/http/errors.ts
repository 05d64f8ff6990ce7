// The one place the HTTP listener's answers to the gateway's failures are chosen: the
// GatewayError kind and its typed details become a status, a REST-Proxy-style error code and
// headers (Retry-After, WWW-Authenticate), never read back out of the message.

import type { ServerResponse } from 'node:http';
import { GatewayError, type FailureKind } from '../../operation.ts';

/** REST-proxy-style error codes: HTTP status followed by a two-digit detail. */
const ERRORS: Record<FailureKind, { status: number; code: number }> = {
  invalid: { status: 400, code: 40001 },
  unauthenticated: { status: 401, code: 40101 },
  forbidden: { status: 403, code: 40301 },
  'not-found': { status: 404, code: 40403 },
  'too-large': { status: 413, code: 41301 },
  blocked: { status: 422, code: 42201 },
  throttled: { status: 429, code: 42901 },
  internal: { status: 500, code: 50001 },
  'upstream-error': { status: 502, code: 50201 },
  'upstream-unavailable': { status: 503, code: 50301 },
};

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The body of an error: its code and message, and the rule and approval where there are. */
/** A value that does not satisfy the topic's schema rules is unprocessable, not malformed. */
const SCHEMA_REFUSED = { status: 422, code: 42202 };
const answerFor = (err: GatewayError) => (err.kind === 'invalid' && err.rule?.startsWith('schema.') ? SCHEMA_REFUSED : ERRORS[err.kind]);

export function errorBody(err: GatewayError): Record<string, unknown> {
  const body: Record<string, unknown> = { error_code: answerFor(err).code, message: err.message };
  if (err.rule) body.rule = err.rule;
  if (err.approval) body.approval = err.approval;
  return body;
}

export function sendError(res: ServerResponse, err: unknown): void {
  const e = err instanceof GatewayError ? err : new GatewayError('internal', 'internal error');
  if (e.kind === 'unauthenticated') res.setHeader('www-authenticate', 'Bearer realm="streamgate"');
  if (e.retryAfterMs !== undefined) res.setHeader('retry-after', String(Math.max(1, Math.ceil(e.retryAfterMs / 1000))));
  sendJson(res, answerFor(e).status, errorBody(e));
}
