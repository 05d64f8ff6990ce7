import { SignatureV4 } from '@smithy/signature-v4';
import { Pool } from 'undici';
import type { KinesisUpstreamConfig } from '../config/schema.ts';
import { GatewayError } from '../operation.ts';
import { NodeSha256 } from './sha256.ts';

/** An error answer of the Kinesis endpoint, kept whole so the listener can pass it on. */
export class KinesisError extends Error {
  readonly type: string;
  readonly status: number;

  constructor(type: string, message: string, status: number) {
    super(message);
    this.name = 'KinesisError';
    this.type = type;
    this.status = status;
  }
}

const JSON_11 = 'application/x-amz-json-1.1';

/**
 * The Kinesis endpoint the gateway forwards to: one undici keep-alive pool, every request
 * signed afresh with the gateway's own AWS credentials (@smithy/signature-v4). Nothing of
 * the client's request but the JSON body and the target reaches it, so client credentials
 * and tokens never do.
 */
export class KinesisUpstream {
  readonly #pool: Pool;
  readonly #signer: SignatureV4;
  readonly #url: URL;
  readonly #timeoutMs: number;

  constructor(config: KinesisUpstreamConfig) {
    this.#url = new URL(config.endpoint);
    this.#timeoutMs = config.timeoutMs;
    this.#pool = new Pool(this.#url.origin, { connections: config.connections, keepAliveTimeout: 30_000, pipelining: 1 });
    this.#signer = new SignatureV4({
      credentials: {
        accessKeyId: config.credentials.accessKeyId,
        secretAccessKey: config.credentials.secretAccessKey,
        ...(config.credentials.sessionToken ? { sessionToken: config.credentials.sessionToken } : {}),
      },
      region: config.region,
      service: 'kinesis',
      sha256: NodeSha256,
    });
  }

  /** Calls `Kinesis_20131202.<action>` with a JSON body; resolves with the parsed answer, rejects with a GatewayError (cause: KinesisError for service errors). */
  async call(action: string, body: unknown): Promise<Record<string, unknown>> {
    const payload = Buffer.from(JSON.stringify(body));
    const host = this.#url.host;
    const signed = await this.#signer.sign({
      method: 'POST',
      protocol: this.#url.protocol,
      hostname: this.#url.hostname,
      path: this.#url.pathname,
      headers: { host, 'content-type': JSON_11, 'x-amz-target': `Kinesis_20131202.${action}`, 'content-length': String(payload.byteLength) },
      body: payload,
    });
    let res;
    try {
      res = await this.#pool.request({
        method: 'POST',
        path: this.#url.pathname,
        headers: signed.headers,
        body: payload,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      });
    } catch (err) {
      throw new GatewayError('upstream-unavailable', `the Kinesis endpoint does not answer (${errorCode(err)})`, { cause: err });
    }
    const text = await res.body.text();
    let parsed: Record<string, unknown> = {};
    try {
      parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    } catch {
      throw new GatewayError('upstream-error', `the Kinesis endpoint answered ${res.statusCode} with a body that is not JSON`);
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return parsed;
    const type = errorType(parsed.__type ?? res.headers['x-amzn-errortype']);
    // Kinesis' own message is not passed on: its validation errors quote the request's values
    // ("Value 'S3cr3t...' at 'shardIteratorType' failed to satisfy constraint"), which must not
    // reach an audit row or a log line; the type says what went wrong
    const message = `the Kinesis endpoint answered ${type}`;
    const kind = type === 'ResourceNotFoundException' ? 'not-found' : res.statusCode >= 500 ? 'upstream-unavailable' : 'upstream-error';
    throw new GatewayError(kind, message, { cause: new KinesisError(type, message, res.statusCode) });
  }

  async ready(): Promise<boolean> {
    try {
      await this.call('ListStreams', { Limit: 1 });
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }
}

/** A Kinesis error type from `__type` or X-Amzn-ErrorType ("aws.kinesis#Foo:http://..." -> "Foo"); InternalFailure when it is not a plain name. */
export function errorType(raw: unknown): string {
  const text = String(raw ?? '');
  const type = text.slice(text.lastIndexOf('#') + 1).split(':')[0]!;
  return /^[A-Za-z][A-Za-z0-9.]{0,99}$/.test(type) ? type : 'InternalFailure';
}

/** A connection failure's code (ECONNREFUSED, UND_ERR_CONNECT_TIMEOUT, ...), not its message, which names addresses. */
function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'connection failed';
}
