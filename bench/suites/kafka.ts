// Kafka wire-protocol bench: the Java ProducerPerformance / ConsumerPerformance tools (from
// the project's Kafka jars) straight at the broker and through the gateway, in one run, on
// a passthrough topic (no inspection rules). Plus a sub-millisecond latency probe at a
// fixed moderate rate (ProducerPerformance reports percentiles in whole milliseconds).
//
//   npm run bench -- kafka [--quick] [--only produce,consume,latency,probe,masking]
//
// Every throughput run also reports the CPU the gateway (all threads, and its accept thread
// alone), the bare relay and the broker spent on it (from /proc), in seconds and per MB moved:
// milliseconds of CPU per MB is millicores per MB/s, the unit Kafka proxy projects publish,
// and unlike MB/s it does not move with the machine's speed of the day. Produce, consume and
// the probe also run through a bare TCP relay (bench/servers/relay.ts): what any extra hop
// costs here, reported beside the gateway. The `connections` phase measures the gateway's
// memory with 1, 1,000 and 5,000 idle authenticated Kafka connections. The `schema` phase
// writes the same ~1 KiB events as Avro (a real schema registry, Apicurio) and as JSON to
// masked topics with one Node producer, and compares throughput and gateway CPU per MB.
//
// Starts its own broker, identity provider and gateway (a child process).

import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Consumer, Producer } from '@platformatic/kafka';
import avro from 'avsc';
import { startRegistry, type RunningRegistry } from '../../src/dev/registry.ts';
import { runKafkaTool } from '../../src/dev/kafka.ts';
import { connect, type Socket } from 'node:net';
import { freePort, spawnNode, waitHealthy } from '../lib/procs.ts';
import { startServices } from '../lib/services.ts';
import { saturation } from '../lib/load.ts';

/** Settings of a full run, or of a --quick smoke run. */
export function kafkaBenchOptions(quick: boolean, profileDir?: string, only?: string[]): KafkaBenchOptions {
  const phases = only?.filter((p) => (KAFKA_PHASES as readonly string[]).includes(p)) as KafkaPhase[] | undefined;
  return { records: quick ? 50_000 : 500_000, recordSize: 1024, rate: 2000, probeSeconds: quick ? 3 : 10, profileDir, phases: phases?.length ? phases : [...KAFKA_PHASES] };
}

export const KAFKA_PHASES = ['produce', 'consume', 'latency', 'probe', 'masking', 'schema', 'protect', 'connections'] as const;
export type KafkaPhase = (typeof KAFKA_PHASES)[number];

export interface KafkaBenchOptions {
  records: number;
  recordSize: number;
  /** records/s for the latency runs */
  rate: number;
  /** seconds of the latency probe */
  probeSeconds: number;
  /** write a V8 CPU profile of the gateway here (--profile) */
  profileDir?: string;
  /** the parts of the suite to run (--only) */
  phases: KafkaPhase[];
}

/** CPU seconds (user + system) a process (or, with `thread`, one of its threads) has used so far, from /proc. */
function cpuSeconds(pid: number, thread?: number): number {
  try {
    const stat = readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields 14 and 15 (utime, stime) are the 12th and 13th after the command name
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

/** CPU of one run: seconds per process, and milliseconds per MB of records (= millicores per MB/s). */
interface RunCpu {
  mb: number;
  gatewayS: number;
  gatewayAcceptS: number;
  relayS: number;
  brokerS: number;
  gatewayMsPerMb: number;
  relayMsPerMb: number;
  brokerMsPerMb: number;
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

interface ConsumePerf {
  /** fetch.MB.sec: while fetching, the consumer group's join (rebalance) not counted */
  mbPerSec: number;
  recordsPerSec: number;
  /** MB.sec: over the whole run, the group join included */
  overallMbPerSec: number;
  rebalanceMs: number;
}

function parseConsumerPerf(out: string): ConsumePerf {
  // CSV: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
  //      rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
  const line = out.trim().split('\n').filter((l) => /^\d{4}-/.test(l)).pop();
  if (!line) throw new Error(`unexpected ConsumerPerformance output:\n${out.slice(-2000)}`);
  const cols = line.split(',').map((c) => Number(c.trim()));
  return { mbPerSec: cols[8]!, recordsPerSec: cols[9]!, overallMbPerSec: cols[3]!, rebalanceMs: cols[6]! };
}

/** Resolves once something accepts connections on 127.0.0.1:`port`. */
async function waitListening(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function latencySummary(lat: number[]): { p50Us: number; p99Us: number; avgUs: number; n: number } {
  const sorted = [...lat].sort((a, b) => a - b);
  const avg = lat.reduce((a, b) => a + b, 0) / lat.length;
  return { p50Us: Math.round(percentile(sorted, 50)), p99Us: Math.round(percentile(sorted, 99)), avgUs: Math.round(avg), n: lat.length };
}

/** One produce at a time (acks=1) at a fixed rate; per-request latencies in microseconds. `spans` receives each request's [sent, answered] on the monotonic clock in µs. */
async function probe(bootstrap: string, topic: string, rate: number, seconds: number, size: number, sasl?: { token: string }, payload?: Buffer, spans?: Array<[number, number]>): Promise<number[]> {
  const producer = new Producer({
    clientId: 'bench-probe',
    bootstrapBrokers: [bootstrap],
    acks: 1,
    ...(sasl ? { sasl: { mechanism: 'OAUTHBEARER' as const, token: sasl.token } } : {}),
  });
  const value = payload ?? Buffer.alloc(size, 0x61);
  const lat: number[] = [];
  const nowUs = () => Number(process.hrtime.bigint()) / 1000;
  try {
    await producer.send({ messages: [{ topic, value, partition: 0 }] }); // connect + metadata outside the measurement
    const interval = 1000 / rate;
    const end = performance.now() + seconds * 1000;
    let next = performance.now();
    while (performance.now() < end) {
      const t0 = nowUs();
      await producer.send({ messages: [{ topic, value, partition: 0 }] });
      const t1 = nowUs();
      lat.push(t1 - t0);
      spans?.push([t0, t1]);
      next += interval;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  } finally {
    await producer.close();
  }
  return lat;
}

/**
 * Where the probe's produce spends its time, p50 and p99 of each stage: client send to the
 * gateway's read of the frame (the client's encoding and the first hop), the gateway's work up
 * to the broker write, the broker (both kernel hops included), the gateway's work from the
 * broker's answer to the client's, and from there to the client's promise settling.
 */
function probeStages(spans: Array<[number, number]>, gateway: number[][]): Record<string, { p50Us: number; p99Us: number }> {
  const stages: Record<string, number[]> = { clientToGateway: [], gatewayToBroker: [], broker: [], gatewayToClient: [], clientAfter: [] };
  let g = 0;
  for (const [sent, answered] of spans) {
    while (g < gateway.length && gateway[g]![0]! < sent) g++;
    const r = gateway[g];
    if (!r || r[3]! > answered) continue;
    stages.clientToGateway!.push(r[0]! - sent);
    stages.gatewayToBroker!.push(r[1]! - r[0]!);
    stages.broker!.push(r[2]! - r[1]!);
    stages.gatewayToClient!.push(r[3]! - r[2]!);
    stages.clientAfter!.push(answered - r[3]!);
  }
  return Object.fromEntries(Object.entries(stages).map(([k, v]) => { const s = latencySummary(v); return [k, { p50Us: s.p50Us, p99Us: s.p99Us, n: s.n }]; }));
}

export async function runKafkaSuite(opts: KafkaBenchOptions, log: (s: string) => void = console.log): Promise<Record<string, unknown>> {
  log('starting Kafka, the identity provider and the gateway...');
  // the broker's second listener is reached through a bare relay, which it advertises
  const [relayPort, relayedPort] = await Promise.all([freePort(), freePort()]);
  const { work, kafka, idp } = await startServices('kafka', { port: relayedPort, advertisedPort: relayPort });
  const topic = 'bench.passthrough';
  // a topic with a produce rule: records are decoded, card numbers masked, batches re-encoded
  const maskedTopic = 'bench.masked';
  // the schema phase: the same events as Avro on a schema topic, and as JSON on a masked topic
  const avroTopic = 'bench.schema.avro';
  const jsonTopic = 'bench.schema.json';
  const wantsSchema = opts.phases.includes('schema');
  let registry: RunningRegistry | undefined;
  if (wantsSchema) {
    registry = await startRegistry();
    const created = await runKafkaTool('org.apache.kafka.tools.TopicCommand', ['--bootstrap-server', kafka.bootstrap, '--create', '--topic', avroTopic, '--partitions', '1', '--replication-factor', '1']);
    const createdJson = await runKafkaTool('org.apache.kafka.tools.TopicCommand', ['--bootstrap-server', kafka.bootstrap, '--create', '--topic', jsonTopic, '--partitions', '1', '--replication-factor', '1']);
    if (created.code !== 0 || createdJson.code !== 0) throw new Error(`topic creation failed: ${created.stderr}${createdJson.stderr}`);
  }
  // the protect phase: the same events with the card masked, encrypted with FF1 and as an
  // envelope on produce; read back raw-and-masked, FF1-revealed and envelope-revealed
  const protectTopics = { raw: 'bench.protect.raw', ff1: 'bench.protect.ff1', envelope: 'bench.protect.envelope' };
  for (const t of [topic, maskedTopic, ...(opts.phases.includes('protect') ? Object.values(protectTopics) : [])]) {
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
  protection:
    keys: [{ version: 1, secret: "bench-only-protection-secret-0123456789abcdef" }]
  rules:
    - { id: pci.card-number, detector: payment-card, action: { type: mask, keepLast: 4 } }
    - { id: card.ff1, detector: payment-card, action: { type: encrypt, format: preserve, luhn: true, keepFirst: 6, keyVersion: 1 } }
    - { id: card.envelope, detector: payment-card, action: { type: encrypt } }
    - { id: card.ff1-reveal, detector: payment-card, action: { type: decrypt, rule: card.ff1 } }
    - { id: card.envelope-reveal, action: { type: decrypt, rule: card.envelope } }
  topics:
    - { topics: ["${maskedTopic}", "${jsonTopic}"], format: json, produce: [pci.card-number] }
    - { topics: ["${protectTopics.raw}"], format: json, consume: [{ rules: [pci.card-number] }] }
    - { topics: ["${protectTopics.ff1}"], format: json, produce: [card.ff1], consume: [{ rules: [card.ff1-reveal] }] }
    - { topics: ["${protectTopics.envelope}"], format: json, produce: [card.envelope], consume: [{ rules: [card.envelope-reveal] }] }
${registry ? `    - { topics: ["${avroTopic}"], schema: { required: true }, produce: [pci.card-number] }
schemas:
  registry: { url: "${registry.ccompat}" }` : ''}
audit:
  spool: { dir: "${join(work, 'audit')}" }
limits:
  # the connections phase holds 5,000 connections of one identity
  connections: { perIdentity: 10000 }
`,
  );
  const stagesFile = join(work, 'stages.json');
  const gateway = spawnNode('gateway', join(ROOT, 'src/cli/main.ts'), ['serve', '--config', configFile], {
    logFile: join(work, 'gateway.log'),
    cwd: ROOT,
    nodeArgs: [...(opts.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`] : []), '--import', join(ROOT, 'bench/lib/stage-timer.ts')],
    env: { ...process.env, STREAMGATE_STAGES_FILE: stagesFile },
  });
  /** Runs `fn` inside a stage-timing window of the gateway (bench/lib/stage-timer.ts); the window's requests, each [read, to broker, broker answer, answered] in µs. */
  const timingStages = async (fn: () => Promise<void>): Promise<number[][]> => {
    rmSync(stagesFile, { force: true });
    gateway.child.kill('SIGUSR2');
    await new Promise((r) => setTimeout(r, 50));
    await fn();
    gateway.child.kill('SIGUSR2');
    for (let i = 0; i < 100 && !existsSync(stagesFile); i++) await new Promise((r) => setTimeout(r, 20));
    return JSON.parse(readFileSync(stagesFile, 'utf8')) as number[][];
  };
  await waitHealthy(gateway, `http://127.0.0.1:${httpPort}`);
  const viaGateway = `127.0.0.1:${kafkaPort}`;
  const relay = spawnNode('relay', join(ROOT, 'bench/servers/relay.ts'), ['--port', String(relayPort), '--to', `127.0.0.1:${relayedPort}`], { logFile: join(work, 'relay.log'), cwd: ROOT });
  await waitListening(relayPort);
  const viaRelay = `127.0.0.1:${relayPort}`;
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
  // The same size with varied content (ids, names, amounts, words from a vocabulary): lz4 gets
  // ~2-3x on these instead of the ~75x of the repeated note above, as with real event streams.
  // Reported beside the budgeted measurement, not instead of it.
  const variedPayloads = join(work, 'payloads-varied.txt');
  writeFileSync(variedPayloads, variedRecords(1000, opts.recordSize).join('\n'));
  const jsonPerf = async (bootstrap: string, config: string, to: string, records: number, file = payloads) => {
    const res = await runKafkaTool(
      'org.apache.kafka.tools.ProducerPerformance',
      ['--topic', to, '--num-records', String(records), '--payload-file', file, '--throughput', '-1', '--command-config', config, '--producer-props', `bootstrap.servers=${bootstrap}`, 'acks=1', 'linger.ms=5', 'batch.size=262144', 'compression.type=lz4'],
      { timeoutMs: 300_000, jvmOpts: ['-Xmx512m'] },
    );
    if (res.code !== 0) throw new Error(`ProducerPerformance failed:\n${res.stderr.slice(-2000)}`);
    return parseProducerPerf(res.stdout);
  };

  // CPU seconds of the gateway, the relay and the broker over one run, and per MB moved
  // (`mb`: the records' bytes, uncompressed): on two shared cores, whatever the gateway spends
  // per byte is taken from the broker and the client
  const gatewayPid = gateway.child.pid ?? -1;
  const relayPid = relay.child.pid ?? -1;
  const withCpu = async <T extends { mbPerSec: number }>(mb: number, run: () => Promise<T>): Promise<T & { cpu: RunCpu }> => {
    const g0 = cpuSeconds(gatewayPid);
    const a0 = cpuSeconds(gatewayPid, gatewayPid);
    const r0 = cpuSeconds(relayPid);
    const b0 = cpuSeconds(kafka.pid);
    const r = await run();
    const gatewayS = round(cpuSeconds(gatewayPid) - g0);
    const relayS = round(cpuSeconds(relayPid) - r0);
    const brokerS = round(cpuSeconds(kafka.pid) - b0);
    const perMb = (cpuS: number) => round((cpuS * 1000) / mb);
    return {
      ...r,
      cpu: { mb: round(mb), gatewayS, gatewayAcceptS: round(cpuSeconds(gatewayPid, gatewayPid) - a0), relayS, brokerS, gatewayMsPerMb: perMb(gatewayS), relayMsPerMb: perMb(relayS), brokerMsPerMb: perMb(brokerS) },
    };
  };
  // the records' bytes of a run, in MB (2^20 bytes, as the Kafka tools count)
  const mbOf = (records: number, size = opts.recordSize) => (records * size) / 1048576;
  const cpuLine = (what: string, c: RunCpu) => `${what}: ${c.gatewayMsPerMb} ms CPU per MB (= millicores per MB/s) in the gateway, ${c.relayMsPerMb} in the relay, ${c.brokerMsPerMb} in the broker`;
  const phase = (p: KafkaPhase) => opts.phases.includes(p);
  const result: Record<string, unknown> = { suite: 'kafka', options: opts };
  const metrics: Record<string, number> = {};

  // warm-up (JIT of both the gateway and the broker), not measured; it also fills the topic
  // the consumers read
  await producerPerf(viaGateway, props, Math.min(20_000, opts.records), -1);
  await producerPerf(kafka.bootstrap, plainProps, Math.min(20_000, opts.records), -1);

  // two alternating rounds, best of each: on a shared 2-core box the order and the
  // neighbours move single runs by more than the gateway does
  const best = <T extends { mbPerSec: number }>(a: T, b: T) => (b.mbPerSec > a.mbPerSec ? b : a);
  if (phase('produce') || phase('consume')) {
    log('throughput: ProducerPerformance, unthrottled (2 rounds)');
    // (consume alone: the direct run fills the topic, and a profile shows the consume path only)
    const mb = mbOf(opts.records);
    let directProduce = await withCpu(mb, () => producerPerf(kafka.bootstrap, plainProps, opts.records, -1));
    if (phase('produce')) {
      let gatewayProduce = await withCpu(mb, () => producerPerf(viaGateway, props, opts.records, -1));
      let relayProduce = await withCpu(mb, () => producerPerf(viaRelay, plainProps, opts.records, -1));
      relayProduce = best(relayProduce, await withCpu(mb, () => producerPerf(viaRelay, plainProps, opts.records, -1)));
      gatewayProduce = best(gatewayProduce, await withCpu(mb, () => producerPerf(viaGateway, props, opts.records, -1)));
      directProduce = best(directProduce, await withCpu(mb, () => producerPerf(kafka.bootstrap, plainProps, opts.records, -1)));
      const produce = {
        direct: directProduce,
        gateway: gatewayProduce,
        relay: relayProduce,
        mbRatio: round(gatewayProduce.mbPerSec / directProduce.mbPerSec),
        relayRatio: round(relayProduce.mbPerSec / directProduce.mbPerSec),
      };
      result.produce = produce;
      metrics['kafka.produce.throughput_ratio'] = produce.mbRatio;
      metrics['kafka.produce.relay_ratio'] = produce.relayRatio;
      metrics['kafka.produce.vs_relay_ratio'] = round(gatewayProduce.mbPerSec / relayProduce.mbPerSec);
      metrics['kafka.produce.gateway_ms_per_mb'] = gatewayProduce.cpu.gatewayMsPerMb;
      metrics['kafka.produce.relay_ms_per_mb'] = relayProduce.cpu.relayMsPerMb;
      metrics['kafka.produce.cpu_vs_relay'] = round(gatewayProduce.cpu.gatewayMsPerMb / relayProduce.cpu.relayMsPerMb);
      log(`produce  direct ${directProduce.mbPerSec} MB/s, gateway ${gatewayProduce.mbPerSec} MB/s, bare relay ${relayProduce.mbPerSec} MB/s: ratio ${produce.mbRatio} (relay ${produce.relayRatio})`);
      log(`  ${cpuLine('gateway run', gatewayProduce.cpu)}; relay run: ${relayProduce.cpu.relayMsPerMb} in the relay`);
    }
  }
  if (phase('consume')) {
    log('throughput: ConsumerPerformance, direct / gateway / bare relay (2 rounds, fetch MB/s)');
    const mb = mbOf(opts.records);
    const direct = () => withCpu(mb, () => consumerPerf(kafka.bootstrap, plainProps, opts.records));
    const viaGw = () => withCpu(mb, () => consumerPerf(viaGateway, props, opts.records));
    const viaBare = () => withCpu(mb, () => consumerPerf(viaRelay, plainProps, opts.records));
    let directConsume = await direct();
    let gatewayConsume = await viaGw();
    let relayConsume = await viaBare();
    relayConsume = best(relayConsume, await viaBare());
    gatewayConsume = best(gatewayConsume, await viaGw());
    directConsume = best(directConsume, await direct());
    const consume = {
      direct: directConsume,
      gateway: gatewayConsume,
      relay: relayConsume,
      mbRatio: round(gatewayConsume.mbPerSec / directConsume.mbPerSec),
      relayRatio: round(relayConsume.mbPerSec / directConsume.mbPerSec),
    };
    result.consume = consume;
    metrics['kafka.consume.throughput_ratio'] = consume.mbRatio;
    metrics['kafka.consume.relay_ratio'] = consume.relayRatio;
    // the gateway's own cost on the fetch path, the hop's taken out: a regression guard that
    // this machine can pass, beside the product target it cannot (bench/RESULTS.md)
    metrics['kafka.consume.vs_relay_ratio'] = round(gatewayConsume.mbPerSec / relayConsume.mbPerSec);
    metrics['kafka.consume.gateway_ms_per_mb'] = gatewayConsume.cpu.gatewayMsPerMb;
    metrics['kafka.consume.relay_ms_per_mb'] = relayConsume.cpu.relayMsPerMb;
    metrics['kafka.consume.cpu_vs_relay'] = round(gatewayConsume.cpu.gatewayMsPerMb / relayConsume.cpu.relayMsPerMb);
    log(`consume  direct ${directConsume.mbPerSec} MB/s, gateway ${gatewayConsume.mbPerSec} MB/s, bare relay ${relayConsume.mbPerSec} MB/s: ratio ${consume.mbRatio} (relay ${consume.relayRatio}); gateway CPU ${gatewayConsume.cpu.gatewayS} s (accept thread ${gatewayConsume.cpu.gatewayAcceptS} s), broker ${gatewayConsume.cpu.brokerS} s vs ${directConsume.cpu.brokerS} s direct`);
    log(`  ${cpuLine('gateway run', gatewayConsume.cpu)}; relay run: ${relayConsume.cpu.relayMsPerMb} in the relay`);
  }
  if (phase('latency')) {
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
    const direct = atRate(0);
    const gw = atRate(1);
    const latencyAtRate = { rate: opts.rate, direct, gateway: gw, addedAvgMs: round(gw.avgMs - direct.avgMs), addedP50Ms: round(gw.p50Ms - direct.p50Ms), addedP99Ms: round(gw.p99Ms - direct.p99Ms) };
    result.latencyAtRate = latencyAtRate;
    log(`latency at ${opts.rate}/s: added avg ${latencyAtRate.addedAvgMs} ms, added p99 ${latencyAtRate.addedP99Ms} ms (ProducerPerformance, 1 ms resolution)`);
  }
  if (phase('probe')) {
    log(`latency: one-at-a-time probe at 500 requests/s, ${opts.probeSeconds} s per side in 4 alternating slices (direct, gateway, bare relay)`);
    const directLat: number[] = [];
    const gatewayLat: number[] = [];
    const relayLat: number[] = [];
    const spans: Array<[number, number]> = [];
    const inGateway: number[][] = [];
    for (let i = 0; i < 4; i++) {
      directLat.push(...(await probe(kafka.bootstrap, topic, 500, opts.probeSeconds / 4, opts.recordSize)));
      inGateway.push(...(await timingStages(async () => void gatewayLat.push(...(await probe(viaGateway, topic, 500, opts.probeSeconds / 4, opts.recordSize, { token }, undefined, spans))))));
      relayLat.push(...(await probe(viaRelay, topic, 500, opts.probeSeconds / 4, opts.recordSize)));
    }
    const stages = probeStages(spans, inGateway);
    result.probeStages = stages;
    log(`probe stages, p50 / p99 us: ${Object.entries(stages).map(([k, v]) => `${k} ${v.p50Us} / ${v.p99Us}`).join(', ')}`);
    metrics['kafka.fixed.gateway_own_p50_us'] = stages.gatewayToBroker!.p50Us + stages.gatewayToClient!.p50Us;
    const direct = latencySummary(directLat);
    const gw = latencySummary(gatewayLat);
    const bare = latencySummary(relayLat);
    const probeResult = {
      direct,
      gateway: gw,
      relay: bare,
      addedP50Us: gw.p50Us - direct.p50Us,
      addedP99Us: gw.p99Us - direct.p99Us,
      relayAddedP50Us: bare.p50Us - direct.p50Us,
      relayAddedP99Us: bare.p99Us - direct.p99Us,
    };
    result.probe = probeResult;
    metrics['kafka.fixed.p50_added_ms'] = round(probeResult.addedP50Us / 1000);
    metrics['kafka.fixed.p99_added_ms'] = round(probeResult.addedP99Us / 1000);
    metrics['kafka.fixed.relay_p99_added_ms'] = round(probeResult.relayAddedP99Us / 1000);
    log(`probe at 500/s: added p50 ${probeResult.addedP50Us} us, added p99 ${probeResult.addedP99Us} us (bare relay: p50 ${probeResult.relayAddedP50Us} us, p99 ${probeResult.relayAddedP99Us} us)`);
    // the same one-at-a-time probe with ~1 KiB JSON records holding a card number: direct vs the masked topic
    log(`latency: the probe with JSON card records, direct vs masked topic (${opts.probeSeconds} s per side)`);
    const cardRecord = Buffer.from(JSON.stringify({ id: 1, card: '4111 1111 1111 1111', merchant: 'm-1', note: 'lorem ipsum '.repeat(80) }));
    const maskedDirectLat: number[] = [];
    const maskedLat: number[] = [];
    for (let i = 0; i < 4; i++) {
      maskedDirectLat.push(...(await probe(kafka.bootstrap, maskedTopic, 500, opts.probeSeconds / 4, 0, undefined, cardRecord)));
      maskedLat.push(...(await probe(viaGateway, maskedTopic, 500, opts.probeSeconds / 4, 0, { token }, cardRecord)));
    }
    const mDirect = latencySummary(maskedDirectLat);
    const mGw = latencySummary(maskedLat);
    const maskedProbe = { direct: mDirect, gateway: mGw, addedP50Us: mGw.p50Us - mDirect.p50Us, addedP99Us: mGw.p99Us - mDirect.p99Us };
    result.maskedProbe = maskedProbe;
    metrics['kafka.masked.fixed.p50_added_ms'] = round(maskedProbe.addedP50Us / 1000);
    metrics['kafka.masked.fixed.p99_added_ms'] = round(maskedProbe.addedP99Us / 1000);
    log(`masked probe at 500/s (JSON card records): added p50 ${maskedProbe.addedP50Us} us, added p99 ${maskedProbe.addedP99Us} us`);
  }
  if (phase('masking')) {
    log('masking: ProducerPerformance, ~1 KiB JSON records with card numbers, lz4 (direct, gateway passthrough topic, gateway masked topic; best of 2)');
    const maskRecords = Math.min(opts.records, 200_000);
    let maskDirect = await withCpu(mbOf(maskRecords), () => jsonPerf(kafka.bootstrap, plainProps, topic, maskRecords));
    let maskPass = await withCpu(mbOf(maskRecords), () => jsonPerf(viaGateway, props, topic, maskRecords));
    let masked = await withCpu(mbOf(maskRecords), () => jsonPerf(viaGateway, props, maskedTopic, maskRecords));
    let maskRelay = await withCpu(mbOf(maskRecords), () => jsonPerf(viaRelay, plainProps, topic, maskRecords));
    maskRelay = best(maskRelay, await withCpu(mbOf(maskRecords), () => jsonPerf(viaRelay, plainProps, topic, maskRecords)));
    maskDirect = best(maskDirect, await withCpu(mbOf(maskRecords), () => jsonPerf(kafka.bootstrap, plainProps, topic, maskRecords)));
    maskPass = best(maskPass, await withCpu(mbOf(maskRecords), () => jsonPerf(viaGateway, props, topic, maskRecords)));
    masked = best(masked, await withCpu(mbOf(maskRecords), () => jsonPerf(viaGateway, props, maskedTopic, maskRecords)));
    const masking = {
      direct: maskDirect,
      passthrough: maskPass,
      masked,
      relay: maskRelay,
      passthroughRatio: round(maskPass.mbPerSec / maskDirect.mbPerSec),
      maskedRatio: round(masked.mbPerSec / maskDirect.mbPerSec),
      relayRatio: round(maskRelay.mbPerSec / maskDirect.mbPerSec),
    };
    result.masking = masking;
    metrics['kafka.lz4.passthrough.throughput_ratio'] = masking.passthroughRatio;
    metrics['kafka.lz4.masked.throughput_ratio'] = masking.maskedRatio;
    metrics['kafka.lz4.relay.throughput_ratio'] = masking.relayRatio;
    metrics['kafka.lz4.masked.gateway_ms_per_mb'] = masked.cpu.gatewayMsPerMb;
    metrics['kafka.lz4.passthrough.gateway_ms_per_mb'] = maskPass.cpu.gatewayMsPerMb;
    metrics['kafka.lz4.relay_ms_per_mb'] = maskRelay.cpu.relayMsPerMb;
    // the gateway against the bare relay for the same lz4 batches, and what masking costs over forwarding them untouched
    metrics['kafka.lz4.passthrough.vs_relay_ratio'] = round(masking.passthroughRatio / masking.relayRatio);
    if (maskPass.cpu.gatewayMsPerMb > 0) metrics['kafka.lz4.masked.cpu_vs_passthrough'] = round(masked.cpu.gatewayMsPerMb / maskPass.cpu.gatewayMsPerMb);
    log(`masking (lz4 JSON) direct ${maskDirect.mbPerSec} MB/s, bare relay ${maskRelay.mbPerSec} MB/s, passthrough ${maskPass.mbPerSec} MB/s, masked ${masked.mbPerSec} MB/s (gateway CPU ${masked.cpu.gatewayS} s, accept thread ${masked.cpu.gatewayAcceptS} s)`);
    log(`  per MB of records (uncompressed): masked ${masked.cpu.gatewayMsPerMb} ms, passthrough ${maskPass.cpu.gatewayMsPerMb} ms in the gateway; ${maskRelay.cpu.relayMsPerMb} ms in the relay`);
    log('masking, varied JSON records (~2-3x lz4): direct vs masked topic (best of 2)');
    let variedDirect = await withCpu(mbOf(maskRecords), () => jsonPerf(kafka.bootstrap, plainProps, topic, maskRecords, variedPayloads));
    let variedMasked = await withCpu(mbOf(maskRecords), () => jsonPerf(viaGateway, props, maskedTopic, maskRecords, variedPayloads));
    variedMasked = best(variedMasked, await withCpu(mbOf(maskRecords), () => jsonPerf(viaGateway, props, maskedTopic, maskRecords, variedPayloads)));
    variedDirect = best(variedDirect, await withCpu(mbOf(maskRecords), () => jsonPerf(kafka.bootstrap, plainProps, topic, maskRecords, variedPayloads)));
    const varied = { direct: variedDirect, masked: variedMasked, maskedRatio: round(variedMasked.mbPerSec / variedDirect.mbPerSec) };
    (result.masking as Record<string, unknown>).varied = varied;
    metrics['kafka.lz4.masked_varied.throughput_ratio'] = varied.maskedRatio;
    metrics['kafka.lz4.masked_varied.gateway_ms_per_mb'] = variedMasked.cpu.gatewayMsPerMb;
    log(`masking (lz4 varied JSON) direct ${variedDirect.mbPerSec} MB/s, masked ${variedMasked.mbPerSec} MB/s, ratio ${varied.maskedRatio} (gateway CPU ${variedMasked.cpu.gatewayS} s)`);
  }

  if (phase('schema') && registry) {
    log('schema: ~1 KiB events as Avro (schema registry, masked by field) and as JSON (masked), one Node producer, lz4, through the gateway and direct');
    const events = variedRecords(2000, opts.recordSize).map((j) => JSON.parse(j) as Record<string, unknown>);
    const type = avro.Type.forSchema(BENCH_EVENT_SCHEMA as avro.Schema);
    const res = await fetch(`${registry.ccompat}/subjects/${avroTopic}-value/versions`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
      body: JSON.stringify({ schema: JSON.stringify(BENCH_EVENT_SCHEMA) }),
    });
    const { id } = (await res.json()) as { id: number };
    const head = Buffer.alloc(5);
    head.writeInt32BE(id, 1);
    const avroValues = events.map((e) => Buffer.concat([head, type.toBuffer(e)]));
    const jsonValues = events.map((e) => Buffer.from(JSON.stringify(e)));
    const schemaRecords = opts.records / 5;
    const sasl = { mechanism: 'PLAIN' as const, username: 'ops', password: token };
    const run = (bootstrap: string, to: string, values: Buffer[], withSasl: boolean) => {
      const bytes = values.reduce((n, v) => n + v.length, 0) / values.length;
      return withCpu((schemaRecords * bytes) / 1048576, () => nodeProduce(bootstrap, to, values, schemaRecords, withSasl ? sasl : undefined));
    };
    // warm-up: the gateway compiles the schema and the JIT the paths
    await nodeProduce(viaGateway, avroTopic, avroValues, 5000, sasl);
    await nodeProduce(viaGateway, jsonTopic, jsonValues, 5000, sasl);
    let avroDirect = await run(kafka.bootstrap, avroTopic, avroValues, false);
    let avroGw = await run(viaGateway, avroTopic, avroValues, true);
    let jsonGw = await run(viaGateway, jsonTopic, jsonValues, true);
    avroDirect = best(avroDirect, await run(kafka.bootstrap, avroTopic, avroValues, false));
    avroGw = best(avroGw, await run(viaGateway, avroTopic, avroValues, true));
    jsonGw = best(jsonGw, await run(viaGateway, jsonTopic, jsonValues, true));
    const avroBytes = avroValues.reduce((n, v) => n + v.length, 0) / avroValues.length;
    const jsonBytes = jsonValues.reduce((n, v) => n + v.length, 0) / jsonValues.length;
    result.schema = { records: schemaRecords, avroBytes: round(avroBytes), jsonBytes: round(jsonBytes), avroDirect, avroGateway: avroGw, jsonGateway: jsonGw };
    metrics['kafka.schema.avro.throughput_ratio'] = round(avroGw.mbPerSec / avroDirect.mbPerSec);
    metrics['kafka.schema.avro.gateway_ms_per_mb'] = avroGw.cpu.gatewayMsPerMb;
    metrics['kafka.schema.json.gateway_ms_per_mb'] = jsonGw.cpu.gatewayMsPerMb;
    metrics['kafka.schema.avro.records_per_sec_vs_json'] = round(avroGw.recordsPerSec / jsonGw.recordsPerSec);
    if (jsonGw.cpu.gatewayMsPerMb > 0) metrics['kafka.schema.avro.cpu_vs_json'] = round(avroGw.cpu.gatewayMsPerMb / jsonGw.cpu.gatewayMsPerMb);
    log(`schema: Avro (${round(avroBytes)} B/record) direct ${avroDirect.mbPerSec} MB/s, through the gateway ${avroGw.mbPerSec} MB/s (${avroGw.recordsPerSec} records/s); JSON (${round(jsonBytes)} B/record) ${jsonGw.mbPerSec} MB/s (${jsonGw.recordsPerSec} records/s)`);
    log(`  ${cpuLine('Avro masked', avroGw.cpu)}; ${cpuLine('JSON masked', jsonGw.cpu)}`);

    // the HTTP API: REST v3 records with schema_id + JSON data (the gateway serializes them as
    // Avro, then masks the view) against the same events as JSON values, autocannon at saturation
    const httpRun = async (to: string, value: Record<string, unknown>) => {
      const body = JSON.stringify({ value });
      const target = { url: `http://127.0.0.1:${httpPort}/v3/clusters/streamgate/topics/${to}/records`, body, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` } };
      const g0 = cpuSeconds(gatewayPid);
      const r = await saturation(target, { connections: 16, seconds: opts.probeSeconds });
      const gatewayS = round(cpuSeconds(gatewayPid) - g0);
      if (r.ok === 0) throw new Error(`HTTP schema case: no request succeeded (${r.firstFailure ?? 'no answer'})`);
      const mb = (r.ok * jsonBytes) / 1048576;
      return { rps: r.rps, p50Ms: r.latency.p50, p99Ms: r.latency.p99, gatewayS, gatewayMsPerMbOfJson: round((gatewayS * 1000) / mb) };
    };
    const event = events[0]!;
    await httpRun(avroTopic, { schema_id: id, data: event });
    const httpAvro = await httpRun(avroTopic, { schema_id: id, data: event });
    const httpJson = await httpRun(jsonTopic, { type: 'JSON', data: event });
    (result.schema as Record<string, unknown>).http = { avro: httpAvro, json: httpJson };
    metrics['http.schema.avro.rps_vs_json'] = round(httpAvro.rps / httpJson.rps);
    metrics['http.schema.avro.cpu_vs_json'] = round(httpAvro.gatewayMsPerMbOfJson / httpJson.gatewayMsPerMbOfJson);
    log(`schema over HTTP (one ~1 KiB event per request, 16 connections, ${opts.probeSeconds} s): Avro via schema_id ${httpAvro.rps} req/s (p99 ${httpAvro.p99Ms} ms, ${httpAvro.gatewayMsPerMbOfJson} ms CPU per MB of JSON data), JSON ${httpJson.rps} req/s (p99 ${httpJson.p99Ms} ms, ${httpJson.gatewayMsPerMbOfJson} ms per MB)`);
  }

  if (phase('protect')) {
    // per record, what encrypting and revealing a card adds over masking it, on the same events
    // (one card each), the same Node client, lz4: produce to a masked / FF1 / envelope topic, then
    // read a raw topic masked on the way out against the FF1 and envelope topics revealed
    log('protect: ~1 KiB events, the card masked vs encrypted (FF1, envelope) on produce, and masked vs revealed on consume (Node client, lz4)');
    const values = variedRecords(2000, opts.recordSize).map((j) => Buffer.from(j));
    const n = opts.records / 5;
    const bytes = values.reduce((k, v) => k + v.length, 0) / values.length;
    const sasl = { mechanism: 'PLAIN' as const, username: 'ops', password: token };
    const produce = (to: string) => withCpu((n * bytes) / 1048576, () => nodeProduce(viaGateway, to, values, n, sasl));
    const consume = (from: string) => withCpu((n * bytes) / 1048576, () => nodeConsume(viaGateway, from, n, sasl));
    // warm-up of every path (the JIT, the FF1 and AES contexts, the envelope key's first reservation)
    for (const t of [maskedTopic, protectTopics.ff1, protectTopics.envelope]) await nodeProduce(viaGateway, t, values, 2000, sasl);
    const rounds: Record<string, Array<Awaited<ReturnType<typeof produce>>>> = { mask: [], ff1: [], envelope: [], raw: [] };
    for (let round = 0; round < 2; round++) {
      rounds.mask!.push(await produce(maskedTopic));
      rounds.ff1!.push(await produce(protectTopics.ff1));
      rounds.envelope!.push(await produce(protectTopics.envelope));
    }
    await nodeProduce(viaGateway, protectTopics.raw, values, n + 2000, sasl);
    const reads: Record<string, Array<Awaited<ReturnType<typeof consume>>>> = { mask: [], ff1: [], envelope: [] };
    for (let round = 0; round < 2; round++) {
      reads.mask!.push(await consume(protectTopics.raw));
      reads.ff1!.push(await consume(protectTopics.ff1));
      reads.envelope!.push(await consume(protectTopics.envelope));
    }
    // the round with the least gateway CPU of each: the other processes on two cores add noise, never subtract it
    const least = <T extends { cpu: RunCpu }>(list: T[]) => list.reduce((a, b) => (b.cpu.gatewayS < a.cpu.gatewayS ? b : a));
    const us = (cpuS: number) => round((cpuS * 1e6) / n);
    const p = { mask: least(rounds.mask!), ff1: least(rounds.ff1!), envelope: least(rounds.envelope!) };
    const c = { mask: least(reads.mask!), ff1: least(reads.ff1!), envelope: least(reads.envelope!) };
    result.protect = { records: n, bytes: round(bytes), produce: p, consume: c };
    for (const k of ['ff1', 'envelope'] as const) {
      metrics[`kafka.protect.${k}.produce_us_per_record_over_mask`] = round(us(p[k].cpu.gatewayS) - us(p.mask.cpu.gatewayS));
      metrics[`kafka.protect.${k}.reveal_us_per_record_over_mask`] = round(us(c[k].cpu.gatewayS) - us(c.mask.cpu.gatewayS));
      metrics[`kafka.protect.${k}.produce_cpu_vs_mask`] = round(p[k].cpu.gatewayS / p.mask.cpu.gatewayS);
      metrics[`kafka.protect.${k}.reveal_cpu_vs_mask`] = round(c[k].cpu.gatewayS / c.mask.cpu.gatewayS);
    }
    log(`protect, produce (gateway CPU per record): mask ${us(p.mask.cpu.gatewayS)} µs, FF1 ${us(p.ff1.cpu.gatewayS)} µs, envelope ${us(p.envelope.cpu.gatewayS)} µs; records/s ${p.mask.recordsPerSec} / ${p.ff1.recordsPerSec} / ${p.envelope.recordsPerSec}`);
    log(`protect, consume (gateway CPU per record): mask ${us(c.mask.cpu.gatewayS)} µs, FF1 reveal ${us(c.ff1.cpu.gatewayS)} µs, envelope reveal ${us(c.envelope.cpu.gatewayS)} µs; records/s ${c.mask.recordsPerSec} / ${c.ff1.recordsPerSec} / ${c.envelope.recordsPerSec}`);
  }

  if (phase('connections')) {
    log('memory: gateway RSS with 1, 1,000 and 5,000 idle SASL-authenticated Kafka connections');
    const held: Socket[] = [];
    const rss: Record<string, number> = { before: rssMb(gatewayPid) };
    try {
      for (const target of [1, 1000, 5000]) {
        while (held.length < target) {
          // 50 logins in flight at a time
          const batch = Math.min(50, target - held.length);
          held.push(...(await Promise.all(Array.from({ length: batch }, () => saslLogin(kafkaPort, token)))));
        }
        await new Promise((r) => setTimeout(r, 2000));
        rss[String(target)] = rssMb(gatewayPid);
        log(`  ${target} connections: gateway RSS ${rss[String(target)]} MB`);
      }
    } finally {
      for (const s of held) s.destroy();
    }
    const perConnKb = round(((rss['5000']! - rss['1']!) * 1024) / 4999);
    result.connections = { rssMb: rss, perConnectionKb: perConnKb };
    metrics['kafka.connections.rss_kb_per_connection'] = perConnKb;
    log(`  about ${perConnKb} KB per idle authenticated connection`);
  }

  await gateway.stop();
  await relay.stop();
  await registry?.stop();
  // flat names for bench:check (bench/budgets.json)
  return { ...result, metrics };
}

/** Resident memory of a process in MB (VmRSS: its pool worker threads included). */
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? round(Number(m[1]) / 1024) : NaN;
}

/** A Kafka request frame: size, header v1 (api key, version, correlation id, client id), body. */
function requestFrame(apiKey: number, version: number, correlationId: number, body: Buffer): Buffer {
  const clientId = Buffer.from('bench-idle');
  const head = Buffer.alloc(10);
  head.writeInt16BE(apiKey, 0);
  head.writeInt16BE(version, 2);
  head.writeInt32BE(correlationId, 4);
  head.writeInt16BE(clientId.length, 8);
  const frame = Buffer.concat([Buffer.alloc(4), head, clientId, body]);
  frame.writeInt32BE(frame.length - 4, 0);
  return frame;
}

/** One connection through SaslHandshake v1 (PLAIN) and SaslAuthenticate v1, left open and idle. */
function saslLogin(port: number, token: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let buffered = Buffer.alloc(0);
    let answers = 0;
    socket.on('error', reject);
    socket.on('connect', () => {
      const mechanism = Buffer.from('PLAIN');
      const handshake = Buffer.alloc(2 + mechanism.length);
      handshake.writeInt16BE(mechanism.length, 0);
      mechanism.copy(handshake, 2);
      const auth = Buffer.from(`\u0000ops\u0000${token}`);
      const authBody = Buffer.alloc(4 + auth.length);
      authBody.writeInt32BE(auth.length, 0);
      auth.copy(authBody, 4);
      socket.write(requestFrame(17, 1, 1, handshake));
      socket.write(requestFrame(36, 1, 2, authBody));
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 4 && buffered.length >= 4 + buffered.readInt32BE(0)) {
        const size = buffered.readInt32BE(0);
        const frame = buffered.subarray(4, 4 + size);
        buffered = buffered.subarray(4 + size);
        // after the correlation id: both answers start with an int16 error code
        const error = frame.readInt16BE(4);
        if (error !== 0) return reject(new Error(`SASL step ${answers + 1} failed with error ${error}`));
        if (++answers === 2) {
          socket.removeAllListeners('data');
          socket.off('error', reject);
          socket.on('error', () => {});
          resolve(socket);
        }
      }
    });
  });
}

/** The Avro schema of variedRecords' events (the schema phase). */
export const BENCH_EVENT_SCHEMA = {
  type: 'record', name: 'BenchEvent', namespace: 'bench',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'ts', type: 'long' },
    { name: 'customer', type: { type: 'record', name: 'Customer', fields: [{ name: 'name', type: 'string' }, { name: 'tier', type: 'string' }, { name: 'country', type: 'string' }] } },
    { name: 'card', type: 'string' },
    { name: 'amount', type: 'double' },
    { name: 'currency', type: 'string' },
    { name: 'merchant', type: 'string' },
    { name: 'items', type: { type: 'array', items: { type: 'record', name: 'Item', fields: [{ name: 'sku', type: 'string' }, { name: 'qty', type: 'int' }] } } },
    { name: 'note', type: 'string' },
  ],
};

/**
 * `count` records of `values` (cycled) with one Node producer (@platformatic/kafka), lz4,
 * acks=1, batches of 500 with four in flight: the same client for Avro and JSON values.
 */
async function nodeProduce(bootstrap: string, topic: string, values: Buffer[], count: number, sasl?: { mechanism: 'PLAIN'; username: string; password: string }): Promise<{ mbPerSec: number; recordsPerSec: number }> {
  const producer = new Producer({ clientId: 'bench-schema', bootstrapBrokers: [bootstrap], ...(sasl ? { sasl } : {}), acks: 1, compression: 'lz4', retries: 0 } as never);
  const BATCH = 500;
  let next = 0;
  let bytes = 0;
  const t0 = performance.now();
  try {
    const worker = async () => {
      while (next < count) {
        const from = next;
        next = Math.min(count, next + BATCH);
        const messages = [];
        for (let i = from; i < next; i++) {
          const value = values[i % values.length]!;
          bytes += value.length;
          messages.push({ topic, value });
        }
        await producer.send({ messages } as never);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
  } finally {
    await producer.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  return { mbPerSec: round(bytes / 1048576 / seconds), recordsPerSec: round(count / seconds) };
}

/** Reads `count` records of `topic` from the start with one Node consumer (@platformatic/kafka), no group commits. */
async function nodeConsume(bootstrap: string, topic: string, count: number, sasl?: { mechanism: 'PLAIN'; username: string; password: string }): Promise<{ mbPerSec: number; recordsPerSec: number }> {
  const consumer = new Consumer({ clientId: 'bench-protect', groupId: `bench-protect-${topic}-${Date.now()}`, bootstrapBrokers: [bootstrap], ...(sasl ? { sasl } : {}) } as never);
  let bytes = 0;
  let read = 0;
  const t0 = performance.now();
  try {
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false, maxWaitTime: 200, maxBytes: 4 * 1048576 } as never);
    for await (const m of stream as AsyncIterable<{ value: Buffer | null }>) {
      bytes += m.value?.length ?? 0;
      if (++read >= count) break;
    }
    await (stream as unknown as { close(): Promise<void> }).close();
  } finally {
    await consumer.close(true);
  }
  const seconds = (performance.now() - t0) / 1000;
  return { mbPerSec: round(bytes / 1048576 / seconds), recordsPerSec: round(count / seconds) };
}

/** ~`size`-byte JSON events with a card number and varied fields (seeded: the same every run). */
export function variedRecords(n: number, size: number): string[] {
  let seed = 42;
  const next = () => (seed = (seed * 48271) % 2147483647);
  // letters only, like words: a note full of digits would be a different (slower) scan
  const WORDS = Array.from({ length: 600 }, (_, i) => (i * 2654435761).toString(36).replace(/\d/g, (d) => 'qrstuvwxyz'[Number(d)]!).slice(0, 3 + (i % 7)));
  const pick = <T>(list: readonly T[]) => list[next() % list.length]!;
  const NAMES = ['Ada Lovelace', 'Alan Turing', 'Grace Hopper', 'Edsger Dijkstra', 'Barbara Liskov', 'Donald Knuth', 'Frances Allen', 'Ken Thompson'];
  return Array.from({ length: n }, (_, i) => {
    const event: Record<string, unknown> = {
      id: `${next().toString(16)}-${next().toString(16)}`,
      ts: 1_763_000_000_000 + next() % 86_400_000,
      customer: { name: pick(NAMES), tier: pick(['free', 'pro', 'enterprise']), country: pick(['DE', 'FR', 'US', 'BR', 'JP', 'IN']) },
      card: '4111 1111 1111 1111',
      amount: (next() % 100_000) / 100,
      currency: pick(['EUR', 'USD', 'JPY']),
      merchant: `m-${i % 97}`,
      items: Array.from({ length: 1 + (next() % 4) }, () => ({ sku: next().toString(36), qty: 1 + (next() % 5) })),
      note: '',
    };
    const base = JSON.stringify(event).length;
    const words: string[] = [];
    let len = 0;
    while (len < size - base) {
      const w = pick(WORDS);
      words.push(w);
      len += w.length + 1;
    }
    event.note = words.join(' ').slice(0, Math.max(0, size - base));
    return JSON.stringify(event);
  });
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
