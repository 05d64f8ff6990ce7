// End-to-end check of the dev Kafka launcher: real broker, real Java tools, real Node client,
// and a restart on the same dataDir/port that must keep the records.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createServer, connect, type AddressInfo } from 'node:net';
import { Admin, Consumer, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka';
import { ensureKafkaJars, runKafkaTool, startKafka, type RunningKafka } from '../src/dev/kafka.ts';
import { freePort } from './helpers/infra.ts';

const TOPIC = 'launcher-test';
let dataDir = '';
let kafka: RunningKafka | undefined;

before(async () => {
  // The first run on a machine fetches ~55 MB from Maven Central; later runs hit the cache.
  await ensureKafkaJars();
  dataDir = await mkdtemp(join(tmpdir(), 'streamgate-kafka-test-'));
}, { timeout: 300_000 });

after(async () => {
  await kafka?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

async function consoleConsume(bootstrap: string, count: number): Promise<string[]> {
  const res = await runKafkaTool('org.apache.kafka.tools.consumer.ConsoleConsumer', [
    '--bootstrap-server', bootstrap,
    '--topic', TOPIC,
    '--from-beginning',
    '--max-messages', String(count),
    '--timeout-ms', '20000',
    '--formatter-property', 'print.key=true',
    '--formatter-property', 'key.separator=:',
    // KIP-848 protocol: GA in 4.x, and what streamgate has to proxy.
    '--command-property', 'group.protocol=consumer',
  ]);
  assert.equal(res.code, 0, res.stderr);
  return res.stdout.trim().split('\n').filter((l) => l.length > 0);
}

test('starts, serves Java and Node clients, and keeps data across a restart', { timeout: 120_000 }, async () => {
  kafka = await startKafka({ dataDir });
  assert.match(kafka.bootstrap, /^127\.0\.0\.1:\d+$/);
  const { port, bootstrap } = kafka;

  const created = await runKafkaTool('org.apache.kafka.tools.TopicCommand', [
    '--bootstrap-server', bootstrap, '--create', '--topic', TOPIC, '--partitions', '1', '--replication-factor', '1',
  ]);
  assert.equal(created.code, 0, created.stderr);

  const produced = await runKafkaTool(
    'org.apache.kafka.tools.ConsoleProducer',
    ['--bootstrap-server', bootstrap, '--topic', TOPIC, '--reader-property', 'parse.key=true', '--reader-property', 'key.separator=:'],
    { input: 'k1:hello\nk2:world\n' },
  );
  assert.equal(produced.code, 0, produced.stderr);

  assert.deepEqual(await consoleConsume(bootstrap, 2), ['k1:hello', 'k2:world']);

  // A Node client against the same broker.
  const producer = new Producer({ clientId: 'launcher-test', bootstrapBrokers: [bootstrap], serializers: stringSerializers });
  await producer.send({ messages: [{ topic: TOPIC, key: 'k3', value: 'from-node' }] });
  await producer.close();
  const consumer = new Consumer({
    groupId: 'launcher-test-node',
    clientId: 'launcher-test',
    bootstrapBrokers: [bootstrap],
    deserializers: stringDeserializers,
  });
  const stream = await consumer.consume({ topics: [TOPIC], mode: 'earliest', autocommit: false, maxWaitTime: 500 });
  const seen: string[] = [];
  for await (const msg of stream) {
    seen.push(`${msg.key}:${msg.value}`);
    if (seen.length === 3) break;
  }
  await stream.close();
  await consumer.close();
  assert.deepEqual(seen, ['k1:hello', 'k2:world', 'k3:from-node']);

  // A second broker on a taken port fails fast and says why.
  await assert.rejects(startKafka({ port }), /already in use/);

  await kafka.stop();
  kafka = undefined;

  // restarted with a second listener behind a relay (the bench's bare-hop baseline): clients
  // that come in through the relay are told to stay on it
  const relay = createServer((c) => {
    const b = connect({ host: '127.0.0.1', port: relayedPort });
    c.pipe(b).pipe(c);
    c.on('error', () => b.destroy());
    b.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  const relayPort = (relay.address() as AddressInfo).port;
  const relayedPort = await freePort();
  kafka = await startKafka({ dataDir, port, relayedListener: { port: relayedPort, advertisedPort: relayPort } });
  assert.equal(kafka.port, port);
  assert.deepEqual(await consoleConsume(kafka.bootstrap, 3), ['k1:hello', 'k2:world', 'k3:from-node']);
  const admin = new Admin({ clientId: 'relayed', bootstrapBrokers: [`127.0.0.1:${relayPort}`] });
  try {
    const viaRelay = [...(await admin.metadata({ topics: [] })).brokers.values()];
    assert.deepEqual(viaRelay.map((b) => b.port), [relayPort]);
    assert.deepEqual(await consoleConsume(`127.0.0.1:${relayPort}`, 3), ['k1:hello', 'k2:world', 'k3:from-node']);
  } finally {
    await admin.close();
    relay.close();
  }
});

