import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CompressionTypes, Kafka, logLevel, type SASLOptions } from 'kafkajs';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { watchAdvertisedAddresses } from './helpers/kafka-gateway.ts';
import type { Gateway } from '../src/gateway.ts';

// kafkajs through the gateway: OAUTHBEARER, idempotent and transactional producers, a
// read_committed consumer group, and the transactional-id authorization.

const run = `${process.pid}-${Date.now() % 100000}`;
const TOPIC = `payments.kafkajs-${run}`;
let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let watch: Awaited<ReturnType<typeof watchAdvertisedAddresses>>;

const client = (who: string) =>
  new Kafka({
    clientId: `kafkajs-${who}`,
    brokers: [`127.0.0.1:${gateway.addresses.kafka!.port}`],
    logLevel: logLevel.NOTHING,
    retry: { retries: 2, initialRetryTime: 100 },
    sasl: { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: await infra.idp.token(who) }) } as SASLOptions,
  });

before(async () => {
  infra = await getInfra();
  await createTopics(infra.kafka, [TOPIC], 2);
  watch = await watchAdvertisedAddresses();
  const made = testConfig(infra);
  spoolDir = made.spoolDir;
  gateway = await startGateway(made.config);
});

after(() => watch?.stop());

test('kafkajs: idempotent gzip produce, committed and aborted transactions, a read_committed consumer group', async () => {
  const kafka = client('alice');
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await producer.send({ topic: TOPIC, compression: CompressionTypes.GZIP, messages: [{ key: 'a', value: 'plain-1' }, { key: 'b', value: 'plain-2' }] });
  await producer.disconnect();

  const txProducer = kafka.producer({ transactionalId: `payments-alice-${run}`, idempotent: true, maxInFlightRequests: 1 });
  await txProducer.connect();
  const committed = await txProducer.transaction();
  await committed.send({ topic: TOPIC, messages: [{ key: 'c', value: 'committed-1' }, { key: 'd', value: 'committed-2' }] });
  await committed.commit();
  const aborted = await txProducer.transaction();
  await aborted.send({ topic: TOPIC, messages: [{ key: 'e', value: 'aborted-1' }] });
  await aborted.abort();
  await txProducer.disconnect();

  const consumer = kafka.consumer({ groupId: `alice-kafkajs-${run}`, readUncommitted: false, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic: TOPIC, fromBeginning: true });
  const seen: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out; saw ${JSON.stringify(seen)}`)), 30_000);
    consumer
      .run({
        eachMessage: async ({ message }) => {
          seen.push(message.value!.toString());
          if (seen.length >= 4) {
            clearTimeout(timer);
            resolve();
          }
        },
      })
      .catch(reject);
  });
  await new Promise((r) => setTimeout(r, 500)); // an aborted record would have arrived by now
  await consumer.disconnect();
  assert.deepEqual([...seen].sort(), ['committed-1', 'committed-2', 'plain-1', 'plain-2']);

  const rows = readAudit(spoolDir);
  for (const api of ['InitProducerId', 'AddPartitionsToTxn', 'EndTxn']) {
    assert.ok(rows.some((r) => r.meta.api === api && r.resource_kind === 'transactional-id' && r.resource === `payments-alice-${run}` && r.decision === 'allow'), api);
  }
});

test('kafkajs: a transactional id outside the grants gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a read-only identity cannot produce', async () => {
  const tx = client('alice').producer({ transactionalId: `someone-else-${run}`, idempotent: true, maxInFlightRequests: 1, retry: { retries: 1, initialRetryTime: 50 } });
  await tx.connect(); // kafkajs asks for the producer id (InitProducerId) with the first transaction
  // the gateway answers FindCoordinator(transaction) with TRANSACTIONAL_ID_AUTHORIZATION_FAILED; kafkajs reports it as "coordinator not found"
  await assert.rejects(tx.transaction(), /Transactional Id authorization failed|TRANSACTIONAL_ID_AUTHORIZATION_FAILED|coordinator/i);
  await tx.disconnect();

  const bob = client('bob').producer({ retry: { retries: 0 } });
  await bob.connect();
  await assert.rejects(bob.send({ topic: TOPIC, messages: [{ value: 'kafkajs-bob' }] }), /not authorized|authorization/i);
  await bob.disconnect();
  const direct = await readTopic(infra.kafka, TOPIC, 100, 2000);
  assert.ok(!direct.some((r) => r.value === 'kafkajs-bob'));

  const rows = readAudit(spoolDir).filter((r) => r.decision === 'deny');
  assert.ok(rows.some((r) => r.resource_kind === 'transactional-id' && r.resource === `someone-else-${run}`));
  assert.ok(rows.some((r) => r.subject === 'bob' && r.action === 'produce' && r.resource === TOPIC));
  const brokerPort = Number(infra.kafka.split(':')[1]);
  assert.ok(watch.seen.length > 0);
  for (const a of watch.seen) assert.notEqual(a.port, brokerPort);
});
