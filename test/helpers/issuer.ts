import { createServer, type Server } from 'node:http';
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import type { ConfigInput } from './config.ts';

/**
 * An OIDC issuer whose signing key the test holds (discovery + JWKS on loopback): it signs
 * tokens bent one way each, and can be taken offline.
 */
export interface TestIssuer {
  url: string;
  key: CryptoKey;
  publicJwk: JWK;
  kid: string;
  server: Server;
  close(): Promise<void>;
}

export async function startTestIssuer(kid = 'test-key-1'): Promise<TestIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  const server = createServer((req, res) => {
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    res.setHeader('content-type', 'application/json');
    if (req.url === '/.well-known/openid-configuration') res.end(JSON.stringify({ issuer: base, jwks_uri: `${base}/jwks` }));
    else if (req.url === '/jwks') res.end(JSON.stringify({ keys: [publicJwk] }));
    else res.writeHead(404).end('{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    url,
    key: privateKey,
    publicJwk,
    kid,
    server,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Makes a test config draft trust `issuer` too (listed first, as the example's issuer is). */
export function trustIssuer(c: ConfigInput, issuer: TestIssuer): void {
  c.identity.issuers.unshift({ issuer: issuer.url, audience: 'streamgate', algorithms: ['ES256'], groupsClaim: 'groups', clockToleranceSeconds: 0 });
}
