// Development OpenID provider: a real, certified oidc-provider instance on loopback that
// issues signed JWT access tokens via the client_credentials grant, so the gateway's
// authentication path is exercised against genuine tokens and a genuine JWKS endpoint.
// Not for production use: keys live in memory and client secrets are hard-coded.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
// undici's request, not fetch: fetch refuses the WHATWG "bad ports" (e.g. 6000), which an
// explicitly chosen IdP port may hit.
import { request } from 'undici';

export interface DevClient {
  id: string;
  secret: string;
  groups: string[];
  tokenTtlSeconds?: number;
}

export interface IdpOptions {
  port?: number; // 0 = random
  host?: string; // default 127.0.0.1
  issuer?: string; // default http://<host>:<port>; set it when clients reach the IdP by another name (containers)
  audience?: string; // default 'streamgate'
  clients?: DevClient[];
}

export interface RunningIdp {
  issuer: string;
  jwksUri: string;
  tokenEndpoint: string;
  discoveryUrl: string;
  audience: string;
  clients: DevClient[];
  token(clientId: string, opts?: { audience?: string }): Promise<string>;
  stop(): Promise<void>;
}

// Demo identities. Secrets are deliberately trivial: this IdP is for local development
// and tests only and must never back a real deployment.
export const DEV_CLIENTS: DevClient[] = [
  { id: 'alice', secret: 'alice-secret', groups: ['payments-writers', 'analysts'] },
  { id: 'bob', secret: 'bob-secret', groups: ['analysts'] },
  // an analyst who may also read what encrypt rules protect (decrypt rules for fraud-analyst)
  { id: 'fran', secret: 'fran-secret', groups: ['analysts', 'fraud-analysts'] },
  { id: 'mallory', secret: 'mallory-secret', groups: [] },
  { id: 'ops', secret: 'ops-secret', groups: ['platform-admins', 'approvers'] },
  // approves requests held for a human (policy.approvals) and nothing else
  { id: 'carol', secret: 'carol-secret', groups: ['approvers'] },
  { id: 'shortlived', secret: 'shortlived-secret', groups: ['payments-writers'], tokenTtlSeconds: 2 },
];

// A second, known resource server so tests can obtain a valid token minted for someone else.
export const OTHER_AUDIENCE = 'other-service';

const DEFAULT_TTL_SECONDS = 3600;
const SIGNING_ALG = 'ES256';

// RFC 8707 resource indicators must be absolute URIs, while the gateway expects a plain
// `aud` such as 'streamgate'; so plain names map to a URN and the resource server's
// `audience` puts the plain name back into the token. Absolute URIs pass through as-is.
export function resourceIndicatorFor(audience: string): string {
  return URL.canParse(audience) ? audience : `urn:streamgate:audience:${audience}`;
}

// Just the slice of oidc-provider's surface used here (the package ships no type declarations).
interface OidcTokenLike { kind?: string; clientId?: string }
interface OidcProviderInstance {
  callback(): (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void;
}
interface OidcModule {
  default: new (issuer: string, config: Record<string, unknown>) => OidcProviderInstance;
  errors: { InvalidTarget: new (description?: string) => Error };
}

// Loaded lazily through a non-literal specifier: importing this module stays cheap, and
// TypeScript does not demand declarations the package does not ship.
const OIDC_PROVIDER_MODULE: string = 'oidc-provider';

// Minimal in-memory storage adapter. JWT access tokens are never persisted, so this only
// exists to replace oidc-provider's built-in one, which warns loudly on every start.
type AdapterStore = Map<string, { payload: Record<string, unknown>; expiresAt: number }>;
class MapAdapter {
  name: string;
  store: AdapterStore;
  constructor(name: string, store: AdapterStore) {
    this.name = name;
    this.store = store;
  }
  #key(id: string): string {
    return `${this.name}:${id}`;
  }
  async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void> {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    this.store.set(this.#key(id), { payload, expiresAt });
  }
  async find(id: string): Promise<Record<string, unknown> | undefined> {
    const entry = this.store.get(this.#key(id));
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.store.delete(this.#key(id));
      return undefined;
    }
    return entry.payload;
  }
  async findByUid(_uid: string): Promise<undefined> {
    return undefined; // sessions are not used (no interactive flows)
  }
  async findByUserCode(_code: string): Promise<undefined> {
    return undefined; // device flow is disabled
  }
  async consume(id: string): Promise<void> {
    const entry = await this.find(id);
    if (entry) entry['consumed'] = Math.floor(Date.now() / 1000);
  }
  async destroy(id: string): Promise<void> {
    this.store.delete(this.#key(id));
  }
  async revokeByGrantId(_grantId: string): Promise<void> {
    // client_credentials tokens carry no grant
  }
}

function issuerHost(host: string): string {
  // A wildcard bind address is not something clients can connect to; advertise loopback.
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

export async function startIdp(opts: IdpOptions = {}): Promise<RunningIdp> {
  const host = opts.host ?? '127.0.0.1';
  const audience = opts.audience ?? 'streamgate';
  const clients = (opts.clients ?? DEV_CLIENTS).map((c) => ({ ...c, groups: [...c.groups] }));
  const byId = new Map<string, DevClient>();
  for (const c of clients) {
    if (byId.has(c.id)) throw new Error(`duplicate dev client id: ${c.id}`);
    byId.set(c.id, c);
  }

  const { default: Provider, errors } = (await import(OIDC_PROVIDER_MODULE)) as OidcModule;

  // Fresh key per start: tokens from an earlier run must not verify against this one.
  const { privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.alg = SIGNING_ALG;
  jwk.use = 'sig';

  // Bind first so the issuer can carry the real port when port 0 is requested.
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = opts.issuer ?? `http://${issuerHost(host)}:${port}`;

  const audiences = new Map<string, string>(); // resource indicator -> aud claim
  for (const aud of [audience, OTHER_AUDIENCE]) audiences.set(resourceIndicatorFor(aud), aud);
  const defaultResource = resourceIndicatorFor(audience);

  const adapterStore: AdapterStore = new Map(); // per instance: several IdPs may share a process
  const discoveryUrl = `${issuer}/.well-known/openid-configuration`;
  let discovery: { jwks_uri: string; token_endpoint: string };
  try {
    const provider: OidcProviderInstance = new Provider(issuer, {
      adapter: (name: string) => new MapAdapter(name, adapterStore),
      jwks: { keys: [jwk] },
      clients: clients.map((c) => ({
        client_id: c.id,
        client_secret: c.secret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      })),
      // The default RS256 would need an RSA key we do not generate.
      clientDefaults: {
        grant_types: ['client_credentials'],
        response_types: [],
        id_token_signed_response_alg: SIGNING_ALG,
        token_endpoint_auth_method: 'client_secret_basic',
      },
      features: {
        clientCredentials: { enabled: true },
        devInteractions: { enabled: false }, // no login UI needed, and it logs warnings
        resourceIndicators: {
          enabled: true,
          // Requests without `resource` still get a gateway-bound JWT, not an opaque token.
          defaultResource: async (_ctx: unknown, _client: unknown, oneOf?: string[]) =>
            oneOf ?? defaultResource,
          getResourceServerInfo: async (_ctx: unknown, indicator: string) => {
            const aud = audiences.get(indicator);
            if (aud === undefined) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
            return { scope: '', audience: aud, accessTokenFormat: 'jwt', jwt: { sign: { alg: SIGNING_ALG } } };
          },
          useGrantedResource: async () => true,
        },
      },
      // sub already defaults to the client id for client_credentials tokens; the extra
      // claims are spread before it, so they cannot override sub, iss, aud or exp.
      extraTokenClaims: async (_ctx: unknown, token: OidcTokenLike) => {
        const client = token.clientId === undefined ? undefined : byId.get(token.clientId);
        if (!client) return undefined;
        return { groups: [...client.groups] };
      },
      ttl: {
        ClientCredentials: (_ctx: unknown, token: OidcTokenLike) =>
          (token.clientId === undefined ? undefined : byId.get(token.clientId)?.tokenTtlSeconds) ??
          DEFAULT_TTL_SECONDS,
      },
      // Only machine clients; keep the advertised surface small.
      scopes: ['openid'],
      responseTypes: ['none'],
    });
    server.on('request', provider.callback());

    // Read endpoints back from discovery rather than assuming oidc-provider's default paths.
    // asked on the bound address: the issuer's own name may only resolve for other containers
    const res = await request(`http://${issuerHost(host)}:${port}/.well-known/openid-configuration`);
    discovery = (await res.body.json()) as typeof discovery;
    if (res.statusCode !== 200) throw new Error(`discovery returned HTTP ${res.statusCode}`);
  } catch (err) {
    // A bad configuration must not leave the port bound (and the process alive).
    server.closeAllConnections();
    server.close();
    throw err;
  }
  const { jwks_uri: jwksUri, token_endpoint: tokenEndpoint } = discovery;

  async function token(clientId: string, tokenOpts: { audience?: string } = {}): Promise<string> {
    const client = byId.get(clientId);
    if (!client) throw new Error(`unknown dev client: ${clientId}`);
    const body = new URLSearchParams({ grant_type: 'client_credentials' });
    body.set('resource', resourceIndicatorFor(tokenOpts.audience ?? audience));
    // RFC 6749 2.3.1: id and secret are form-encoded before base64.
    const basic = Buffer.from(
      `${encodeURIComponent(client.id)}:${encodeURIComponent(client.secret)}`,
    ).toString('base64');
    const res = await request(tokenEndpoint, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: body.toString(),
    });
    const json = (await res.body.json()) as { access_token?: string; error?: string; error_description?: string };
    if (res.statusCode !== 200 || typeof json.access_token !== 'string') {
      const reason = [json.error, json.error_description].filter(Boolean).join(': ');
      throw new Error(`token request for ${clientId} failed: HTTP ${res.statusCode} ${reason}`.trim());
    }
    return json.access_token;
  }

  let stopped: Promise<void> | undefined;
  function stop(): Promise<void> {
    stopped ??= new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      // Clients keep connections alive; without this close() waits for them to idle out.
      server.closeAllConnections();
    });
    return stopped;
  }

  return { issuer, jwksUri, tokenEndpoint, discoveryUrl, audience, clients, token, stop };
}

if (import.meta.main) {
  const port = Number(process.env['IDP_PORT'] ?? 9400);
  const started = Date.now();
  // IDP_HOST=0.0.0.0 and IDP_ISSUER=http://idp:9400 in a container network (docker-compose.yml)
  const idp = await startIdp({ port, host: process.env['IDP_HOST'], issuer: process.env['IDP_ISSUER'] });
  const example = idp.clients[0];
  const lines = [
    `streamgate dev IdP up in ${Date.now() - started} ms (development only: in-memory keys, demo secrets)`,
    `  issuer          ${idp.issuer}`,
    `  discovery       ${idp.discoveryUrl}`,
    `  jwks_uri        ${idp.jwksUri}`,
    `  token_endpoint  ${idp.tokenEndpoint}`,
    `  audience        ${idp.audience} (resource ${resourceIndicatorFor(idp.audience)}, the default)`,
    `  clients         ${idp.clients.map((c) => `${c.id}[${c.groups.join(',')}]`).join(' ')}`,
    '',
    'Get a token:',
    example
      ? `  curl -s -u ${example.id}:${example.secret} -d grant_type=client_credentials ${idp.tokenEndpoint}`
      : '  (no clients configured)',
    `  add -d resource=${resourceIndicatorFor(OTHER_AUDIENCE)} for a token the gateway must reject`,
  ];
  console.log(lines.join('\n'));
  const shutdown = (): void => {
    void idp.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}
