import { randomUUID } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, errors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import type { Logger } from 'pino';
import type { AuditEvent, AuditRow } from '../audit/row.ts';
import type { VerifiedToken } from '../identity/oidc.ts';
import { GatewayError, type Action, type Identity, type Resource } from '../operation.ts';
import type { Policy } from '../policy/policy.ts';
import type { StateStore } from '../state/store.ts';
import type { CredentialsConfig } from './schema.ts';
import { accessKeyIdFor, type AccessKeys } from './access-keys.ts';
import { SigningKeys } from './keys.ts';
import { formatItem, formatScope, parseScope, type ScopeItem } from './scope.ts';

/**
 * Just-in-time credentials: short-lived JWTs the gateway signs itself, each with an id
 * (`jti`), a scope, and the caller's original identity claims (so roles are re-derived from
 * the policy in force when the credential is used, never frozen at issuance).
 *
 * State (shared through the StateStore, so every instance agrees):
 * - `jit:signing-key:<period>`   signing keys (keys.ts)
 * - `jit:credential:<id>`        issued-credential metadata, until the credential expires
 * - `jit:revoked:<id>`           a revoked credential, until it would have expired
 * - `jit:revoked-subject:<sub>`  credentials of `sub` issued before `before` are revoked
 *   (kept for the longest lifetime: anything older has expired anyway)
 * Revocations are also published on `jit:revocations`; each instance keeps a local mirror
 * (so checking a credential costs no store round trip) and re-reads the store every few
 * seconds in case a message was lost while Redis was unreachable.
 */

const CREDENTIAL = 'jit:credential:';
const REVOKED = 'jit:revoked:';
const REVOKED_SUBJECT = 'jit:revoked-subject:';
const CHANNEL = 'jit:revocations';
const RESYNC_MS = 5000;
const MAX_CACHED = 10_000;
/** original claims that describe the original token rather than the subject: not carried over */
const TOKEN_CLAIMS = new Set(['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'scope', 'scp', 'client_id', 'azp', 'auth_time', 'nonce', 'at_hash', 'c_hash', 'sid']);

export type Revocation =
  | { kind: 'credential'; credentialId: string; subject?: string; at: number; by: string; reason: string }
  | { kind: 'subject'; subject: string; before: number; at: number; by: string; reason: string };

export interface CredentialMetadata {
  id: string;
  subject: string;
  issuer: string;
  scope: string;
  issuedAt: number;
  expiresAt: number;
  via: string;
}

export interface IssuedCredential {
  token: string;
  credentialId: string;
  /** epoch seconds */
  expiresAt: number;
  lifetimeSeconds: number;
  scope: ScopeItem[];
  /** requested items left out because neither the policy nor an approved grant allows them */
  dropped: string[];
  accessKeyId: string;
  secretAccessKey: string;
}

/** An approved grant covering `action` on `resource` for `identity` (the approvals seam); undefined when none. */
export type ActiveGrantLookup = (identity: Identity, action: Action, resource: Pick<Resource, 'kind' | 'name'>) => Promise<{ id: string } | undefined>;

type Recorder = (event: Exclude<AuditEvent, 'operation' | 'session-start' | 'session-end'>, fields: Partial<AuditRow>) => Promise<void>;

export interface JitCredentialsOptions {
  config: CredentialsConfig;
  store: StateStore;
  policy: () => Policy;
  accessKeys: AccessKeys;
  record: Recorder;
  log: Logger;
  /** approved grants widen what may be issued; unset until the approvals workflow provides it */
  activeGrant?: ActiveGrantLookup;
}

/** A refusal that knows which credential it refused (for the audit row), once the signature proved the id genuine. */
export class CredentialRefused extends GatewayError {
  readonly credentialId: string | undefined;
  constructor(message: string, credentialId: string | undefined, expired = false) {
    super('unauthenticated', message, { expired });
    this.credentialId = credentialId;
  }
}

/** An OAuth error of the token endpoint (RFC 6749 section 5.2 / RFC 8693 section 2.2.2). */
export class TokenError extends Error {
  readonly code: 'invalid_request' | 'invalid_grant' | 'invalid_scope' | 'invalid_target' | 'unsupported_grant_type' | 'server_error' | 'temporarily_unavailable';
  readonly status: number;
  constructor(code: TokenError['code'], description: string, status = 400) {
    super(description);
    this.code = code;
    this.status = status;
  }
}

interface CredentialClaims extends JWTPayload {
  scope: string;
  /** the original identity: issuer, groups, scopes and claims the roles are derived from */
  src: { iss: string; groups: string[]; scopes: string[]; claims: Record<string, unknown>; via: string };
}

export class JitCredentials {
  readonly #o: JitCredentialsOptions;
  readonly keys: SigningKeys;
  readonly #revokedIds = new Map<string, number>();
  /** subject -> epoch ms: credentials issued at or before are revoked */
  readonly #revokedBefore = new Map<string, number>();
  readonly #listeners = new Set<(revocation: Revocation) => void>();
  readonly #cache = new Map<string, CredentialClaims>();
  #unsubscribe: (() => Promise<void>) | undefined;
  #resync: NodeJS.Timeout | undefined;

  constructor(options: JitCredentialsOptions) {
    this.#o = options;
    const c = options.config;
    this.keys = new SigningKeys({ store: options.store, alg: c.algorithm, rotationMs: c.keyRotationSeconds * 1000, maxLifetimeMs: (c.maxLifetimeSeconds + c.clockToleranceSeconds) * 1000 });
  }

  get issuer(): string {
    return this.#o.config.issuer;
  }

  get audience(): string {
    return this.#o.config.audience;
  }

  set activeGrant(lookup: ActiveGrantLookup | undefined) {
    this.#o.activeGrant = lookup;
  }

  async start(): Promise<void> {
    this.#unsubscribe = await this.#o.store.subscribe(CHANNEL, (message) => {
      try {
        this.#apply(JSON.parse(message) as Revocation);
      } catch (err) {
        this.#o.log.warn({ err: (err as Error).message }, 'unreadable revocation message ignored');
      }
    });
    await this.#sync();
    // the signing key of this period exists before the first token request, and the JWKS lists it
    await this.keys.current();
    await this.keys.reload();
    this.#resync = setInterval(() => this.#sync().catch((err: unknown) => this.#o.log.warn({ err: (err as Error).message }, 'revocation resync failed')), RESYNC_MS);
    this.#resync.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.#resync);
    await this.#unsubscribe?.().catch(() => {});
    this.#listeners.clear();
  }

  /** Called for every revocation, local or from another instance (closing open sessions). */
  onRevoked(listener: (revocation: Revocation) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Whether `token` claims to be one of this gateway's credentials (cheap, unverified: routes it to verify). */
  owns(token: string): boolean {
    if (this.#cache.has(token)) return true;
    try {
      return decodeJwt(token).iss === this.#o.config.issuer;
    } catch {
      return false;
    }
  }

  // ---------------------------------------------------------------------------
  // issuance

  /**
   * Issues a credential for the verified subject token: the requested scope intersected
   * with what the policy (or an approved grant) allows this subject. Throws TokenError.
   */
  async issue(subject: VerifiedToken, via: string, requestedScope: string, requestedLifetime?: number): Promise<IssuedCredential> {
    const c = this.#o.config;
    let requested: ScopeItem[];
    try {
      requested = parseScope(requestedScope);
    } catch (err) {
      throw new TokenError('invalid_scope', (err as Error).message);
    }
    if (requested.length === 0) throw new TokenError('invalid_scope', 'name the scope to issue, e.g. scope=produce:orders consume:payments.*');
    const claims = carriedClaims(subject.claims);
    const identity = this.#identity(subject.subject, subject.issuer, subject.groups, subject.scopes, claims, subject.expiresAt);
    const granted: ScopeItem[] = [];
    const dropped: ScopeItem[] = [];
    for (const item of requested) {
      // a requested glob is checked as a literal name: the policy's glob must cover it; use
      // is checked again per operation (scope AND policy), so this can only narrow
      const resource = { kind: item.kind, name: item.pattern };
      const allowed = this.#o.policy().decide(identity, item.action, resource.name, resource.kind).allowed || (await this.#o.activeGrant?.(identity, item.action, resource)) !== undefined;
      (allowed ? granted : dropped).push(item);
    }
    if (granted.length === 0) throw new TokenError('invalid_scope', `${subject.subject} may not be issued any of "${formatScope(requested)}"`);
    // bounded by configuration, not by the subject token: outliving a one-hour SSO token is what the exchange is for
    const lifetime = Math.max(1, Math.min(requestedLifetime ?? c.defaultLifetimeSeconds, c.maxLifetimeSeconds));
    const now = Math.floor(Date.now() / 1000);
    const id = randomUUID();
    const scope = formatScope(granted);
    const key = await this.keys.current();
    const payload: CredentialClaims = {
      scope,
      src: { iss: subject.issuer, groups: subject.groups, scopes: subject.scopes, claims, via },
    };
    const token = await new SignJWT(payload)
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
      .setIssuer(c.issuer)
      .setAudience(c.audience)
      .setSubject(subject.subject)
      .setJti(id)
      .setIssuedAt(now)
      .setExpirationTime(now + lifetime)
      .sign(key.privateKey);
    const metadata: CredentialMetadata = { id, subject: subject.subject, issuer: subject.issuer, scope, issuedAt: now, expiresAt: now + lifetime, via };
    await this.#o.store.set(CREDENTIAL + id, JSON.stringify(metadata), (lifetime + c.clockToleranceSeconds) * 1000);
    const accessKeyId = accessKeyIdFor(id);
    return { token, credentialId: id, expiresAt: now + lifetime, lifetimeSeconds: lifetime, scope: granted, dropped: dropped.map(formatItem), accessKeyId, secretAccessKey: this.#o.accessKeys.secretFor(accessKeyId)! };
  }

  // ---------------------------------------------------------------------------
  // verification

  /**
   * The identity a credential proves: signature by a live gateway key, issuer, audience,
   * expiry, not revoked; `username` (SASL PLAIN) must be the credential id. Throws
   * CredentialRefused.
   */
  async verify(token: string, username?: string): Promise<Identity> {
    let claims = this.#cache.get(token);
    if (claims && (claims.exp! + this.#o.config.clockToleranceSeconds) * 1000 <= Date.now()) {
      this.#cache.delete(token);
      throw new CredentialRefused('the credential has expired', claims.jti, true);
    }
    claims ??= await this.#verifySignature(token);
    const id = claims.jti!;
    if (username !== undefined && username !== id) throw new CredentialRefused('the SASL PLAIN user name must be the credential id (jti) of the credential given as password', id);
    const revokedAt = this.#revokedIds.get(id);
    if (revokedAt !== undefined) throw new CredentialRefused(`credential ${id} was revoked`, id);
    const before = this.#revokedBefore.get(claims.sub!);
    if (before !== undefined && claims.iat! * 1000 <= before) throw new CredentialRefused(`credentials of ${claims.sub} issued before ${new Date(before).toISOString()} were revoked`, id);
    const identity = this.#identity(claims.sub!, claims.src.iss, claims.src.groups, claims.src.scopes, claims.src.claims, claims.exp);
    identity.credentialId = id;
    // the credential's own issue time (the original token's was not carried): revocation by subject compares it
    identity.claims.iat = claims.iat;
    identity.credentialScope = parseScope(claims.scope);
    return identity;
  }

  async #verifySignature(token: string): Promise<CredentialClaims> {
    const c = this.#o.config;
    let kid: string | undefined;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      throw new CredentialRefused('the credential is not a well-formed JWT', undefined);
    }
    let key: Awaited<ReturnType<SigningKeys['verificationKey']>>;
    try {
      key = kid === undefined ? undefined : await this.keys.verificationKey(kid);
    } catch (err) {
      // a kid new to this instance and the store unreachable: fail closed, but say why (503, not 401)
      this.#o.log.warn({ err: (err as Error).message }, 'signing keys could not be reloaded from the state store');
      throw new GatewayError('upstream-unavailable', 'the gateway cannot read its credential keys right now; retry shortly');
    }
    if (!key) throw new CredentialRefused('the credential is not signed by a key of this gateway (unknown kid)', undefined);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key.key, {
        issuer: c.issuer,
        audience: c.audience,
        algorithms: [key.alg],
        clockTolerance: c.clockToleranceSeconds,
        requiredClaims: ['sub', 'exp', 'iat', 'jti'],
      }));
    } catch (err) {
      // claims are checked after the signature: an expired credential's id is genuine
      if (err instanceof errors.JWTExpired) throw new CredentialRefused('the credential has expired', typeof err.payload.jti === 'string' ? err.payload.jti : undefined, true);
      if (err instanceof errors.JWSSignatureVerificationFailed) throw new CredentialRefused('the credential signature is invalid', undefined);
      throw new CredentialRefused(`the credential was refused: ${(err as Error).message}`, undefined);
    }
    const claims = payload as CredentialClaims;
    if (typeof claims.scope !== 'string' || typeof claims.src !== 'object' || claims.src === null) throw new CredentialRefused('the credential carries no scope', claims.jti);
    if (this.#cache.size >= MAX_CACHED) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(token, claims);
    return claims;
  }

  #identity(subject: string, issuer: string, groups: string[], scopes: string[], claims: Record<string, unknown>, expiresAt: number | undefined): Identity {
    const token: VerifiedToken = { subject, issuer, groups, scopes, expiresAt, claims: { ...claims, sub: subject, iss: issuer } };
    return { subject, issuer, groups, roles: this.#o.policy().rolesFor(token), expiresAt, claims: token.claims };
  }

  /** Whether a live session's identity has been revoked since it authenticated. */
  isRevoked(identity: Identity): boolean {
    if (identity.credentialId === undefined) return false;
    return revocationCovers(this.#revokedIds, this.#revokedBefore, identity);
  }

  // ---------------------------------------------------------------------------
  // revocation

  async credential(id: string): Promise<CredentialMetadata | undefined> {
    const text = await this.#o.store.get(CREDENTIAL + id);
    return text ? (JSON.parse(text) as CredentialMetadata) : undefined;
  }

  async credentials(subject?: string): Promise<CredentialMetadata[]> {
    const all = (await this.#o.store.list(CREDENTIAL)).map(([, text]) => JSON.parse(text) as CredentialMetadata);
    return all.filter((m) => subject === undefined || m.subject === subject).sort((a, b) => a.issuedAt - b.issuedAt);
  }

  /** Revokes one credential on every instance; undefined when no live credential has that id. */
  async revokeCredential(id: string, by: string, reason: string): Promise<Revocation | undefined> {
    const meta = await this.credential(id);
    if (!meta) return undefined;
    const revocation: Revocation = { kind: 'credential', credentialId: id, subject: meta.subject, at: Date.now(), by, reason };
    const ttl = Math.max(1000, (meta.expiresAt + this.#o.config.clockToleranceSeconds) * 1000 - Date.now());
    await this.#o.store.set(REVOKED + id, JSON.stringify(revocation), ttl);
    await this.#publish(revocation);
    return revocation;
  }

  /** Revokes every credential `subject` holds now (issued up to this moment) on every instance. */
  async revokeSubject(subject: string, by: string, reason: string): Promise<Revocation> {
    const now = Date.now();
    const revocation: Revocation = { kind: 'subject', subject, before: now, at: now, by, reason };
    const c = this.#o.config;
    await this.#o.store.set(REVOKED_SUBJECT + subject, JSON.stringify(revocation), (c.maxLifetimeSeconds + c.clockToleranceSeconds) * 1000);
    await this.#publish(revocation);
    return revocation;
  }

  async #publish(revocation: Revocation): Promise<void> {
    this.#apply(revocation);
    await this.#o.store.publish(CHANNEL, JSON.stringify(revocation));
  }

  #apply(revocation: Revocation): void {
    if (revocation.kind === 'credential') {
      if (this.#revokedIds.has(revocation.credentialId)) return;
      this.#revokedIds.set(revocation.credentialId, revocation.at);
    } else {
      if ((this.#revokedBefore.get(revocation.subject) ?? -1) >= revocation.before) return;
      this.#revokedBefore.set(revocation.subject, revocation.before);
    }
    for (const listener of this.#listeners) {
      try {
        listener(revocation);
      } catch (err) {
        this.#o.log.error({ err }, 'revocation listener failed');
      }
    }
  }

  /** Re-reads revocations from the store (start, and periodically: pub/sub loses messages while disconnected). */
  async #sync(): Promise<void> {
    const [ids, subjects] = await Promise.all([this.#o.store.list(REVOKED), this.#o.store.list(REVOKED_SUBJECT)]);
    for (const [, text] of [...ids, ...subjects]) this.#apply(JSON.parse(text) as Revocation);
    // forget revocations whose credentials have expired by now (the store expired them)
    const liveIds = new Set(ids.map(([k]) => k.slice(REVOKED.length)));
    for (const id of this.#revokedIds.keys()) if (!liveIds.has(id)) this.#revokedIds.delete(id);
    const liveSubjects = new Set(subjects.map(([k]) => k.slice(REVOKED_SUBJECT.length)));
    for (const s of this.#revokedBefore.keys()) if (!liveSubjects.has(s)) this.#revokedBefore.delete(s);
  }
}

/** Whether a revocation applies to a session's identity (credential id, or subject with the credential issued before). */
export function revocationMatches(revocation: Revocation, identity: Identity): boolean {
  if (identity.credentialId === undefined) return false;
  if (revocation.kind === 'credential') return identity.credentialId === revocation.credentialId;
  const iat = identity.claims.iat;
  return identity.subject === revocation.subject && (typeof iat !== 'number' || iat * 1000 <= revocation.before);
}

function revocationCovers(ids: Map<string, number>, before: Map<string, number>, identity: Identity): boolean {
  if (ids.has(identity.credentialId!)) return true;
  const b = before.get(identity.subject);
  const iat = identity.claims.iat;
  return b !== undefined && (typeof iat !== 'number' || iat * 1000 <= b);
}

function carriedClaims(claims: JWTPayload): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(claims)) if (!TOKEN_CLAIMS.has(k)) out[k] = v;
  return out;
}
