// Soak: a steady load through both listeners with every control on, for --minutes
// (default 10; --quick: 1), sampling the gateway process every 10 s. The question is not
// speed but drift: RSS, heap and event-loop delay must stay flat.
//
//   npm run bench -- soak [--quick]          (not part of the default `npm run bench`)
//
// Load: HTTP produce of ~1 KiB JSON records with a card number (masked) at a fixed rate
// (paced open loop, 4 connections), a Kafka producer (SASL PLAIN with a JWT, lz4, masked
// topic) at a fixed rate, and a Kafka consumer reading the masked topic as an analyst
// (consume-side tokenization). The gateway runs in its own process with the admin
// listener; samples come from /proc/<pid>/status and its /metrics.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Consumer, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka';
import { runKafkaTool } from '../../src/dev/kafka.ts';
import { paced } from '../lib/load.ts';
import { freePort, spawnNode, waitHealthy } from '../lib/procs.ts';
import { startServices } from '../lib/services.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

export interface SoakOptions {
  minutes: number;
  httpRate: number;
  kafkaRate: number;
}

export function soakOptions(quick: boolean): SoakOptions {
  return { minutes: quick ? 1 : 10, httpRate: 300, kafkaRate: 300 };
}

interface Sample {
  t: number;
  rssMb: number;
  heapUsedMb: number;
  eventLoopP99Ms: number;
  openConnections: number;
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([\\d.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

function sumMetric(text: string, name: string): number {
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([\\d.e+-]+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

export async function runSoakSuite(opts: SoakOptions, log: (s: string) => void = console.log): Promise<Record<string, unknown>> {
  log(`soak: ${opts.minutes} min, HTTP ${opts.httpRate}/s + Kafka ${opts.kafkaRate}/s produce + a consumer, all controls on`);
  const { work, kafka, idp } = await startServices('soak');
  const topic = 'payments.soak';
  const created = await runKafkaTool('org.apache.kafka.tools.TopicCommand', ['--bootstrap-server', kafka.bootstrap, '--create', '--topic', topic, '--partitions', '2', '--replication-factor', '1']);
  if (created.code !== 0) throw new Error(`topic creation failed: ${created.stderr}`);

  const [httpPort, kafkaPort, adminPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const example = readFileSync(join(ROOT, 'streamgate.example.yaml'), 'utf8');
  const configFile = join(work, 'gateway.yaml');
  // the example config as shipped (every control on: masking, consume-side tokenization, audit), pointed at this run's services
  writeFileSync(
    configFile,
    example
      .replace('${HTTP_PORT:-8080}', String(httpPort))
      .replace('${KAFKA_LISTENER_PORT:-9192}', String(kafkaPort))
      .replace('${ADMIN_PORT:-9644}', String(adminPort))
      .replace('${KAFKA_BROKER_PORT_BASE:-9200}', '0')
      .replace('${KAFKA_BOOTSTRAP:-127.0.0.1:9092}', kafka.bootstrap)
      .replace('${OIDC_ISSUER:-http://127.0.0.1:9400}', idp.issuer)
      .replace('${AUDIT_DIR:-./data/audit}', join(work, 'audit'))
      .replace('level: info', 'level: warn')
      // the analyst reads through a consumer group of its own
      .replace('actions: [consume, describe]\n      topics: ["payments.*", "orders", "analytics.*"]', 'actions: [consume, describe]\n      topics: ["payments.*", "orders", "analytics.*"]\n      groups: ["soak-*"]'),
  );
  const gateway = spawnNode('gateway', join(ROOT, 'src/cli/main.ts'), ['serve', '--config', configFile], { logFile: join(work, 'gateway.log'), cwd: ROOT });
  await waitHealthy(gateway, `http://127.0.0.1:${httpPort}`);
  const pid = gateway.child.pid!;

  const alice = await idp.token('alice');
  const bob = await idp.token('bob');
  const value = (i: number) => JSON.stringify({ id: i, card: '4111 1111 1111 1111', email: `user${i % 97}@example.com`, note: 'lorem ipsum '.repeat(70) });
  const seconds = opts.minutes * 60;
  let stop = false;

  const sample = async (t0: number): Promise<Sample> => {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    return {
      t: Math.round((performance.now() - t0) / 1000),
      rssMb: round(rss / 1e6),
      heapUsedMb: round(metric(text, 'streamgate_nodejs_heap_size_used_bytes') / 1e6),
      eventLoopP99Ms: round(metric(text, 'streamgate_nodejs_eventloop_lag_p99_seconds') * 1000, 2),
      openConnections: sumMetric(text, 'streamgate_connections_open'),
    };
  };

  const producer = new Producer({ clientId: 'soak-producer', bootstrapBrokers: [`127.0.0.1:${kafkaPort}`], sasl: { mechanism: 'PLAIN', username: 'alice', password: alice }, serializers: stringSerializers, idempotent: true } as never);
  const consumer = new Consumer({ clientId: 'soak-consumer', groupId: `soak-${Date.now()}`, bootstrapBrokers: [`127.0.0.1:${kafkaPort}`], sasl: { mechanism: 'PLAIN', username: 'bob', password: bob }, deserializers: stringDeserializers } as never);
  let kafkaSent = 0;
  let kafkaErrors = 0;
  let consumed = 0;
  const kafkaLoad = (async () => {
    // batches of 10 every 10/rate seconds: a steady rate without one request per record
    const every = (10 / opts.kafkaRate) * 1000;
    const t0 = performance.now();
    for (let b = 0; !stop; b++) {
      const due = t0 + b * every;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      try {
        await producer.send({ messages: Array.from({ length: 10 }, (_, i) => ({ topic, key: `k${b}`, value: value(b * 10 + i) })), compression: 'lz4' } as never);
        kafkaSent += 10;
      } catch {
        kafkaErrors++;
      }
    }
  })();
  const stream = await consumer.consume({ topics: [topic], mode: 'latest', autocommit: true, maxWaitTime: 500 } as never);
  const consumeLoad = (async () => {
    for await (const _ of stream as AsyncIterable<unknown>) {
      consumed++;
      if (stop) break;
    }
  })();

  const t0 = performance.now();
  const samples: Sample[] = [];
  const sampler = (async () => {
    while (!stop) {
      samples.push(await sample(t0));
      const s = samples.at(-1)!;
      if (samples.length % 6 === 1) log(`  t=${s.t}s rss ${s.rssMb} MB heap ${s.heapUsedMb} MB event-loop p99 ${s.eventLoopP99Ms} ms connections ${s.openConnections}`);
      await new Promise((r) => setTimeout(r, 10_000));
    }
  })();
  const http = await paced(
    { url: `http://127.0.0.1:${httpPort}/v3/clusters/local/topics/${topic}/records`, body: JSON.stringify({ value: { type: 'JSON', data: JSON.parse(value(1)) } }), headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' } },
    { rate: opts.httpRate, connections: 4, seconds, verify: (status) => status === 200 },
  );
  stop = true;
  await Promise.all([kafkaLoad, sampler]);
  await stream.close().catch(() => {});
  await consumeLoad.catch(() => {});
  await producer.close().catch(() => {});
  await consumer.close(true).catch(() => {});
  samples.push(await sample(t0));
  await gateway.stop();

  // the first minute is warm-up (JIT, pools, caches filling); drift is judged after it
  const settled = samples.filter((s) => s.t >= Math.min(60, seconds / 2));
  const first = settled[0]!;
  const last = settled.at(-1)!;
  const minutes = settled.map((s) => s.t / 60);
  const result = {
    options: opts,
    http: { ok: http.ok, non2xx: http.non2xx, errors: http.errors, rps: http.rps, p50Ms: http.latency.p50, p99Ms: http.latency.p99, p999Ms: http.latency.p999 },
    kafka: { produced: kafkaSent, sendErrors: kafkaErrors, consumed },
    samples,
    drift: {
      rssFirstMb: first.rssMb,
      rssLastMb: last.rssMb,
      rssMaxMb: Math.max(...settled.map((s) => s.rssMb)),
      rssSlopeMbPerMin: round(slope(minutes, settled.map((s) => s.rssMb)), 2),
      heapSlopeMbPerMin: round(slope(minutes, settled.map((s) => s.heapUsedMb)), 2),
      eventLoopP99MaxMs: Math.max(...settled.map((s) => s.eventLoopP99Ms)),
      eventLoopP99MedianMs: [...settled.map((s) => s.eventLoopP99Ms)].sort((a, b) => a - b)[Math.floor(settled.length / 2)]!,
    },
  };
  log(`http: ${http.ok} ok, ${http.non2xx} non-2xx, ${http.errors} errors, p99 ${http.latency.p99} ms; kafka: ${kafkaSent} produced (${kafkaErrors} failed sends), ${consumed} consumed`);
  log(`drift after warm-up: RSS ${first.rssMb} -> ${last.rssMb} MB (max ${result.drift.rssMaxMb}, slope ${result.drift.rssSlopeMbPerMin} MB/min), heap slope ${result.drift.heapSlopeMbPerMin} MB/min, event-loop p99 median ${result.drift.eventLoopP99MedianMs} ms, max ${result.drift.eventLoopP99MaxMs} ms`);
  return {
    ...result,
    metrics: {
      'soak.rss_slope_mb_per_min': result.drift.rssSlopeMbPerMin,
      'soak.heap_slope_mb_per_min': result.drift.heapSlopeMbPerMin,
      'soak.rss_max_mb': result.drift.rssMaxMb,
      'soak.event_loop_p99_max_ms': result.drift.eventLoopP99MaxMs,
      'soak.http_errors': http.errors + http.non2xx,
      'soak.kafka_send_errors': kafkaErrors,
    },
  };
}
