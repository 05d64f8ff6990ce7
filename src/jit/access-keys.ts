import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

/**
 * AWS-style key pairs for just-in-time credentials (Kinesis SigV4). Nothing is stored:
 * the access key id is derived from the credential id and the secret from the access key
 * id with an HMAC under the gateway's key-derivation secret, so every instance holding that
 * secret can verify a signature. The credential itself (the gateway-signed JWT) travels as
 * the SigV4 session token (X-Amz-Security-Token), which carries identity, scope and expiry.
 */
const PREFIX = 'SGJ';

export function accessKeyIdFor(credentialId: string): string {
  // AWS access key ids are upper-case alphanumerics; SDKs do not care about the length
  return PREFIX + credentialId.replace(/[^A-Za-z0-9]/g, '').toUpperCase();
}

/** derived secrets remembered (a signed call asks twice: before and after its body is read) */
const REMEMBERED_SECRETS = 10_000;

export class AccessKeys {
  readonly #secret: KeyObject;
  /** access key id -> its secret, oldest first (bounded: ids are chosen by callers) */
  readonly #derived = new Map<string, string>();

  constructor(derivationSecret: Uint8Array) {
    if (derivationSecret.byteLength < 32) throw new Error('the access key derivation secret needs at least 32 bytes');
    // one key object: an HMAC keyed with raw bytes imports them again on every call
    this.#secret = createSecretKey(derivationSecret);
  }

  /** the secret access key of `accessKeyId`, or undefined when the id is not one this gateway issues */
  secretFor(accessKeyId: string): string | undefined {
    if (!accessKeyId.startsWith(PREFIX)) return undefined;
    let secret = this.#derived.get(accessKeyId);
    if (secret === undefined) {
      secret = createHmac('sha256', this.#secret).update(accessKeyId).digest('base64url');
      this.#derived.set(accessKeyId, secret);
      if (this.#derived.size > REMEMBERED_SECRETS) this.#derived.delete(this.#derived.keys().next().value!);
    }
    return secret;
  }

  /** whether `accessKeyId` belongs to the credential `credentialId` (constant time) */
  matches(accessKeyId: string, credentialId: string): boolean {
    const expected = Buffer.from(accessKeyIdFor(credentialId));
    const actual = Buffer.from(accessKeyId);
    return expected.length === actual.length && timingSafeEqual(expected, actual);
  }
}
