import type { OidcVerifier } from '../identity/oidc.ts';
import { GatewayError, type Control, type Next, type Operation, type UpstreamResult } from '../operation.ts';
import type { Policy } from '../policy/policy.ts';
import { CredentialRefused, type JitCredentials } from '../jit/credentials.ts';

/** Turns the presented credential into an Identity with the roles the policy derives. */
export class Authenticate implements Control {
  readonly name = 'authenticate';
  readonly #verifier: OidcVerifier;
  readonly #policy: () => Policy;
  /** the gateway's own just-in-time credentials, when configured */
  readonly #jit: () => JitCredentials | undefined;

  constructor(verifier: OidcVerifier, policy: () => Policy, jit: () => JitCredentials | undefined = () => undefined) {
    this.#verifier = verifier;
    this.#policy = policy;
    this.#jit = jit;
  }

  async handle(op: Operation, next: Next): Promise<UpstreamResult> {
    if (!op.identity) {
      if (!op.credential) throw new GatewayError('unauthenticated', 'a bearer token is required (Authorization: Bearer <JWT>)');
      if (op.credential.scheme === 'certificate') {
        // mTLS: the subject's CN is the identity, its OUs the groups roles are derived from
        const { subject, issuer, groups, expiresAt } = op.credential;
        if (expiresAt * 1000 <= Date.now()) throw new GatewayError('unauthenticated', 'the client certificate has expired', { expired: true });
        const claims = { sub: subject, iss: issuer, groups };
        const roles = this.#policy().rolesFor({ subject, issuer, groups, scopes: [], expiresAt, claims });
        op.identity = { subject, issuer, groups, roles, expiresAt, claims };
        return next(op);
      }
      const jit = this.#jit();
      if (jit?.owns(op.credential.token)) {
        try {
          op.identity = await jit.verify(op.credential.token, op.credential.username);
        } catch (err) {
          if (err instanceof CredentialRefused && err.credentialId) op.meta.credential_id = err.credentialId;
          throw err;
        }
        return next(op);
      }
      const token = await this.#verifier.verify(op.credential.token);
      op.identity = {
        subject: token.subject,
        issuer: token.issuer,
        groups: token.groups,
        roles: this.#policy().rolesFor(token),
        expiresAt: token.expiresAt,
        claims: token.claims,
      };
    }
    return next(op);
  }
}
