import cluster, { type Worker } from 'node:cluster';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { AggregatorRegistry } from 'prom-client';
import { loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import type { Gateway } from '../gateway.ts';
import { createLogger, type Logger } from '../log.ts';
import { AdminListener, readinessOf, withTimeout, type Check } from './admin.ts';

/**
 * `serve --processes N`: node:cluster forks N workers that share the listening ports
 * (the primary accepts and hands connections round-robin). Each worker is a whole
 * gateway with its own inspection pool, upstream connections and audit spool
 * (`<spool dir>/<worker>`, instance `<instance>-<worker>`: a hash chain has one writer).
 * The primary serves the admin listener: metrics summed over the workers, readiness
 * from each worker, and forwards SIGHUP (reload) to them.
 */

const WORKER_ENV = 'STREAMGATE_WORKER';
const READYZ = 'streamgate:readyz';
/** worker -> primary: the loopback port of its admin routes */
const ADMIN_ROUTES = 'streamgate:admin-routes';
/** primary -> worker (environment): the admin listener's URL, which workers name in links (approval URLs) */
const ADMIN_URL_ENV = 'STREAMGATE_ADMIN_URL';
/** the primary answers these itself; every other admin path is forwarded to a worker */
const PRIMARY_PATHS = new Set(['/metrics', '/livez', '/readyz']);

/** The worker number (1..N) of this process, or undefined outside a cluster. */
export function workerIndex(): number | undefined {
  const v = process.env[WORKER_ENV];
  return cluster.isWorker && v ? Number(v) : undefined;
}

/** Per-worker parts of the config: own spool directory and instance name. */
export function forWorker(config: Config, index: number | undefined): Config {
  if (index === undefined) return config;
  return {
    ...config,
    instance: `${config.instance ?? hostname()}-${index}`,
    audit: { ...config.audit, spool: { ...config.audit.spool, dir: join(config.audit.spool.dir, String(index)) } },
    // links workers hand out (approval URLs) name the primary's admin listener, not the worker's loopback routes
    approvals: { ...config.approvals, publicUrl: config.approvals.publicUrl ?? process.env[ADMIN_URL_ENV] },
  };
}

/** In a worker: report this gateway's metrics to the primary and answer its readiness questions. */
export function serveWorker(gateway: Gateway): void {
  AggregatorRegistry.setRegistries([gateway.metrics.registry]);
  // constructing one is what makes prom-client answer the primary's metric requests in a worker
  new AggregatorRegistry();
  if (gateway.adminRoutesPort !== undefined) process.send?.({ type: ADMIN_ROUTES, port: gateway.adminRoutesPort });
  process.on('message', (msg: { type?: string; id?: number }) => {
    if (msg?.type !== READYZ) return;
    gateway.readiness().then(
      (checks) => process.send?.({ type: READYZ, id: msg.id, checks }),
      (err: unknown) => process.send?.({ type: READYZ, id: msg.id, checks: { gateway: { ok: false, detail: (err as Error).message } } }),
    );
  });
}

export async function runPrimary(file: string, processes: number): Promise<void> {
  const config = loadConfig(file);
  const log: Logger = createLogger(config.log.level).child({ role: 'primary' });
  if (config.state.kind === 'memory' && (config.policy.approvals?.length ?? 0) > 0) {
    log.warn('policy.approvals with state.kind: memory and several processes: each worker keeps its own approval requests and grants; use state.kind: redis');
  }
  const workers = new Map<number, Worker>();
  let stopping = false;
  const fork = (index: number) => {
    const worker = cluster.fork({ [WORKER_ENV]: String(index), ...(adminUrl ? { [ADMIN_URL_ENV]: adminUrl } : {}) });
    workers.set(index, worker);
    worker.on('exit', (code, signal) => {
      if (workers.get(index) === worker) workers.delete(index);
      if (stopping) return;
      log.error({ worker: index, code, signal }, 'gateway worker exited; starting a new one');
      setTimeout(() => fork(index), 1000).unref();
    });
  };

  let admin: AdminListener | undefined;
  let adminUrl: string | undefined;
  /** worker index -> loopback port of its admin routes (approvals, credentials, sessions) */
  const routePorts = new Map<number, number>();
  cluster.on('message', (worker, msg: { type?: string; port?: number }) => {
    if (msg?.type !== ADMIN_ROUTES || !msg.port) return;
    for (const [index, w] of workers) if (w === worker) routePorts.set(index, msg.port);
  });
  cluster.on('exit', (worker) => {
    for (const [index, w] of workers) if (w === worker) routePorts.delete(index);
  });
  let nextRoute = 0;
  // the workers own the state behind the admin routes: pass such requests to one of them, in turn
  const forward = (req: IncomingMessage, res: ServerResponse): boolean => {
    if (PRIMARY_PATHS.has((req.url ?? '/').split('?')[0]!)) return false;
    const ports = [...routePorts.values()];
    if (ports.length === 0) {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' }).end(JSON.stringify({ error: 'no gateway worker is ready yet' }));
      return true;
    }
    const port = ports[nextRoute++ % ports.length]!;
    const upstream = httpRequest({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', (err) => {
      log.warn({ err: err.message, port }, 'forwarding an admin request to a worker failed');
      if (res.headersSent) return void res.destroy();
      res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'the worker did not answer' }));
    });
    req.pipe(upstream);
    return true;
  };
  if (config.listeners.admin) {
    const aggregator = new AggregatorRegistry();
    let nextId = 0;
    const ask = (worker: Worker) =>
      new Promise<Record<string, Check>>((resolve) => {
        const id = ++nextId;
        const onMessage = (msg: { type?: string; id?: number; checks?: Record<string, Check> }) => {
          if (msg?.type !== READYZ || msg.id !== id) return;
          worker.off('message', onMessage);
          resolve(msg.checks ?? {});
        };
        worker.on('message', onMessage);
        worker.send({ type: READYZ, id });
      });
    admin = new AdminListener(config.listeners.admin, {
      routes: [forward],
      metrics: async () => ({ contentType: aggregator.contentType, body: await aggregator.clusterMetrics() }),
      readiness: async () => {
        const out: Record<string, Check> = {};
        for (let i = 1; i <= processes; i++) {
          const worker = workers.get(i);
          if (!worker) {
            out[`worker-${i}`] = { ok: false, detail: 'not running' };
            continue;
          }
          const check = await withTimeout(
            ask(worker).then((checks): Check => {
              const failed = Object.entries(checks).filter(([, c]) => !c.ok);
              if (failed.length === 0) return { ok: true };
              const detail = failed.map(([n, c]) => `${n}: ${c.detail ?? 'failed'}`).join('; ');
              return readinessOf(checks) === 'degraded' ? { ok: false, critical: false, detail } : { ok: false, detail };
            }),
            4000,
            `worker ${i}`,
          );
          out[`worker-${i}`] = check;
        }
        return out;
      },
    }, log);
    const addr = await admin.listen();
    adminUrl = `http://${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${addr.port}`;
    log.info(addr, 'admin listener ready (/metrics summed over workers, /livez, /readyz; other routes forwarded to the workers)');
  }

  // forked once the admin listener is up, so workers know its URL from the start
  for (let i = 1; i <= processes; i++) fork(i);
  log.info({ processes }, 'gateway workers started (they share the listening ports)');

  process.on('SIGHUP', () => {
    log.info('SIGHUP: asking every worker to reload the configuration');
    for (const w of workers.values()) w.process.kill('SIGHUP');
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down the gateway workers');
    const exited = [...workers.values()].map((w) => new Promise((r) => w.once('exit', r)));
    for (const w of workers.values()) w.process.kill('SIGTERM');
    Promise.all(exited)
      .then(() => admin?.close())
      .finally(() => process.exit(0));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}
