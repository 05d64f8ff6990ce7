// Load generators of the HTTP suite. Both run in the bench process and record each
// request's latency at 1 µs resolution: autocannon's own latency histogram stores whole
// milliseconds (0.4 ms is recorded as 0), useless for sub-millisecond budgets, so its
// percentiles are kept in the results only as raw data.
//  - saturation: autocannon, closed loop, N connections, no rate limit -> req/s
//  - fixed rate: an open-loop paced client (below). autocannon's `overallRate` does not pace:
//    each connection fires its whole per-second quota back to back at the start of every
//    second, then idles, so "1000 req/s" is really 10 connections hammering for the first
//    few hundred ms of each second. That measures burst queueing, not latency at a rate.
import { createRequire } from 'node:module';
import { connect, type Socket } from 'node:net';
import { createHistogram, performance, type RecordableHistogram } from 'node:perf_hooks';

const require = createRequire(import.meta.url);

export interface LatencySummary {
  count: number;
  min: number;
  mean: number;
  stddev: number;
  max: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  /** the recorded HDR histogram as percentile -> µs (node:perf_hooks, 3 significant digits) */
  histogramUs: Record<string, number>;
}

export interface RunResult {
  load: 'fixed' | 'saturation';
  seconds: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  mismatches: number;
  /** completed 2xx responses per second */
  rps: number;
  /** request written -> response complete, ms */
  latency: LatencySummary;
  /** fixed rate only: intended send time -> response complete (coordinated-omission free), ms */
  scheduleLatency?: LatencySummary;
  targetRate?: number;
  /** first failing status/body seen, for the error message */
  firstFailure?: string;
  /** saturation only: autocannon's own result (latency in whole ms) */
  autocannon?: Record<string, unknown>;
}

export interface Target {
  url: string;
  body: string;
  headers: Record<string, string>;
}

const US = 1000;

function newHistogram(): RecordableHistogram {
  return createHistogram({ lowest: 1, highest: 120_000_000, figures: 3 });
}

function summarize(h: RecordableHistogram): LatencySummary {
  const ms = (us: number) => Math.round(us) / US;
  const count = h.count;
  return {
    count,
    min: count ? ms(h.min) : 0,
    mean: count ? Math.round(h.mean) / US : 0,
    stddev: count ? Math.round(h.stddev) / US : 0,
    max: count ? ms(h.max) : 0,
    p50: count ? ms(h.percentile(50)) : 0,
    p90: count ? ms(h.percentile(90)) : 0,
    p99: count ? ms(h.percentile(99)) : 0,
    p999: count ? ms(h.percentile(99.9)) : 0,
    histogramUs: Object.fromEntries([...h.percentiles].map(([p, v]) => [String(p), v])),
  };
}

const record = (h: RecordableHistogram, ms: number) => h.record(Math.max(1, Math.round(ms * US)));

/** The cheap per-response check used at saturation: a 200 REST v3 answer with a real offset. */
export function looksOk(body: string): boolean {
  return body.includes('"error_code":200') && body.includes('"offset":') && !body.includes('"offset":-1');
}

// ---- saturation: autocannon ----

interface AutocannonInstance {
  on(event: 'response', fn: (client: unknown, statusCode: number, resBytes: number, responseTime: number) => void): void;
}
type Autocannon = (opts: Record<string, unknown>, cb: (err: Error | null, result: Record<string, unknown>) => void) => AutocannonInstance;
const autocannon = require('autocannon') as Autocannon;

export function saturation(t: Target, o: { connections: number; seconds: number; timeoutSeconds?: number }): Promise<RunResult> {
  const h = newHistogram();
  let firstFailure: string | undefined;
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: t.url,
        method: 'POST',
        headers: t.headers,
        body: t.body,
        connections: o.connections,
        pipelining: 1,
        duration: o.seconds,
        timeout: o.timeoutSeconds ?? 10,
        verifyBody: (body: string) => {
          const ok = looksOk(body);
          if (!ok) firstFailure ??= body.slice(0, 300);
          return ok;
        },
      },
      (err, r) => {
        if (err) return reject(err);
        const ok = Number(r['2xx']);
        const seconds = Number(r.duration);
        const { latency, requests, throughput, statusCodeStats } = r;
        resolve({
          load: 'saturation',
          seconds,
          ok,
          non2xx: Number(r.non2xx),
          errors: Number(r.errors),
          timeouts: Number(r.timeouts),
          mismatches: Number(r.mismatches),
          rps: Math.round(ok / seconds),
          latency: summarize(h),
          ...(firstFailure ? { firstFailure } : {}),
          autocannon: { latencyWholeMs: latency, requests, throughput, statusCodeStats, resets: r.resets },
        });
      },
    );
    instance.on('response', (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) record(h, ms);
    });
  });
}

// ---- fixed rate: open-loop paced client ----

interface Conn {
  sock: Socket;
  busy: boolean;
  sentAt: number;
  intendedAt: number;
  buf: Buffer | null;
}

/**
 * Sends request i at t0 + i/rate over `connections` keep-alive connections (pipelining 1),
 * whatever the server's answers do; a request due while every connection is busy waits
 * and that wait counts in scheduleLatency. Responses are parsed just enough to time and
 * check them (status line, content-length, JSON body), so the client adds little of its own.
 */
export function paced(
  t: Target,
  o: { rate: number; connections: number; seconds: number; timeoutMs?: number; verify: (status: number, body: string) => boolean },
): Promise<RunResult> {
  const u = new URL(t.url);
  const bodyBuf = Buffer.from(t.body);
  let head = `POST ${u.pathname}${u.search} HTTP/1.1\r\nhost: ${u.host}\r\n`;
  for (const [k, v] of Object.entries(t.headers)) head += `${k}: ${v}\r\n`;
  head += `content-length: ${bodyBuf.length}\r\n\r\n`;
  const request = Buffer.concat([Buffer.from(head, 'latin1'), bodyBuf]);
  const timeoutMs = o.timeoutMs ?? 10_000;
  const total = Math.max(1, Math.round(o.rate * o.seconds));
  const interval = 1000 / o.rate;

  const service = newHistogram();
  const schedule = newHistogram();
  let ok = 0;
  let non2xx = 0;
  let errors = 0;
  let timeouts = 0;
  let mismatches = 0;
  let firstFailure: string | undefined;
  let scheduled = 0;
  let settled = 0;
  let lastDone = 0;
  const queue: number[] = [];
  const idle: Conn[] = [];
  const conns: Conn[] = [];
  let t0 = 0;
  let finished = false;

  return new Promise((resolve, reject) => {
    let tickTimer: NodeJS.Timeout | undefined;
    const watchdog = setInterval(() => {
      const now = performance.now();
      for (const c of conns) {
        if (c.busy && now - c.sentAt > timeoutMs) {
          timeouts++;
          failed(c, 'timeout');
        }
      }
    }, 250);
    const hardStop = setTimeout(() => finish(new Error(`fixed-rate run did not finish (${settled}/${total} answered)`)), o.seconds * 1000 + timeoutMs + 10_000);

    function finish(err?: Error): void {
      if (finished) return;
      finished = true;
      clearInterval(watchdog);
      clearTimeout(hardStop);
      if (tickTimer) clearTimeout(tickTimer);
      for (const c of conns) c.sock.destroy();
      if (err) return reject(err);
      const seconds = (lastDone - t0) / 1000;
      resolve({
        load: 'fixed',
        seconds: Math.round(seconds * 100) / 100,
        ok,
        non2xx,
        errors,
        timeouts,
        mismatches,
        rps: Math.round(ok / seconds),
        latency: summarize(service),
        scheduleLatency: summarize(schedule),
        targetRate: o.rate,
        ...(firstFailure ? { firstFailure } : {}),
      });
    }

    function settle(): void {
      settled++;
      lastDone = performance.now();
      if (settled === total) finish();
    }

    function failed(c: Conn, why: string): void {
      // the request in flight is lost; a fresh connection takes the slot
      if (c.busy) {
        firstFailure ??= why;
        c.busy = false;
        settle();
      }
      c.sock.removeAllListeners();
      c.sock.on('error', () => {});
      c.sock.destroy();
      if (finished) return;
      const i = conns.indexOf(c);
      const fresh = open();
      conns[i] = fresh;
      fresh.sock.once('connect', () => {
        idle.push(fresh);
        dispatch();
      });
    }

    function complete(c: Conn, status: number, body: string): void {
      const now = performance.now();
      c.busy = false;
      if (status < 200 || status >= 300) {
        non2xx++;
        firstFailure ??= `HTTP ${status} ${body.slice(0, 300)}`;
      } else if (!o.verify(status, body)) {
        mismatches++;
        firstFailure ??= `unexpected body: ${body.slice(0, 300)}`;
      } else {
        ok++;
        record(service, now - c.sentAt);
        record(schedule, now - c.intendedAt);
      }
      idle.push(c);
      settle();
      dispatch();
    }

    function onData(c: Conn, chunk: Buffer): void {
      let buf = c.buf ? Buffer.concat([c.buf, chunk]) : chunk;
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) break;
        const headText = buf.toString('latin1', 0, end);
        const status = Number(headText.slice(9, 12));
        const m = /\r\ncontent-length: *(\d+)/i.exec(headText);
        if (!m) {
          errors++;
          failed(c, `response without content-length: ${headText.slice(0, 200)}`);
          return;
        }
        const len = Number(m[1]);
        if (buf.length < end + 4 + len) break;
        const body = buf.toString('utf8', end + 4, end + 4 + len);
        buf = buf.subarray(end + 4 + len);
        if (!c.busy) {
          errors++;
          failed(c, 'response without a request');
          return;
        }
        complete(c, status, body);
      }
      c.buf = buf.length > 0 ? buf : null;
    }

    function open(): Conn {
      const sock = connect({ host: u.hostname, port: Number(u.port), noDelay: true });
      const c: Conn = { sock, busy: false, sentAt: 0, intendedAt: 0, buf: null };
      sock.on('data', (chunk: Buffer) => onData(c, chunk));
      sock.on('error', (err) => {
        errors++;
        failed(c, `socket error: ${err.message}`);
      });
      sock.on('close', () => {
        if (!finished && conns.includes(c)) {
          errors++;
          failed(c, 'connection closed by the server');
        }
      });
      return c;
    }

    function dispatch(): void {
      while (queue.length > 0 && idle.length > 0) {
        const c = idle.pop()!;
        c.busy = true;
        c.intendedAt = queue.shift()!;
        c.sentAt = performance.now();
        c.sock.write(request);
      }
    }

    function tick(): void {
      const now = performance.now();
      while (scheduled < total && t0 + scheduled * interval <= now) queue.push(t0 + interval * scheduled++);
      dispatch();
      if (scheduled < total) tickTimer = setTimeout(tick, Math.max(0, t0 + scheduled * interval - performance.now()));
    }

    // connect everything first: connection set-up is not part of any request's latency
    for (let i = 0; i < o.connections; i++) conns.push(open());
    let connected = 0;
    for (const c of conns) {
      c.sock.once('connect', () => {
        idle.push(c);
        if (++connected === o.connections) {
          t0 = performance.now();
          tick();
        }
      });
    }
  });
}

/** Median of numbers (mean of the middle two for an even count). */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
