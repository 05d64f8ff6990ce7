import { after } from 'node:test';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DescribeStreamSummaryCommand, KinesisClient } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { SignatureV4 } from '@smithy/signature-v4';
import { Pool } from 'undici';
import { startKinesis, type RunningKinesis } from '../../src/dev/kinesis.ts';
import { NodeSha256 } from '../../src/upstream/sha256.ts';
import type { ConfigInput } from './config.ts';

/** What reached the Kinesis endpoint: every request the capturing proxy forwarded. */
export interface Captured {
  target: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface CapturedKinesis {
  kinesalite: RunningKinesis;
  /** the capturing proxy in front of kinesalite: the gateway's upstream endpoint */
  endpoint: string;
  captured: Captured[];
}

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

/** kinesalite on a free port with a recording proxy in front, so tests see exactly what the upstream received. */
export async function startCapturedKinesis(): Promise<CapturedKinesis> {
  const kinesalite = await startKinesis({ port: 0, settleMs: 20 });
  cleanups.push(() => kinesalite.stop());
  const pool = new Pool(kinesalite.endpoint, { connections: 8 });
  cleanups.push(() => pool.close());
  const captured: Captured[] = [];
  const proxy: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      captured.push({ target: String(req.headers['x-amz-target'] ?? ''), headers: req.headers, body: body.toString() });
      const headers = { ...req.headers };
      delete headers.connection;
      pool
        .request({ method: 'POST', path: req.url ?? '/', headers, body })
        .then(async (up) => {
          const payload = Buffer.from(await up.body.arrayBuffer());
          res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type'] ?? 'application/x-amz-json-1.1'), 'content-length': payload.byteLength });
          res.end(payload);
        })
        .catch(() => {
          res.writeHead(502);
          res.end();
        });
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        proxy.closeAllConnections();
        proxy.close(() => r());
      }),
  );
  return { kinesalite, endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, captured };
}

/** Adds a Kinesis listener and upstream (`endpoint`) to a test config draft. */
export function withKinesis(c: ConfigInput, endpoint: string, extra: { skewSeconds?: number } = {}): void {
  c.listeners.kinesis = { port: 0, maxClockSkewSeconds: extra.skewSeconds ?? 300 };
  c.upstream.kinesis = { endpoint, credentials: { accessKeyId: 'GATEWAYKEYID', secretAccessKey: 'gateway-secret-key' } };
}

/** An SDK v3 client for the gateway (HTTP/2 by default, as the SDK ships) or, with `http1`, over NodeHttpHandler. */
export function kinesisClient(endpoint: string, credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string; expiration?: Date }, opts: { http1?: boolean; bearer?: string } = {}): KinesisClient {
  const client = new KinesisClient({
    endpoint,
    region: 'us-east-1',
    credentials,
    maxAttempts: 1,
    ...(opts.http1 ? { requestHandler: new NodeHttpHandler() } : {}),
  });
  if (opts.bearer) {
    const token = opts.bearer;
    // an OIDC token instead of SigV4: replace what the SDK signed
    client.middlewareStack.addRelativeTo(
      ((next: (args: { request: { headers: Record<string, string> } }) => Promise<unknown>) => async (args: { request: { headers: Record<string, string> } }) => {
        const h = args.request.headers;
        for (const k of Object.keys(h)) if (/^(authorization|x-amz-security-token)$/i.test(k)) delete h[k];
        h.authorization = `Bearer ${token}`;
        return next(args);
      }) as never,
      { relation: 'after', toMiddleware: 'httpSigningMiddleware', name: 'streamgateBearer', override: true } as never,
    );
  }
  cleanups.push(async () => client.destroy());
  return client;
}

/** a Kinesis client whose every request carries the OIDC token `token` as a bearer token */
export function bearerClient(endpoint: string, token: string, http1 = false): KinesisClient {
  return kinesisClient(endpoint, { accessKeyId: 'unused', secretAccessKey: 'unused' }, { bearer: token, http1 });
}

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration: Date;
}

/** A just-in-time AWS key pair from the gateway's token exchange (POST /v1/token on the HTTP listener). */
export async function jitCredentials(httpBase: string, subjectToken: string, scope: string, expiresIn?: number): Promise<AwsCredentials> {
  const form = new URLSearchParams({
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token: subjectToken,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    scope,
    ...(expiresIn ? { expires_in: String(expiresIn) } : {}),
  });
  const res = await fetch(`${httpBase}/v1/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form });
  const body = (await res.json()) as { aws?: { accessKeyId: string; secretAccessKey: string; sessionToken: string; expiration: string }; error_description?: string };
  if (res.status !== 200 || !body.aws) throw new Error(`token exchange failed: ${res.status} ${body.error_description ?? JSON.stringify(body)}`);
  // the SDK wants a Date (and refreshes nothing: a static key pair)
  return { ...body.aws, expiration: new Date(body.aws.expiration) };
}

/** Waits until `stream` is ACTIVE (kinesalite creates streams asynchronously). */
export async function waitActive(client: KinesisClient, stream: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const d = await client.send(new DescribeStreamSummaryCommand({ StreamName: stream }));
    if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${stream} did not become ACTIVE`);
}

/**
 * The headers of a hand-signed Kinesis call (what an SDK would send), signed with
 * @smithy/signature-v4 for `endpoint` (`http://host:port`). `payloadHash` goes into
 * x-amz-content-sha256 (signed, and used by the signer instead of hashing the body), e.g.
 * 'UNSIGNED-PAYLOAD'; without it the body's SHA-256 is signed.
 */
export async function signKinesisCall(
  endpoint: string,
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string },
  api: string,
  body: string | Uint8Array,
  opts: { payloadHash?: string; contentLength?: number } = {},
): Promise<Record<string, string>> {
  const url = new URL(endpoint);
  const signer = new SignatureV4({ credentials, region: 'us-east-1', service: 'kinesis', sha256: NodeSha256 });
  const headers: Record<string, string> = {
    host: url.host,
    'content-type': 'application/x-amz-json-1.1',
    'x-amz-target': `Kinesis_20131202.${api}`,
    'content-length': String(opts.contentLength ?? Buffer.byteLength(body)),
  };
  if (opts.payloadHash) headers['x-amz-content-sha256'] = opts.payloadHash;
  const signed = await signer.sign({ method: 'POST', protocol: url.protocol, hostname: url.hostname, port: Number(url.port), path: '/', headers, body });
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(signed.headers)) out[k.toLowerCase()] = String(v);
  return out;
}
