// SASL client first messages the gateway terminates. Both carry a JWT that the identity
// module verifies; nothing of them is forwarded to the broker.

export const MECHANISMS = ['OAUTHBEARER', 'PLAIN'] as const;
export type Mechanism = (typeof MECHANISMS)[number];

export class SaslError extends Error {
  override name = 'SaslError';
}

/** RFC 7628 client response: `n,[a=authzid],` 0x01 `auth=Bearer <token>` 0x01 [k=v 0x01]* 0x01 */
export function parseOauthBearer(bytes: Uint8Array): { token: string; authzid?: string } {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  const sep = text.indexOf('\x01');
  if (sep === -1) throw new SaslError('OAUTHBEARER: the client response has no key/value section');
  const gs2 = text.slice(0, sep);
  const m = /^[ny],(?:a=([^,]*))?,$/.exec(gs2);
  if (!m) throw new SaslError('OAUTHBEARER: malformed GS2 header');
  if (!text.endsWith('\x01\x01')) throw new SaslError('OAUTHBEARER: the client response is not terminated');
  let token: string | undefined;
  for (const kv of text.slice(sep + 1, -2).split('\x01')) {
    if (kv === '') continue;
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new SaslError('OAUTHBEARER: malformed key/value pair');
    if (kv.slice(0, eq) === 'auth') {
      const b = /^Bearer +(\S+)$/i.exec(kv.slice(eq + 1));
      if (!b) throw new SaslError('OAUTHBEARER: auth must be "Bearer <token>"');
      token = b[1]!;
    }
  }
  if (!token) throw new SaslError('OAUTHBEARER: no auth=Bearer value');
  return m[1] ? { token, authzid: m[1] } : { token };
}

/** RFC 4616: [authzid] NUL authcid NUL passwd; the password must be a JWT the identity module verifies. */
export function parsePlain(bytes: Uint8Array): { username: string; token: string } {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  const parts = text.split('\0');
  if (parts.length !== 3 || !parts[1] || !parts[2]) throw new SaslError('PLAIN: expected authzid NUL username NUL password');
  return { username: parts[1], token: parts[2] };
}

/** Server error message for a failed OAUTHBEARER exchange (RFC 7628 section 3.2.2). */
export function oauthBearerFailure(): Uint8Array {
  return Buffer.from(JSON.stringify({ status: 'invalid_token' }));
}
