import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AdminListenerConfig } from '../config/schema.ts';

export interface Check {
  ok: boolean;
  detail?: string;
  /**
   * false: reported, but the instance stays ready when it fails ("degraded"): a dependency
   * some operations need (the schema registry) must not take every instance out of a load
   * balancer while the rest of the traffic flows
   */
  critical?: boolean;
}

/** ready: every critical check holds; degraded: ready, with a non-critical one failing. */
export function readinessOf(checks: Record<string, Check>): 'ready' | 'degraded' | 'not-ready' {
  const failing = Object.values(checks).filter((c) => !c.ok);
  if (failing.length === 0) return 'ready';
  return failing.every((c) => c.critical === false) ? 'degraded' : 'not-ready';
}

export interface AdminHandlers {
  /** Prometheus text exposition and its content type */
  metrics(): Promise<{ contentType: string; body: string }>;
  /** named readiness checks; ready when every one is ok */
  readiness(): Promise<Record<string, Check>>;
  /** further routes (the approvals API and page, ...): each answers and returns true, or returns false to pass */
  routes?: Array<(req: IncomingMessage, res: ServerResponse) => boolean>;
}

/**
 * The operations listener: `GET /metrics` (Prometheus), `GET /livez` (the process
 * answers), `GET /readyz` (200 when every check passes, 503 otherwise; the JSON body
 * names each check). Its own node:http server on its own port, so scrapes and probes
 * never compete with client traffic for a data port's limits and never need a token.
 */
export class AdminListener {
  readonly #config: AdminListenerConfig;
  readonly #server: Server;

  constructor(config: AdminListenerConfig, handlers: AdminHandlers, log: Logger) {
    this.#config = config;
    const alog = log.child({ listener: 'admin' });
    this.#server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const send = (status: number, contentType: string, body: string) => {
        res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
        res.end(body);
      };
      const json = (status: number, body: unknown) => send(status, 'application/json', JSON.stringify(body));
      for (const route of handlers.routes ?? []) if (route(req, res)) return;
      if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'only GET' });
      if (path === '/livez') return json(200, { status: 'ok' });
      if (path === '/metrics') {
        handlers.metrics().then(
          (m) => send(200, m.contentType, m.body),
          (err: unknown) => {
            alog.error({ err }, 'metrics collection failed');
            json(500, { error: 'metrics collection failed' });
          },
        );
        return;
      }
      if (path === '/readyz') {
        handlers.readiness().then(
          (checks) => {
            const status = readinessOf(checks);
            json(status === 'not-ready' ? 503 : 200, { status, checks });
          },
          (err: unknown) => json(503, { status: 'not-ready', error: (err as Error).message }),
        );
        return;
      }
      json(404, { error: `no route for ${path}; try /metrics, /livez, /readyz` });
    });
  }

  async listen(): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#config.port, this.#config.host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const addr = this.#server.address();
    if (addr === null || typeof addr === 'string') throw new Error('admin listener has no TCP address');
    return { host: addr.address, port: addr.port };
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}

/** Resolves `check` within `ms`, else a failed check saying it timed out. */
export function withTimeout(check: Promise<Check>, ms: number, what: string): Promise<Check> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Check>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, detail: `${what} did not answer within ${ms} ms` }), ms);
  });
  return Promise.race([check.catch((err: unknown) => ({ ok: false, detail: (err as Error).message })), timeout]).finally(() => clearTimeout(timer));
}
