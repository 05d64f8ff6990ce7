import { timingSafeEqual } from 'node:crypto';
import type { OidcVerifier } from '../identity/oidc.ts';
import { accessKeyIdFor } from '../jit/access-keys.ts';
import { GatewayError, type Control, type Identity, type Next, type Operation, type UpstreamResult } from '../operation.ts';
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
        let identity: Identity;
        try {
          identity = await jit.verify(op.credential.token, op.credential.username);
        } catch (err) {
          if (err instanceof CredentialRefused && err.credentialId) op.meta.credential_id = err.credentialId;
          throw err;
        }
        if (op.credential.accessKeyId !== undefined) bindAccessKey(identity, op.credential.accessKeyId);
        op.identity = identity;
        return next(op);
      }
      // only the gateway's own credentials have access keys
      if (op.credential.accessKeyId !== undefined) bindAccessKey(undefined, op.credential.accessKeyId);
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

/**
 * SigV4 (Kinesis): the request was signed with an access key, and the session token is the
 * credential. The key must be the one derived from that credential, or a key pair could be
 * signed with one credential's secret and carry another's token.
 */
function bindAccessKey(identity: Identity | undefined, accessKeyId: string): void {
  const credentialId = identity?.credentialId;
  const expected = Buffer.from(credentialId ? accessKeyIdFor(credentialId) : '');
  const actual = Buffer.from(accessKeyId);
  if (!credentialId || expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
    throw new GatewayError('unauthenticated', 'the access key does not belong to the credential in X-Amz-Security-Token', { rule: 'sigv4.access-key' });
  }
}
