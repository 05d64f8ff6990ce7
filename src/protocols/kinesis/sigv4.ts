import { createHash, timingSafeEqual } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { NodeSha256 } from '../../upstream/sha256.ts';

/**
 * Verification of AWS Signature Version 4 on incoming Kinesis requests. The expected
 * signature is computed by @smithy/signature-v4 (the same signer the AWS SDK uses) from
 * the secret the gateway derives for the access key id; only the parsing of the
 * Authorization header, the clock-skew and replay checks and the constant-time compare are
 * ours.
 */

/** Why a signature was refused, named after the AWS error the client gets. */
export type SigV4Failure =
  | { error: 'IncompleteSignatureException'; message: string }
  | { error: 'UnrecognizedClientException'; message: string }
  | { error: 'InvalidSignatureException'; message: string };

export interface SignedRequest {
  method: string;
  path: string;
  /** lower-case header names as received (HTTP/2 pseudo-headers included) */
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
}

export interface VerifiedSignature {
  accessKeyId: string;
  /** the X-Amz-Security-Token: for gateway-issued keys, the just-in-time credential (a JWT) */
  sessionToken: string | undefined;
  region: string;
  signature: string;
}

/** What the headers of a SigV4 request claim, checked as far as headers allow (`SigV4Verifier.check`). */
export interface SignatureClaim {
  accessKeyId: string;
  sessionToken: string | undefined;
  region: string;
}

interface CheckedHeaders extends SignatureClaim {
  signature: string;
  secret: string;
  signedAt: number;
  names: string[];
}

export interface SigV4Options {
  /** secret access key of an access key id, undefined when the id is unknown */
  secretFor: (accessKeyId: string) => string | undefined;
  /** largest accepted difference between X-Amz-Date and the gateway's clock */
  maxSkewSeconds: number;
  /** the service in the credential scope (kinesis) */
  service: string;
  /** bounds the replay cache; beyond it, the oldest entries are forgotten first */
  maxRememberedSignatures?: number;
  /**
   * A replay cache shared by several instances (Redis): resolves true when `signature` was
   * not seen before and is now remembered for `ttlMs`. Without it, each instance remembers
   * the signatures it verified itself.
   */
  remember?: (signature: string, ttlMs: number) => Promise<boolean>;
  /**
   * Accept `x-amz-content-sha256: UNSIGNED-PAYLOAD` (a signature that does not cover the
   * body). Off unless the listener allows it and is on TLS: without TLS the body could be
   * changed in transit under a valid signature.
   */
  allowUnsignedPayload?: boolean;
  now?: () => number;
}

const AUTH = /^AWS4-HMAC-SHA256 (.+)$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const HEX64 = /^[0-9a-f]{64}$/;
const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
const MAX_SIGNERS = 10_000;

export function isSigV4(authorization: string | undefined): boolean {
  return authorization !== undefined && authorization.startsWith('AWS4-HMAC-SHA256 ');
}

export class SigV4Verifier {
  readonly #options: SigV4Options;
  readonly #now: () => number;
  /** signature -> epoch ms after which its date is outside the skew window anyway */
  readonly #seen = new Map<string, number>();
  readonly #maxSeen: number;
  /** One signer per access key, region and secret, reused between calls. Bounded, oldest first: keys are chosen by callers. */
  readonly #signers = new Map<string, SignatureV4>();

  constructor(options: SigV4Options) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#maxSeen = options.maxRememberedSignatures ?? 1_000_000;
  }

  /**
   * Everything that needs only the headers: the Authorization header's shape, the scope, the
   * date and its skew, what the signature must cover, whether the access key is one the gateway
   * issues, and UNSIGNED-PAYLOAD. A listener calls it before reading the body; `verify` repeats
   * it and then checks the signature over the body.
   */
  check(headers: SignedRequest['headers']): SignatureClaim | SigV4Failure {
    const checked = this.#checkHeaders(headers);
    return 'error' in checked ? checked : { accessKeyId: checked.accessKeyId, sessionToken: checked.sessionToken, region: checked.region };
  }

  #checkHeaders(headers: SignedRequest['headers']): CheckedHeaders | SigV4Failure {
    const authorization = header(headers, 'authorization') ?? '';
    const m = AUTH.exec(authorization);
    if (!m) return { error: 'IncompleteSignatureException', message: 'the Authorization header is not AWS4-HMAC-SHA256' };
    const fields = new Map<string, string>();
    for (const part of m[1]!.split(',')) {
      const eq = part.indexOf('=');
      if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
    }
    const credential = fields.get('Credential');
    const signedHeaders = fields.get('SignedHeaders');
    const signature = fields.get('Signature');
    if (!credential || !signedHeaders || !signature) {
      return { error: 'IncompleteSignatureException', message: 'the Authorization header needs Credential, SignedHeaders and Signature' };
    }
    const scope = credential.split('/');
    if (scope.length !== 5 || scope[4] !== 'aws4_request' || scope[3] !== this.#options.service) {
      return { error: 'IncompleteSignatureException', message: `the credential scope must be <key>/<date>/<region>/${this.#options.service}/aws4_request` };
    }
    const [accessKeyId, scopeDate, region] = scope as [string, string, string];
    const amzDate = header(headers, 'x-amz-date');
    const d = amzDate ? AMZ_DATE.exec(amzDate) : null;
    if (!amzDate || !d) return { error: 'IncompleteSignatureException', message: 'X-Amz-Date (YYYYMMDDThhmmssZ) is required' };
    if (!amzDate.startsWith(scopeDate)) return { error: 'InvalidSignatureException', message: 'the credential scope date does not match X-Amz-Date' };
    const names = signedHeaders.split(';');
    if (!names.includes('x-amz-date') || !(names.includes('host') || names.includes(':authority'))) {
      return { error: 'InvalidSignatureException', message: 'the signature must cover host (or :authority) and x-amz-date' };
    }
    const sessionToken = header(headers, 'x-amz-security-token');
    if (sessionToken !== undefined && !names.includes('x-amz-security-token')) {
      return { error: 'InvalidSignatureException', message: 'the signature must cover x-amz-security-token' };
    }

    const secret = this.#options.secretFor(accessKeyId);
    if (secret === undefined) return { error: 'UnrecognizedClientException', message: 'The security token included in the request is invalid.' };

    const signedAt = Date.UTC(+d[1]!, +d[2]! - 1, +d[3]!, +d[4]!, +d[5]!, +d[6]!);
    const now = this.#now();
    if (Math.abs(now - signedAt) > this.#options.maxSkewSeconds * 1000) {
      return {
        error: 'InvalidSignatureException',
        message: `Signature expired: ${amzDate} is outside the accepted window of ${this.#options.maxSkewSeconds} s around ${amzTimestamp(now)}`,
      };
    }
    if (header(headers, 'x-amz-content-sha256') === UNSIGNED_PAYLOAD && !this.#options.allowUnsignedPayload) {
      return { error: 'InvalidSignatureException', message: 'UNSIGNED-PAYLOAD is not accepted: sign the body (x-amz-content-sha256 = its SHA-256)' };
    }
    for (const name of names) {
      if (header(headers, name) === undefined) return { error: 'InvalidSignatureException', message: `signed header ${name} is missing from the request` };
    }
    return { accessKeyId, sessionToken, region, signature, secret, signedAt, names };
  }

  async verify(req: SignedRequest): Promise<VerifiedSignature | SigV4Failure> {
    const checked = this.#checkHeaders(req.headers);
    if ('error' in checked) return checked;
    const { accessKeyId, sessionToken, region, signature, secret, signedAt, names } = checked;
    const now = this.#now();
    const skewMs = this.#options.maxSkewSeconds * 1000;

    // the signer trusts x-amz-content-sha256 when present, so check it against the body here
    // (UNSIGNED-PAYLOAD got this far only where it is allowed)
    const bodyHash = createHash('sha256').update(req.body).digest('hex');
    const claimed = header(req.headers, 'x-amz-content-sha256');
    if (claimed !== undefined && claimed !== UNSIGNED_PAYLOAD && claimed !== bodyHash) {
      return { error: 'InvalidSignatureException', message: 'x-amz-content-sha256 does not match the request body' };
    }

    const signedHeaderValues: Record<string, string> = {};
    for (const name of names) signedHeaderValues[name] = header(req.headers, name)!;
    // the body's hash is handed to the signer (it would hash the body again): as the header it
    // reads first, kept out of the canonical headers unless the client signed it
    const unsigned = new Set<string>();
    if (signedHeaderValues['x-amz-content-sha256'] === undefined) {
      signedHeaderValues['x-amz-content-sha256'] = bodyHash;
      unsigned.add('x-amz-content-sha256');
    }
    const [path, query] = splitPath(req.path);
    const signed = await this.#signer(accessKeyId, secret, region).sign(
      { method: req.method, protocol: 'http:', hostname: '', path, query, headers: signedHeaderValues, body: req.body },
      { signingDate: new Date(signedAt), signableHeaders: new Set(names), unsignableHeaders: unsigned },
    );
    const expected = /Signature=([0-9a-f]+)/.exec(String(signed.headers.authorization ?? signed.headers.Authorization ?? ''))?.[1] ?? '';
    if (!HEX64.test(signature) || !HEX64.test(expected) || !timingSafeEqual(Buffer.from(expected, 'hex'), Buffer.from(signature, 'hex'))) {
      return { error: 'InvalidSignatureException', message: 'The request signature we calculated does not match the signature you provided.' };
    }

    // a valid signature is accepted once: a copy sent again within the window is a replay
    const replay = { error: 'InvalidSignatureException', message: 'this signed request was already received (replay)' } as const;
    if (this.#options.remember) {
      // remembered until its date leaves the window (and at least a second)
      if (!(await this.#options.remember(signature, Math.max(1000, signedAt + skewMs - now)))) return replay;
      return { accessKeyId, sessionToken, region, signature };
    }
    this.#forgetExpired(now);
    if (this.#seen.has(signature)) return replay;
    this.#seen.set(signature, signedAt + skewMs);
    if (this.#seen.size > this.#maxSeen) this.#seen.delete(this.#seen.keys().next().value!);
    return { accessKeyId, sessionToken, region, signature };
  }

  #signer(accessKeyId: string, secret: string, region: string): SignatureV4 {
    const key = `${accessKeyId}\n${region}\n${secret}`;
    let signer = this.#signers.get(key);
    if (!signer) {
      signer = new SignatureV4({ credentials: { accessKeyId, secretAccessKey: secret }, region, service: this.#options.service, sha256: NodeSha256, applyChecksum: false });
      this.#signers.set(key, signer);
      if (this.#signers.size > MAX_SIGNERS) this.#signers.delete(this.#signers.keys().next().value!);
    }
    return signer;
  }

  #forgetExpired(now: number): void {
    // roughly time-ordered (insertion order); stop at the first entry still inside the window
    for (const [sig, until] of this.#seen) {
      if (until > now) break;
      this.#seen.delete(sig);
    }
  }
}

function header(headers: SignedRequest['headers'], name: string): string | undefined {
  const v = headers[name];
  return v === undefined ? undefined : Array.isArray(v) ? v.join(',') : v;
}

function splitPath(raw: string): [string, Record<string, string | string[]>] {
  const q = raw.indexOf('?');
  if (q < 0) return [raw, {}];
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(raw.slice(q + 1))) {
    const prev = query[k];
    query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return [raw.slice(0, q), query];
}

export function amzTimestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}
