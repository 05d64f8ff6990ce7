// Kafka wire-protocol bench: the Java ProducerPerformance / ConsumerPerformance tools (from
// the project's Kafka jars) straight at the broker and through the gateway, in one run, on
// a passthrough topic (no inspection rules). Plus a sub-millisecond latency probe at a
// fixed moderate rate (ProducerPerformance reports percentiles in whole milliseconds).
//
//   npm run bench -- kafka [--quick]
//
// Starts its own broker, identity provider and gateway (a child process).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Producer } from '@platformatic/kafka';
import { runKafkaTool } from '../../src/dev/kafka.ts';
import { freePort, spawnNode, waitHealthy } from '../lib/procs.ts';
import { startServices } from '../lib/services.ts';

/** Settings of a full run, or of a --quick smoke run. */
export function kafkaBenchOptions(quick: boolean, profileDir?: string): KafkaBenchOptions {
  return { records: quick ? 50_000 : 500_000, recordSize: 1024, rate: 2000, probeSeconds: quick ? 3 : 10, profileDir };
}

export interface KafkaBenchOptions {
  records: number;
  recordSize: number;
  /** records/s for the latency runs */
  rate: number;
  /** seconds of the latency probe */
  probeSeconds: number;
  /** write a V8 CPU profile of the gateway here (--profile) */
  profileDir?: string;
}

interface PerfResult {
  recordsPerSec: number;
  mbPerSec: number;
  avgMs: number;
  p50Ms: number;
  p99Ms: number;
}

const ROOT = new URL('../..', import.meta.url).pathname;

function parseProducerPerf(out: string): PerfResult {
  // "50000 records sent, 9998.0 records/sec (9.76 MB/sec), 1.41 ms avg latency, 200.00 ms max latency, 1 ms 50th, 2 ms 95th, 4 ms 99th, 20 ms 99.9th."
  const m = /records sent, ([\d.]+) records\/sec \(([\d.]+) MB\/sec\), ([\d.]+) ms avg latency, [\d.]+ ms max latency, (\d+) ms 50th, \d+ ms 95th, (\d+) ms 99th/.exec(out);
  if (!m) throw new Error(`unexpected ProducerPerformance output:\n${out.slice(-2000)}`);
  return { recordsPerSec: Number(m[1]), mbPerSec: Number(m[2]), avgMs: Number(m[3]), p50Ms: Number(m[4]), p99Ms: Number(m[5]) };
}

function parseConsumerPerf(out: string): { mbPerSec: number; recordsPerSec: number } {
  // CSV: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, ...
  const line = out.trim().split('\n').filter((l) => /^\d{4}-/.test(l)).pop();
  if (!line) throw new Error(`unexpected ConsumerPerformance output:\n${out.slice(-2000)}`);
  const cols = line.split(',').map((c) => c.trim());
  return { mbPerSec: Number(cols[3]), recordsPerSec: Number(cols[5]) };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function latencySummary(lat: number[]): { p50Us: number; p99Us: number; avgUs: number; n: number } {
  const sorted = [...lat].sort((a, b) => a - b);
  const avg = lat.reduce((a, b) => a + b, 0) / lat.length;
  return { p50Us: Math.round(percentile(sorted, 50)), p99Us: Math.round(percentile(sorted, 99)), avgUs: Math.round(avg), n: lat.length };
}

/** One produce at a time (acks=1) at a fixed rate; per-request latencies in microseconds. */
async function probe(bootstrap: string, topic: string, rate: number, seconds: number, size: number, sasl?: { token: string }, payload?: Buffer): Promise<number[]> {
  const producer = new Producer({
    clientId: 'bench-probe',
    bootstrapBrokers: [bootstrap],
    acks: 1,
    ...(sasl ? { sasl: { mechanism: 'OAUTHBEARER' as const, token: sasl.token } } : {}),
  });
  const value = payload ?? Buffer.alloc(size, 0x61);
  const lat: number[] = [];
  try {
    await producer.send({ messages: [{ topic, value, partition: 0 }] }); // connect + metadata outside the measurement
    const interval = 1000 / rate;
    const end = performance.now() + seconds * 1000;
    let next = performance.now();
    while (performance.now() < end) {
      const t0 = performance.now();
      await producer.send({ messages: [{ topic, value, partition: 0 }] });
      lat.push((performance.now() - t0) * 1000);
      next += interval;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  } finally {
    await producer.close();
  }
  return lat;
}

export async function runKafkaSuite(opts: KafkaBenchOptions, log: (s: string) => void = console.log): Promise<Record<string, unknown>> {
  log('starting Kafka, the identity provider and the gateway...');
  const { work, kafka, idp } = await startServices('kafka');
  const topic = 'bench.passthrough';
  // a topic with a produce rule: records are decoded, card numbers masked, batches re-encoded
  const maskedTopic = 'bench.masked';
  for (const t of [topic, maskedTopic]) {
    const created = await runKafkaTool('org.apache.kafka.tools.TopicCommand', ['--bootstrap-server', kafka.bootstrap, '--create', '--topic', t, '--partitions', '1', '--replication-factor', '1']);
    if (created.code !== 0) throw new Error(`topic creation failed: ${created.stderr}`);
  }

  const [httpPort, kafkaPort] = await Promise.all([freePort(), freePort()]);
  const configFile = join(work, 'gateway.yaml');
  writeFileSync(
    configFile,
    `instance: bench
log: { level: warn }
listeners:
  http: { host: 127.0.0.1, port: ${httpPort} }
  kafka: { host: 127.0.0.1, port: ${kafkaPort}, brokerPortBase: 0 }
upstream:
  kafka: { bootstrap: ["${kafka.bootstrap}"] }
identity:
  issuers:
    - { issuer: "${idp.issuer}", audience: streamgate, algorithms: [ES256] }
policy:
  roles:
    bench: { when: { groups: [platform-admins] } }
  grants:
    - { roles: [bench], actions: [produce, consume, describe, admin], topics: ["*"], groups: ["*"], transactionalIds: ["*"] }
inspection:
  rules:
    - { id: pci.card-number, detector: payment-card, action: { type: mask, keepLast: 4 } }
  topics:
    - { topics: ["${maskedTopic}"], format: json, produce: [pci.card-number] }
audit:
  spool: { dir: "${join(work, 'audit')}" }
`,
  );
  const gateway = spawnNode('gateway', join(ROOT, 'src/cli/main.ts'), ['serve', '--config', configFile], {
    logFile: join(work, 'gateway.log'),
    cwd: ROOT,
    nodeArgs: opts.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`] : [],
  });
  await waitHealthy(gateway, `http://127.0.0.1:${httpPort}`);
  const viaGateway = `127.0.0.1:${kafkaPort}`;
  const token = await idp.token('ops');
  const props = join(work, 'client.properties');
  writeFileSync(
    props,
    [
      'security.protocol=SASL_PLAINTEXT',
      'sasl.mechanism=PLAIN',
      `sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="ops" password="${token}";`,
      '',
    ].join('\n'),
  );
  const plainProps = join(work, 'plain.properties');
  writeFileSync(plainProps, '\n');

  const producerPerf = async (bootstrap: string, config: string, records: number, throughput: number) => {
    const res = await runKafkaTool(
      'org.apache.kafka.tools.ProducerPerformance',
      ['--topic', topic, '--num-records', String(records), '--record-size', String(opts.recordSize), '--throughput', String(throughput), '--command-config', config, '--producer-props', `bootstrap.servers=${bootstrap}`, 'acks=1', 'linger.ms=5', 'batch.size=262144', 'compression.type=none'],
      { timeoutMs: 300_000, jvmOpts: ['-Xmx512m'] },
    );
    if (res.code !== 0) throw new Error(`ProducerPerformance failed:\n${res.stderr.slice(-2000)}`);
    return parseProducerPerf(res.stdout);
  };
  const consumerPerf = async (bootstrap: string, config: string, records: number) => {
    const res = await runKafkaTool(
      'org.apache.kafka.tools.ConsumerPerformance',
      ['--bootstrap-server', bootstrap, '--topic', topic, '--messages', String(records), '--command-config', config, '--timeout', '60000', '--group', `bench-${Date.now()}`],
      { timeoutMs: 300_000, jvmOpts: ['-Xmx512m'] },
    );
    if (res.code !== 0) throw new Error(`ConsumerPerformance failed:\n${res.stderr.slice(-2000)}`);
    return parseConsumerPerf(res.stdout);
  };

  // ~1 KiB JSON records with a card number each, lz4: direct vs passthrough topic vs masked topic
  const payloads = join(work, 'payloads.txt');
  writeFileSync(
    payloads,
    Array.from({ length: 200 }, (_, i) => {
      const base = JSON.stringify({ id: i, card: '4111 1111 1111 1111', merchant: `m-${i % 17}`, note: '' });
      return base.replace('"note":""', `"note":"${'lorem ipsum '.repeat(90).slice(0, opts.recordSize - base.length)}"`);
    }).join('\n'),
  );
  const jsonPerf = async (bootstrap: string, config: string, to: string, records: number) => {
    const res = await runKafkaTool(
      'org.apache.kafka.tools.ProducerPerformance',
      ['--topic', to, '--num-records', String(records), '--payload-file', payloads, '--throughput', '-1', '--command-config', config, '--producer-props', `bootstrap.servers=${bootstrap}`, 'acks=1', 'linger.ms=5', 'batch.size=262144', 'compression.type=lz4'],
      { timeoutMs: 300_000, jvmOpts: ['-Xmx512m'] },
    );
    if (res.code !== 0) throw new Error(`ProducerPerformance failed:\n${res.stderr.slice(-2000)}`);
    return parseProducerPerf(res.stdout);
  };

  // warm-up (JIT of both the gateway and the broker), not measured
  await producerPerf(viaGateway, props, Math.min(20_000, opts.records), -1);
  await producerPerf(kafka.bootstrap, plainProps, Math.min(20_000, opts.records), -1);

  // two alternating rounds, best of each: on a shared 2-core box the order and the
  // neighbours move single runs by more than the gateway does
  const best = <T extends { mbPerSec: number }>(a: T, b: T) => (b.mbPerSec > a.mbPerSec ? b : a);
  log('throughput: ProducerPerformance, unthrottled (2 rounds)');
  let directProduce = await producerPerf(kafka.bootstrap, plainProps, opts.records, -1);
  let gatewayProduce = await producerPerf(viaGateway, props, opts.records, -1);
  gatewayProduce = best(gatewayProduce, await producerPerf(viaGateway, props, opts.records, -1));
  directProduce = best(directProduce, await producerPerf(kafka.bootstrap, plainProps, opts.records, -1));
  log('throughput: ConsumerPerformance (2 rounds)');
  let directConsume = await consumerPerf(kafka.bootstrap, plainProps, opts.records);
  let gatewayConsume = await consumerPerf(viaGateway, props, opts.records);
  gatewayConsume = best(gatewayConsume, await consumerPerf(viaGateway, props, opts.records));
  directConsume = best(directConsume, await consumerPerf(kafka.bootstrap, plainProps, opts.records));
  log(`latency: ProducerPerformance at ${opts.rate} records/s (2 alternating rounds, averaged)`);
  const latencyRecords = opts.rate * 15;
  const rounds: Array<[PerfResult, PerfResult]> = [];
  for (let i = 0; i < 2; i++) {
    const d = await producerPerf(kafka.bootstrap, plainProps, latencyRecords, opts.rate);
    const g = await producerPerf(viaGateway, props, latencyRecords, opts.rate);
    rounds.push([d, g]);
  }
  const mean = (f: (r: PerfResult) => number, side: 0 | 1) => round(rounds.reduce((a, r) => a + f(r[side]), 0) / rounds.length);
  const atRate = (side: 0 | 1) => ({ avgMs: mean((r) => r.avgMs, side), p50Ms: mean((r) => r.p50Ms, side), p99Ms: mean((r) => r.p99Ms, side), rounds: rounds.map((r) => r[side]) });
  const directRate = atRate(0);
  const gatewayRate = atRate(1);
  log(`latency: one-at-a-time probe at 500 requests/s, ${opts.probeSeconds} s per side in 4 alternating slices`);
  const directLat: number[] = [];
  const gatewayLat: number[] = [];
  for (let i = 0; i < 4; i++) {
    directLat.push(...(await probe(kafka.bootstrap, topic, 500, opts.probeSeconds / 4, opts.recordSize)));
    gatewayLat.push(...(await probe(viaGateway, topic, 500, opts.probeSeconds / 4, opts.recordSize, { token })));
  }
  const directProbe = latencySummary(directLat);
  const gatewayProbe = latencySummary(gatewayLat);
  // the same one-at-a-time probe with ~1 KiB JSON records holding a card number: direct vs the masked topic
  log(`latency: the probe with JSON card records, direct vs masked topic (${opts.probeSeconds} s per side)`);
  const cardRecord = Buffer.from(JSON.stringify({ id: 1, card: '4111 1111 1111 1111', merchant: 'm-1', note: 'lorem ipsum '.repeat(80) }));
  const maskedDirectLat: number[] = [];
  const maskedLat: number[] = [];
  for (let i = 0; i < 4; i++) {
    maskedDirectLat.push(...(await probe(kafka.bootstrap, maskedTopic, 500, opts.probeSeconds / 4, 0, undefined, cardRecord)));
    maskedLat.push(...(await probe(viaGateway, maskedTopic, 500, opts.probeSeconds / 4, 0, { token }, cardRecord)));
  }
  const maskedDirectProbe = latencySummary(maskedDirectLat);
  const maskedProbe = latencySummary(maskedLat);
  log('masking: ProducerPerformance, ~1 KiB JSON records with card numbers, lz4 (direct, gateway passthrough topic, gateway masked topic; best of 2)');
  const maskRecords = Math.min(opts.records, 200_000);
  let maskDirect = await jsonPerf(kafka.bootstrap, plainProps, topic, maskRecords);
  let maskPass = await jsonPerf(viaGateway, props, topic, maskRecords);
  let masked = await jsonPerf(viaGateway, props, maskedTopic, maskRecords);
  maskDirect = best(maskDirect, await jsonPerf(kafka.bootstrap, plainProps, topic, maskRecords));
  maskPass = best(maskPass, await jsonPerf(viaGateway, props, topic, maskRecords));
  masked = best(masked, await jsonPerf(viaGateway, props, maskedTopic, maskRecords));

  await gateway.stop();
  const result = {
    suite: 'kafka',
    options: opts,
    produce: {
      direct: directProduce,
      gateway: gatewayProduce,
      mbRatio: round(gatewayProduce.mbPerSec / directProduce.mbPerSec),
    },
    consume: {
      direct: directConsume,
      gateway: gatewayConsume,
      mbRatio: round(gatewayConsume.mbPerSec / directConsume.mbPerSec),
    },
    latencyAtRate: {
      rate: opts.rate,
      direct: directRate,
      gateway: gatewayRate,
      addedAvgMs: round(gatewayRate.avgMs - directRate.avgMs),
      addedP50Ms: round(gatewayRate.p50Ms - directRate.p50Ms),
      addedP99Ms: round(gatewayRate.p99Ms - directRate.p99Ms),
    },
    masking: {
      direct: maskDirect,
      passthrough: maskPass,
      masked,
      passthroughRatio: round(maskPass.mbPerSec / maskDirect.mbPerSec),
      maskedRatio: round(masked.mbPerSec / maskDirect.mbPerSec),
    },
    probe: {
      direct: directProbe,
      gateway: gatewayProbe,
      addedP50Us: gatewayProbe.p50Us - directProbe.p50Us,
      addedP99Us: gatewayProbe.p99Us - directProbe.p99Us,
    },
    maskedProbe: {
      direct: maskedDirectProbe,
      gateway: maskedProbe,
      addedP50Us: maskedProbe.p50Us - maskedDirectProbe.p50Us,
      addedP99Us: maskedProbe.p99Us - maskedDirectProbe.p99Us,
    },
  };
  log(`produce  direct ${directProduce.mbPerSec} MB/s, gateway ${gatewayProduce.mbPerSec} MB/s, ratio ${result.produce.mbRatio}`);
  log(`consume  direct ${directConsume.mbPerSec} MB/s, gateway ${gatewayConsume.mbPerSec} MB/s, ratio ${result.consume.mbRatio}`);
  log(`latency at ${opts.rate}/s: added avg ${result.latencyAtRate.addedAvgMs} ms, added p99 ${result.latencyAtRate.addedP99Ms} ms (ProducerPerformance, 1 ms resolution)`);
  log(`masking (lz4 JSON) direct ${maskDirect.mbPerSec} MB/s, passthrough ${maskPass.mbPerSec} MB/s, masked ${masked.mbPerSec} MB/s`);
  log(`probe at 500/s: added p50 ${result.probe.addedP50Us} us, added p99 ${result.probe.addedP99Us} us`);
  log(`masked probe at 500/s (JSON card records): added p50 ${result.maskedProbe.addedP50Us} us, added p99 ${result.maskedProbe.addedP99Us} us`);
  return {
    ...result,
    // flat names for bench:check (bench/budgets.json)
    metrics: {
      'kafka.produce.throughput_ratio': result.produce.mbRatio,
      'kafka.consume.throughput_ratio': result.consume.mbRatio,
      'kafka.lz4.passthrough.throughput_ratio': result.masking.passthroughRatio,
      'kafka.lz4.masked.throughput_ratio': result.masking.maskedRatio,
      'kafka.fixed.p50_added_ms': round(result.probe.addedP50Us / 1000),
      'kafka.fixed.p99_added_ms': round(result.probe.addedP99Us / 1000),
      'kafka.masked.fixed.p50_added_ms': round(result.maskedProbe.addedP50Us / 1000),
      'kafka.masked.fixed.p99_added_ms': round(result.maskedProbe.addedP99Us / 1000),
    },
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
