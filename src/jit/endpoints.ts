import { StoreUnavailable } from '../state/store.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AuditEvent, AuditRow } from '../audit/row.ts';
import type { OidcVerifier, VerifiedToken } from '../identity/oidc.ts';
import { GatewayError, type Identity } from '../operation.ts';
import type { Policy } from '../policy/policy.ts';
import { JitCredentials, TokenError, type Revocation } from './credentials.ts';
import { SamlRefused, type SamlVerifier } from './saml.ts';
import { formatScope } from './scope.ts';

const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const SAML2_TYPE = 'urn:ietf:params:oauth:token-type:saml2';
const MAX_FORM_BYTES = 256 * 1024;
const ADMIN_PATH = /^\/v1\/(?:credentials(?:\/[^/]+\/revoke)?|subjects\/[^/]+\/credentials\/revoke)$/;

type Recorder = (event: Exclude<AuditEvent, 'operation' | 'session-start' | 'session-end'>, fields: Partial<AuditRow>) => Promise<void>;

export interface CredentialEndpointsOptions {
  jit: JitCredentials;
  oidc: OidcVerifier;
  saml: SamlVerifier | undefined;
  policy: () => Policy;
  record: Recorder;
  log: Logger;
}

/**
 * HTTP faces of just-in-time credentials:
 * - data (HTTP) listener: `POST /v1/token` (RFC 8693 token exchange) and `GET /.well-known/jwks.json`
 * - admin listener: `POST /v1/credentials/{id}/revoke`, `POST /v1/subjects/{subject}/credentials/revoke`,
 *   `GET /v1/credentials[?subject=]`, authenticated with an identity-provider token whose
 *   roles may administer the cluster (or, for their own credentials, the subject itself).
 */
export class CredentialEndpoints {
  readonly #o: CredentialEndpointsOptions;

  constructor(options: CredentialEndpointsOptions) {
    this.#o = options;
  }

  /** Routes of the data listener; false when `path` is not one of them. */
  async serveData(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    if (path === '/.well-known/jwks.json') {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        methodNotAllowed(res, 'GET');
        return true;
      }
      const jwks = await this.#o.jit.keys.jwks();
      sendJson(res, 200, jwks, { 'cache-control': 'public, max-age=60' });
      return true;
    }
    if (path === '/v1/token') {
      if (req.method !== 'POST') methodNotAllowed(res, 'POST');
      else await this.#token(req, res);
      return true;
    }
    return false;
  }

  async #token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let subject: VerifiedToken | undefined;
    let requestedScope = '';
    try {
      const form = await readForm(req);
      const param = (name: string) => {
        const values = form.getAll(name);
        if (values.length > 1) throw new TokenError('invalid_request', `${name} must be given once`);
        return values[0];
      };
      const grantType = param('grant_type');
      if (grantType !== GRANT_TYPE) throw new TokenError(grantType ? 'unsupported_grant_type' : 'invalid_request', `grant_type must be ${GRANT_TYPE}`);
      const token = param('subject_token');
      const tokenType = param('subject_token_type');
      if (!token || !tokenType) throw new TokenError('invalid_request', 'subject_token and subject_token_type are required');
      const requestedType = param('requested_token_type');
      if (requestedType !== undefined && requestedType !== JWT_TYPE && requestedType !== ACCESS_TOKEN_TYPE) {
        throw new TokenError('invalid_request', `requested_token_type must be ${JWT_TYPE} (or ${ACCESS_TOKEN_TYPE})`);
      }
      for (const target of [...form.getAll('audience'), ...form.getAll('resource')]) {
        if (target !== this.#o.jit.issuer && target !== this.#o.jit.audience) throw new TokenError('invalid_target', `this gateway issues credentials for itself only, not for "${target}"`);
      }
      requestedScope = param('scope') ?? '';
      const lifetimeText = param('expires_in');
      const lifetime = lifetimeText === undefined ? undefined : Number(lifetimeText);
      if (lifetime !== undefined && (!Number.isInteger(lifetime) || lifetime <= 0)) throw new TokenError('invalid_request', 'expires_in must be a positive number of seconds');

      let via: string;
      if (tokenType === JWT_TYPE || tokenType === ACCESS_TOKEN_TYPE) {
        if (this.#o.jit.owns(token)) throw new TokenError('invalid_grant', 'a credential of this gateway cannot be exchanged for another (ask with your identity provider token)');
        try {
          subject = await this.#o.oidc.verify(token);
        } catch (err) {
          throw new TokenError('invalid_grant', `the subject token was refused: ${(err as Error).message}`);
        }
        via = 'oidc';
      } else if (tokenType === SAML2_TYPE) {
        if (!this.#o.saml) throw new TokenError('invalid_request', 'SAML subject tokens are not configured here (credentials.saml)');
        try {
          subject = await this.#o.saml.verify(token);
        } catch (err) {
          throw new TokenError('invalid_grant', err instanceof SamlRefused ? err.message : 'the SAML assertion was refused');
        }
        via = 'saml';
      } else {
        throw new TokenError('invalid_request', `subject_token_type must be ${JWT_TYPE} or ${SAML2_TYPE}`);
      }

      const issued = await this.#o.jit.issue(subject, via, requestedScope, lifetime);
      const scope = formatScope(issued.scope);
      await this.#o.record('credential-issue', {
        ...identityFields(subject, this.#o.policy()),
        action: 'issue',
        resource_kind: 'credential',
        resource: scope,
        decision: 'allow',
        credential_id: issued.credentialId,
        message: issued.dropped.length > 0 ? `issued narrower than requested: ${issued.dropped.join(' ')} not allowed` : '',
        meta: { via, expires_at: new Date(issued.expiresAt * 1000).toISOString(), access_key_id: issued.accessKeyId, client_address: req.socket.remoteAddress ?? '' },
      });
      sendJson(res, 200, {
        access_token: issued.token,
        issued_token_type: JWT_TYPE,
        token_type: 'Bearer',
        expires_in: issued.lifetimeSeconds,
        scope,
        credential_id: issued.credentialId,
        // Kinesis / AWS SDKs: the credential travels as the session token
        aws: { accessKeyId: issued.accessKeyId, secretAccessKey: issued.secretAccessKey, sessionToken: issued.token, expiration: new Date(issued.expiresAt * 1000).toISOString() },
        kafka: {
          sasl_oauthbearer: { mechanism: 'OAUTHBEARER', token: issued.token },
          sasl_plain: { mechanism: 'PLAIN', username: issued.credentialId, password: issued.token },
        },
      }, { 'cache-control': 'no-store', pragma: 'no-cache' });
    } catch (err) {
      const e =
        err instanceof TokenError
          ? err
          : err instanceof StoreUnavailable || (err as { cause?: unknown } | undefined)?.cause instanceof StoreUnavailable
            ? new TokenError('temporarily_unavailable', 'credentials cannot be issued while the shared state store is unreachable; try again shortly', 503)
            : new TokenError('server_error', 'the credential could not be issued', 500);
      if (!(err instanceof TokenError)) this.#o.log.error({ err }, 'token exchange failed');
      await this.#o.record('credential-issue', {
        ...(subject ? identityFields(subject, this.#o.policy()) : {}),
        action: 'issue',
        resource_kind: 'credential',
        resource: requestedScope,
        decision: e.status >= 500 ? 'error' : 'deny',
        reason: e.code,
        message: e.message,
        meta: { client_address: req.socket.remoteAddress ?? '' },
      }).catch((auditErr: unknown) => this.#o.log.error({ err: auditErr }, 'audit row for a refused token request not written'));
      sendJson(res, e.status, { error: e.code, error_description: e.message }, { 'cache-control': 'no-store' });
    }
  }

  // ---------------------------------------------------------------------------
  // admin listener

  /** The admin listener route (its `routes` hook): claims the credential paths, answers asynchronously. */
  adminRoute(): (req: IncomingMessage, res: ServerResponse) => boolean {
    return (req, res) => {
      const [path = '/', query = ''] = (req.url ?? '/').split('?');
      if (!ADMIN_PATH.test(path)) return false;
      this.serveAdmin(req, res, path, new URLSearchParams(query)).catch((err: unknown) => {
        this.#o.log.error({ err }, 'credentials API failed');
        if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
        else res.destroy();
      });
      return true;
    };
  }

  /** Routes of the admin listener; false when `path` is not one of them. */
  async serveAdmin(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<boolean> {
    const byId = /^\/v1\/credentials\/([^/]+)\/revoke$/.exec(path);
    const bySubject = /^\/v1\/subjects\/([^/]+)\/credentials\/revoke$/.exec(path);
    const listing = path === '/v1/credentials';
    if (!byId && !bySubject && !listing) return false;
    if (listing ? req.method !== 'GET' : req.method !== 'POST') {
      methodNotAllowed(res, listing ? 'GET' : 'POST');
      return true;
    }

    let caller: Identity;
    try {
      caller = await this.#caller(req);
    } catch (err) {
      sendJson(res, 401, { error: 'unauthenticated', message: (err as Error).message }, { 'www-authenticate': 'Bearer realm="streamgate-admin"' });
      return true;
    }
    const admin = this.#o.policy().decide(caller, 'admin', 'credentials', 'cluster').allowed;

    if (listing) {
      const subject = query.get('subject') ?? undefined;
      if (!admin && subject !== caller.subject) {
        sendJson(res, 403, { error: 'forbidden', message: `${caller.subject} may list only its own credentials (?subject=${caller.subject})` });
        return true;
      }
      sendJson(res, 200, { credentials: await this.#o.jit.credentials(subject) });
      return true;
    }

    const reason = await readReason(req);
    const target = decodeURIComponent((byId ?? bySubject)![1]!);
    const audit = (decision: 'allow' | 'deny', message: string, credentialId = '') =>
      this.#o.record('credential-revoke', {
        subject: caller.subject,
        issuer: caller.issuer,
        groups: caller.groups,
        roles: caller.roles,
        action: 'revoke',
        resource_kind: byId ? 'credential' : 'subject',
        resource: target,
        decision,
        reason: decision === 'deny' ? 'forbidden' : '',
        message,
        credential_id: credentialId,
        meta: { client_address: req.socket.remoteAddress ?? '' },
      });

    let revocation: Revocation | undefined;
    if (byId) {
      const meta = await this.#o.jit.credential(target);
      if (!meta) {
        sendJson(res, 404, { error: 'not-found', message: `no live credential ${target} (unknown, or already expired)` });
        return true;
      }
      if (!admin && meta.subject !== caller.subject) {
        await audit('deny', `${caller.subject} may not revoke a credential of ${meta.subject}`, target);
        sendJson(res, 403, { error: 'forbidden', message: `${caller.subject} may revoke only its own credentials` });
        return true;
      }
      revocation = await this.#o.jit.revokeCredential(target, caller.subject, reason);
      if (!revocation) {
        sendJson(res, 404, { error: 'not-found', message: `credential ${target} expired meanwhile` });
        return true;
      }
      await audit('allow', reason, target);
    } else {
      if (!admin && target !== caller.subject) {
        await audit('deny', `${caller.subject} may not revoke the credentials of ${target}`);
        sendJson(res, 403, { error: 'forbidden', message: `${caller.subject} may revoke only its own credentials` });
        return true;
      }
      revocation = await this.#o.jit.revokeSubject(target, caller.subject, reason);
      await audit('allow', reason);
    }
    sendJson(res, 200, { revoked: revocation });
    return true;
  }

  async #caller(req: IncomingMessage): Promise<Identity> {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m) throw new GatewayError('unauthenticated', 'an identity provider token is required (Authorization: Bearer <JWT>)');
    if (this.#o.jit.owns(m[1]!)) throw new GatewayError('unauthenticated', 'use an identity provider token here, not a gateway credential');
    const token = await this.#o.oidc.verify(m[1]!);
    return { subject: token.subject, issuer: token.issuer, groups: token.groups, roles: this.#o.policy().rolesFor(token), expiresAt: token.expiresAt, claims: token.claims };
  }
}

function identityFields(subject: VerifiedToken, policy: Policy): Partial<AuditRow> {
  return { subject: subject.subject, issuer: subject.issuer, groups: subject.groups, roles: policy.rolesFor(subject) };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new TokenError('invalid_request', `the request body exceeds ${MAX_FORM_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/x-www-form-urlencoded\b/i.test(type)) {
    req.resume();
    throw new TokenError('invalid_request', 'the token request must be application/x-www-form-urlencoded (RFC 6749)');
  }
  return new URLSearchParams(await readBody(req));
}

/** `{"reason": "..."}` or an empty body. */
async function readReason(req: IncomingMessage): Promise<string> {
  try {
    const text = await readBody(req);
    if (text.trim() === '') return '';
    const body = JSON.parse(text) as { reason?: unknown };
    return typeof body.reason === 'string' ? body.reason.slice(0, 1000) : '';
  } catch {
    return '';
  }
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  sendJson(res, 405, { error: 'method_not_allowed', message: `use ${allow}` }, { allow });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
