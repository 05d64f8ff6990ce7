// Logging in on a Kafka connection, terminated at the gateway: SaslHandshake + SaslAuthenticate
// with OAUTHBEARER (RFC 7628) or PLAIN (the password is a JWT), or a client certificate (mTLS).
// The credential is verified by the same login chain as every protocol's (audit, authenticate,
// the per-identity session cap); its lifetime bounds the session (KIP-368: the client
// re-authenticates in time, keeping its principal, or the connection is closed and audited).

import type { PeerCertificate } from 'node:tls';
import type { Dispatcher } from '../../dispatcher.ts';
import { GatewayError, type Identity, type Session } from '../../operation.ts';
import { ERR } from './apis.ts';
import type { Struct } from './codec.ts';
import { MECHANISMS, oauthBearerFailure, parseOauthBearer, parsePlain, SaslError, type Mechanism } from './sasl.ts';

/** What a login needs of its connection. */
export interface LoginHost {
  readonly dispatcher: Dispatcher;
  readonly session: Session;
  readonly maxSessionLifetimeMs: number;
  /** the identity logged in so far, if any */
  identity(): Identity | undefined;
  loggedIn(identity: Identity): void;
  /** the connection is already closing: an expiry then changes nothing */
  closed(): boolean;
  /** the credential ran out without re-authentication (audited by the login): the connection closes */
  expired(): void;
}

/** An answer to SaslAuthenticate; `close`: the connection closes once it has left (Kafka does after a failure). */
export interface SaslAnswer {
  body: Struct;
  close: boolean;
}

const TEN_YEARS_MS = 10 * 365 * 86_400_000;

export class Login {
  readonly #host: LoginHost;
  #mechanism: Mechanism | undefined;
  #expiresAt = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(host: LoginHost) {
    this.#host = host;
  }

  /** Epoch ms after which the session's credential no longer holds. */
  get expiresAt(): number {
    return this.#expiresAt;
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  /** SaslHandshake v1: the mechanism for the next SaslAuthenticate. */
  handshake(mechanism: string): Struct {
    const ok = (MECHANISMS as readonly string[]).includes(mechanism);
    this.#mechanism = ok ? (mechanism as Mechanism) : undefined;
    return { ErrorCode: ok ? ERR.NONE : ERR.UNSUPPORTED_SASL_MECHANISM, Mechanisms: [...MECHANISMS] };
  }

  async authenticate(auth: Uint8Array): Promise<SaslAnswer> {
    const host = this.#host;
    const mechanism = this.#mechanism;
    this.#mechanism = undefined;
    const op = host.dispatcher.newOperation(host.session, 'describe', { kind: 'cluster', name: 'sasl' });
    op.meta.api = 'SaslAuthenticate';
    op.meta.mechanism = mechanism ?? '';
    const fail = (message: string, bytes?: Uint8Array): SaslAnswer => ({
      body: { ErrorCode: ERR.SASL_AUTHENTICATION_FAILED, ErrorMessage: message, AuthBytes: bytes ?? new Uint8Array(0), SessionLifetimeMs: 0n },
      close: true,
    });
    const refuse = (message: string) => host.dispatcher.refuse(op, new GatewayError('unauthenticated', message)).catch(() => {});
    if (!mechanism) {
      await refuse('SaslAuthenticate without a SaslHandshake');
      return fail('SaslAuthenticate without a SaslHandshake');
    }
    let identity: Identity;
    try {
      // PLAIN's user name is kept: for a just-in-time credential it must be the credential id
      op.credential = mechanism === 'OAUTHBEARER' ? { scheme: 'bearer', token: parseOauthBearer(auth).token } : { scheme: 'bearer', ...parsePlain(auth) };
      identity = await host.dispatcher.login(op);
    } catch (err) {
      const message = err instanceof SaslError || err instanceof GatewayError ? err.message : 'authentication failed';
      if (err instanceof SaslError) await refuse(message);
      return fail(message, mechanism === 'OAUTHBEARER' ? oauthBearerFailure() : undefined);
    }
    const before = host.identity();
    if (before && before.subject !== identity.subject) {
      return fail(`re-authentication must keep the principal (${before.subject}), not switch to ${identity.subject}`);
    }
    host.loggedIn(identity);
    const now = Date.now();
    const expiresAt = identity.expiresAt !== undefined ? identity.expiresAt * 1000 : now + host.maxSessionLifetimeMs;
    const lifetime = Math.min(host.maxSessionLifetimeMs, expiresAt - now);
    if (lifetime <= 0) {
      await refuse('the token has expired');
      return fail('the token has expired');
    }
    this.#expiresAt = now + lifetime;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#expired(), lifetime + 50);
    this.#timer.unref();
    return { body: { ErrorCode: 0, ErrorMessage: null, AuthBytes: new Uint8Array(0), SessionLifetimeMs: BigInt(lifetime) }, close: false };
  }

  /**
   * A client certificate verified against listeners.kafka.tls.clientCa is an identity: its
   * subject CN, with its OUs as groups. Resolves once the login settled (either way).
   */
  mtls(cert: PeerCertificate): Promise<void> {
    const host = this.#host;
    const cn = cert.subject?.CN;
    if (!cn) return Promise.resolve();
    const ou = cert.subject.OU;
    const op = host.dispatcher.newOperation(host.session, 'describe', { kind: 'cluster', name: 'mtls' });
    op.meta.api = 'mTLS';
    op.credential = {
      scheme: 'certificate',
      subject: String(cn),
      issuer: `mtls:${String(cert.issuer?.CN ?? '')}`,
      groups: ou === undefined ? [] : Array.isArray(ou) ? ou.map(String) : [String(ou)],
      expiresAt: Math.floor(new Date(cert.valid_to).getTime() / 1000),
    };
    return host.dispatcher.login(op).then(
      (identity) => {
        host.loggedIn(identity);
        this.#expiresAt = Math.min((identity.expiresAt ?? 0) * 1000, Date.now() + TEN_YEARS_MS);
      },
      () => {},
    );
  }

  #expired(): void {
    const host = this.#host;
    if (host.closed() || Date.now() < this.#expiresAt) return;
    const op = host.dispatcher.newOperation(host.session, 'describe', { kind: 'cluster', name: 'sasl' });
    const identity = host.identity();
    if (identity) op.identity = identity;
    op.meta.api = 'session-expiry';
    void host.dispatcher.refuse(op, new GatewayError('unauthenticated', 'the session credential expired without re-authentication')).catch(() => {});
    host.expired();
  }
}
