import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { IssuerConfig } from '../config/schema.ts';
import { GatewayError } from '../operation.ts';

export interface VerifiedToken {
  subject: string;
  issuer: string;
  groups: string[];
  scopes: string[];
  expiresAt: number | undefined;
  claims: JWTPayload;
}

interface IssuerState {
  config: IssuerConfig;
  keys?: Promise<JWTVerifyGetKey>;
  /** the key set was fetched at least once (readiness) */
  fetched?: boolean;
}

const MAX_CACHED_TOKENS = 10_000;
/**
 * Longer tokens are refused before any parsing. Real ones are a few KB; the HTTP listener's
 * header limit (16 KiB) already caps them there, and this applies the same bound to Kafka
 * SASL, where a frame may be megabytes.
 */
export const MAX_TOKEN_BYTES = 16 * 1024;

/**
 * Verifies OIDC bearer JWTs against the configured issuers. Remote key sets are fetched
 * once and refreshed by jose (on unknown kid, rate limited); verified tokens are cached
 * until they expire so the hot path costs one Map lookup.
 */
export class OidcVerifier {
  readonly #issuers = new Map<string, IssuerState>();
  readonly #cache = new Map<string, VerifiedToken>();

  constructor(issuers: readonly IssuerConfig[]) {
    for (const config of issuers) this.#issuers.set(config.issuer, { config });
  }

  /** Fetches discovery documents and key sets up front so the first request is not slow. */
  async warmUp(): Promise<void> {
    await Promise.all([...this.#issuers.values()].map((s) => this.#keys(s)));
  }

  /** true once every issuer's key set has been fetched (readiness: tokens can be verified without a round trip) */
  get ready(): boolean {
    for (const s of this.#issuers.values()) if (!s.fetched) return false;
    return true;
  }

  async verify(token: string): Promise<VerifiedToken> {
    if (token.length > MAX_TOKEN_BYTES) throw new GatewayError('unauthenticated', `the token is longer than ${MAX_TOKEN_BYTES} bytes`);
    const cached = this.#cache.get(token);
    if (cached) {
      if (cached.expiresAt === undefined || cached.expiresAt * 1000 > Date.now()) return cached;
      this.#cache.delete(token);
    }

    // One token, one spelling: base64url allows several encodings of the same bytes (the
    // unused low bits of a segment's last character), which would let a copied token pass
    // as a different string past anything keyed by the token text.
    if (!canonicalSegments(token)) throw new GatewayError('unauthenticated', 'the bearer token is not a well-formed JWT');
    let unverified: JWTPayload;
    try {
      const header = decodeProtectedHeader(token);
      if (!header.alg || header.alg === 'none') throw new GatewayError('unauthenticated', 'unsigned tokens (alg "none") are not accepted');
      unverified = decodeJwt(token);
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      throw new GatewayError('unauthenticated', 'the bearer token is not a well-formed JWT');
    }
    const state = typeof unverified.iss === 'string' ? this.#issuers.get(unverified.iss) : undefined;
    if (!state) throw new GatewayError('unauthenticated', `token issuer ${JSON.stringify(unverified.iss ?? null)} is not trusted`);

    const { config } = state;
    let payload: JWTPayload;
    try {
      const keys = await this.#keys(state);
      ({ payload } = await jwtVerify(token, keys, {
        issuer: config.issuer,
        audience: config.audience,
        algorithms: config.algorithms,
        clockTolerance: config.clockToleranceSeconds,
        requiredClaims: ['sub', 'exp'],
      }));
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      throw new GatewayError('unauthenticated', describeJoseError(err), { cause: err, expired: err instanceof errors.JWTExpired });
    }

    const verified: VerifiedToken = {
      subject: payload.sub!,
      issuer: config.issuer,
      groups: stringList(payload[config.groupsClaim]),
      scopes: typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : stringList(payload.scp),
      expiresAt: payload.exp,
      claims: payload,
    };
    if (this.#cache.size >= MAX_CACHED_TOKENS) {
      // Map iteration order is insertion order: drop the oldest entry
      this.#cache.delete(this.#cache.keys().next().value!);
    }
    this.#cache.set(token, verified);
    return verified;
  }

  #keys(state: IssuerState): Promise<JWTVerifyGetKey> {
    state.keys ??= resolveJwks(state.config).then((keys) => {
      state.fetched = true;
      return keys;
    }, (err: unknown) => {
      state.keys = undefined; // retry discovery on the next token
      throw err;
    });
    return state.keys;
  }
}

async function resolveJwks(config: IssuerConfig): Promise<JWTVerifyGetKey> {
  let jwksUri = config.jwksUri;
  if (!jwksUri) {
    const url = `${config.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    let doc: { jwks_uri?: unknown; issuer?: unknown };
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      doc = (await res.json()) as typeof doc;
    } catch (err) {
      throw new GatewayError('upstream-unavailable', `cannot fetch the discovery document of issuer ${config.issuer}: ${(err as Error).message}`);
    }
    if (doc.issuer !== config.issuer) {
      throw new GatewayError('unauthenticated', `discovery document at ${url} names issuer ${JSON.stringify(doc.issuer)}, expected ${config.issuer}`);
    }
    if (typeof doc.jwks_uri !== 'string') throw new GatewayError('unauthenticated', `discovery document at ${url} has no jwks_uri`);
    jwksUri = doc.jwks_uri;
  }
  const keys = createRemoteJWKSet(new URL(jwksUri), { cacheMaxAge: 10 * 60_000, cooldownDuration: 30_000, timeoutDuration: 5000 });
  // fetch the keys now, not on the first token: readiness means tokens verify without a round trip
  await keys.reload();
  return keys;
}

function stringList(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
  return [];
}

/** Says what was wrong with a token without repeating any of it. */
function describeJoseError(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'the token has expired';
  if (err instanceof errors.JWTClaimValidationFailed) return `token claim check failed: ${err.message}`;
  if (err instanceof errors.JOSEAlgNotAllowed) return 'the token is signed with an algorithm this issuer is not allowed to use';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'the token signature is invalid';
  if (err instanceof errors.JWKSNoMatchingKey) return 'no key of the issuer matches the token (unknown kid)';
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JOSEError) return `token verification failed: ${(err as Error).message}`;
  return 'token verification failed';
}

/** Every dot-separated segment is base64url without padding and re-encodes to itself. */
function canonicalSegments(token: string): boolean {
  for (const segment of token.split('.')) {
    if (Buffer.from(segment, 'base64url').toString('base64url') !== segment) return false;
  }
  return true;
}
