import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { Kafka, logLevel, type SASLOptions } from 'kafkajs';
import { request } from 'undici';
import { CreateStreamCommand, GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { bearerClient, startCapturedKinesis, waitActive, withKinesis } from './helpers/kinesis.ts';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type RunningRegistry } from '../src/dev/registry.ts';
import { createTopics, getInfra, readAudit, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { watchAdvertisedAddresses } from './helpers/kafka-gateway.ts';
import type { Gateway } from '../src/gateway.ts';

// Avro records through the Kafka listener with a real schema registry (Apicurio, Confluent API)
// and a real serializer (@kafkajs/confluent-schema-registry over kafkajs, unchanged): masked
// before the broker and still decodable with the same schema id, read per role (an analyst
// sees e-mails tokenized, a fraud analyst as stored), validation refusals per record, and the
// registry going away.

const run = `${process.pid}-${Date.now() % 100000}`;
const TOPIC = `customers.avro-${run}`;
/** values must use a schema of the topic's own subject */
const STRICT = `customers.avro-${run}-strict`;
/** a Kinesis stream with the same entry */
const STREAM = `customers.avro-${run}-kin`;
/** written over the HTTP API */
const HTTP_TOPIC = `customers.avro-${run}-http`;
/** Protobuf and JSON Schema values on one topic */
const MULTI = `customers.avro-${run}-multi`;
let infra: Infra;
let registry: RunningRegistry;
let schemas: SchemaRegistry;
let gateway: Gateway;
let spoolDir: string;
let watch: Awaited<ReturnType<typeof watchAdvertisedAddresses>>;

const customerSchema = (name: string) =>
  JSON.stringify({
    type: 'record', name, namespace: 'shop',
    fields: [
      { name: 'id', type: 'long' },
      { name: 'email', type: 'string' },
      { name: 'card', type: 'string' },
      { name: 'phone', type: ['null', 'string'], default: null, 'confluent:tags': ['PII'] },
      {
        name: 'home', type: {
          type: 'record', name: `${name}Address`,
          fields: [
            { name: 'street', type: 'string', 'confluent:tags': ['PII'] },
            { name: 'city', type: 'string' },
            { name: 'geo', type: { type: 'record', name: `${name}Geo`, fields: [{ name: 'label', type: 'string', 'confluent:tags': ['PII'] }, { name: 'zone', type: 'string' }] } },
          ],
        },
      },
    ],
  });

const customer = (i: number) => ({
  id: 1000 + i,
  email: `ann${i}@example.com`,
  card: '4111 1111 1111 1111',
  phone: '+1 202 555 0100',
  home: { street: `${i} Main St`, city: 'Springfield', geo: { label: 'home', zone: 'EST' } },
});

const client = (who: string) =>
  new Kafka({
    clientId: `schema-${who}`,
    brokers: [`127.0.0.1:${gateway.addresses.kafka!.port}`],
    logLevel: logLevel.NOTHING,
    retry: { retries: 1, initialRetryTime: 100 },
    sasl: { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: await infra.idp.token(who) }) } as SASLOptions,
  });

/** The broker's records, read past the gateway. */
async function stored(count: number, topic = TOPIC): Promise<Buffer[]> {
  const kafka = new Kafka({ clientId: 'direct', brokers: [infra.kafka], logLevel: logLevel.NOTHING });
  return consume(kafka, `direct-${run}-${Math.random()}`, count, topic);
}

async function consume(kafka: Kafka, groupId: string, count: number, topic = TOPIC): Promise<Buffer[]> {
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen: Buffer[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${seen.length} of ${count}`)), 30_000);
      consumer
        .run({
          eachMessage: async ({ message }) => {
            seen.push(message.value!);
            if (seen.length >= count) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return seen;
}

before(async () => {
  [infra, registry] = await Promise.all([getInfra(), startRegistry()]);
  // the serializer's ajv, told the data-contract keyword is an annotation (as Confluent's own client does)
  schemas = new SchemaRegistry({ host: registry.ccompat }, { [SchemaType.JSON]: { strict: false } } as never);
  await createTopics(infra.kafka, [TOPIC, MULTI, HTTP_TOPIC, STRICT], 1);
  watch = await watchAdvertisedAddresses();
  const kinesis = await startCapturedKinesis();
  const made = testConfig(infra, (c) => {
    withKinesis(c, kinesis.endpoint);
    c.schemas = { registry: { url: registry.ccompat, retries: 0, timeoutMs: 1500 } };
    c.policy.roles!['fraud-analyst'] = { when: { groups: ['platform-admins'] } };
    c.policy.grants!.push({ roles: ['payments-writer'], actions: ['produce', 'describe'], topics: ['customers.avro-*'] });
    c.policy.grants!.push({ roles: ['analyst'], actions: ['consume', 'describe'], topics: ['customers.avro-*'], groups: ['schema-*'] } as never);
    c.inspection!.topics!.unshift({
      topics: ['customers.avro-*-strict'],
      schema: { required: true, subjects: ['{topic}-value'] },
      produce: ['pci.card-number', 'pii.tagged'],
    }, {
      topics: ['customers.avro-*'],
      schema: { required: true },
      produce: ['pci.card-number', 'pii.tagged'],
      consume: [{ roles: ['fraud-analyst'], rules: [] }, { roles: ['analyst'], rules: ['pii.email'] }],
    });
  });
  spoolDir = made.spoolDir;
  gateway = await startGateway(made.config);
});

after(async () => {
  watch?.stop();
  await registry?.stop();
});

test('Avro: masked and tagged fields rewritten before the broker, same schema id, decodable by the unchanged deserializer; read per role', async () => {
  const { id } = await schemas.register({ type: SchemaType.AVRO, schema: customerSchema('Customer') }, { subject: `${TOPIC}-value` });
  const producer = client('alice').producer();
  await producer.connect();
  await producer.send({ topic: TOPIC, messages: await Promise.all([0, 1, 2].map(async (i) => ({ key: `c${i}`, value: await schemas.encode(id, customer(i)) }))) });
  await producer.disconnect();

  const raw = await stored(3);
  for (const value of raw) {
    assert.equal(value.readInt32BE(1), id, 'the stored value names the same schema');
    const c = (await schemas.decode(value)) as ReturnType<typeof customer>;
    assert.equal(c.card, '**** **** **** 1111');
    assert.equal(c.phone, '[pii]');
    assert.equal(c.home.street, '[pii]', 'tagged, one level down');
    assert.equal(c.home.geo.label, '[pii]', 'tagged, two levels down');
    assert.equal(c.home.city, 'Springfield', 'untagged fields stay');
    assert.equal(c.home.geo.zone, 'EST');
    assert.match(c.email, /^ann\d@example\.com$/, 'e-mails are stored as written');
  }

  const analyst = await consume(client('bob'), `schema-bob-${run}`, 3);
  const fraud = await consume(client('ops'), `schema-ops-${run}`, 3);
  for (const value of analyst) {
    const c = (await schemas.decode(value)) as ReturnType<typeof customer>;
    assert.match(c.email, /^tok_v1_[A-Za-z0-9_-]{22}$/, 'an analyst reads e-mails tokenized');
    assert.equal(c.card, '**** **** **** 1111');
  }
  const emails = await Promise.all(fraud.map(async (v) => ((await schemas.decode(v)) as ReturnType<typeof customer>).email));
  assert.deepEqual(emails.sort(), ['ann0@example.com', 'ann1@example.com', 'ann2@example.com'], 'a fraud analyst reads them as stored');

  const rows = readAudit(spoolDir).filter((r) => r.resource === TOPIC && r.action === 'produce' && r.decision === 'allow');
  assert.ok(rows.some((r) => r.masking['pci.card-number'] === 3 && r.masking['pii.tagged'] === 9), JSON.stringify(rows.map((r) => r.masking)));
});

test('Protobuf (nested message, repeated field, oneof, tagged field) and JSON Schema values: masked before the broker, same framing', async () => {
  const proto = `syntax = "proto3";
package shop;
import "confluent/meta.proto";
message Payment {
  string card = 1;
  Holder holder = 2;
  repeated string notes = 3;
  oneof via { string iban = 4; string wallet = 5; }
  string email = 6;
  message Holder { string name = 1 [(confluent.field_meta) = { tags: ["PII"] }]; string city = 2; }
}
`;
  const { id: protoId } = await schemas.register({ type: SchemaType.PROTOBUF, schema: proto }, { subject: `${MULTI}-payment` });
  const protobuf = (await import('protobufjs')).default;
  const Payment = protobuf.parse(proto.replace('import "confluent/meta.proto";\n', ''), { keepCase: true }).root.lookupType('shop.Payment');
  const body = Payment.encode(Payment.fromObject({ card: '4111 1111 1111 1111', holder: { name: 'Ann', city: 'Springfield' }, notes: ['ok', 'card 5555555555554444'], wallet: 'w-4111111111111111', email: 'pb@example.com' })).finish();
  // Confluent's Protobuf framing: magic, id, then the message indexes ([0]: the single byte 0)
  const head = Buffer.alloc(6);
  head.writeInt32BE(protoId, 1);
  const protoValue = Buffer.concat([head, body]);

  const jsonSchema = JSON.stringify({ type: 'object', properties: { card: { type: 'string' }, name: { type: 'string', 'confluent:tags': ['PII'] }, n: { type: 'integer' }, email: { type: 'string' } }, required: ['card', 'n'] });
  const { id: jsonId } = await schemas.register({ type: SchemaType.JSON, schema: jsonSchema }, { subject: `${MULTI}-order` });
  const jsonValue = await schemas.encode(jsonId, { card: '4111 1111 1111 1111', name: 'Ann', n: 3, email: 'js@example.com' });

  const producer = client('alice').producer();
  await producer.connect();
  await producer.send({ topic: MULTI, messages: [{ value: protoValue }, { value: jsonValue }] });
  await producer.disconnect();

  const [p, j] = await stored(2, MULTI);
  assert.deepEqual([...p!.subarray(0, 6)], [...head], 'the same id and message index');
  const got = Payment.toObject(Payment.decode(p!.subarray(6)), { oneofs: true }) as Record<string, any>;
  assert.equal(got.card, '**** **** **** 1111');
  assert.deepEqual(got.holder, { name: '[pii]', city: 'Springfield' });
  assert.deepEqual(got.notes, ['ok', 'card ************4444']);
  assert.equal(got.wallet, 'w-************1111');
  assert.deepEqual(await schemas.decode(j!), { card: '**** **** **** 1111', name: '[pii]', n: 3, email: 'js@example.com' }, 'the unchanged JSON Schema deserializer reads it');
  assert.equal(got.email, 'pb@example.com', 'stored as written');

  // read per role: an analyst gets e-mails tokenized in both formats, a fraud analyst as stored
  const [bp, bj] = await consume(client('bob'), `schema-bob-multi-${run}`, 2, MULTI);
  assert.match((Payment.toObject(Payment.decode(bp!.subarray(6))) as { email: string }).email, /^tok_v1_/);
  assert.match(((await schemas.decode(bj!)) as { email: string }).email, /^tok_v1_/);
  const [op, oj] = await consume(client('ops'), `schema-ops-multi-${run}`, 2, MULTI);
  assert.equal((Payment.toObject(Payment.decode(op!.subarray(6))) as { email: string }).email, 'pb@example.com');
  assert.equal(((await schemas.decode(oj!)) as { email: string }).email, 'js@example.com');
});

test('a topic that requires registered schemas refuses plain JSON and unknown schema ids per record, audited, nothing forwarded', async () => {
  const producer = client('alice').producer();
  await producer.connect();
  try {
    await assert.rejects(producer.send({ topic: TOPIC, acks: -1, messages: [{ value: '{"card":"4111111111111111"}' }] }), (err: Error & { type?: string; cause?: { type?: string } }) => {
      const type = err.type ?? err.cause?.type;
      assert.equal(type, 'INVALID_RECORD', `${err.name}: ${err.message} ${type}`);
      return true;
    });
    const unknown = Buffer.concat([Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0]), Buffer.from('avro bytes')]);
    await assert.rejects(producer.send({ topic: TOPIC, acks: -1, messages: [{ value: unknown }] }));
  } finally {
    await producer.disconnect();
  }
  const refused = readAudit(spoolDir).filter((r) => r.resource === TOPIC && r.action === 'produce' && r.decision !== 'allow');
  const rules = refused.map((r) => r.rule);
  assert.ok(rules.includes('schema.unframed'), rules.join(','));
  assert.ok(rules.includes('schema.unknown'), rules.join(','));
});

test('HTTP: REST Proxy v3 produce with schema_id, subject + version and the topic name strategy is serialized by the gateway, masked, and refused with 422 when the data does not fit', async () => {
  const { id } = await schemas.register({ type: SchemaType.AVRO, schema: customerSchema('Customer') }, { subject: `${HTTP_TOPIC}-value` });
  const post = async (who: string, value: unknown) => {
    const res = await request(`http://127.0.0.1:${gateway.addresses.http!.port}/v3/clusters/local/topics/${HTTP_TOPIC}/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${await infra.idp.token(who)}` },
      body: JSON.stringify({ value }),
    });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, any> };
  };
  // Avro's JSON encoding: a union value names its branch
  const data = (i: number) => ({ ...customer(i), phone: { string: '+1 202 555 0100' } });
  for (const [i, value] of [{ schema_id: id }, { subject: `${HTTP_TOPIC}-value`, schema_version: 1 }, { subject_name_strategy: 'TOPIC_NAME' }].entries()) {
    const r = await post('alice', { ...value, data: data(i) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.value.type, 'AVRO');
  }
  const raw = await stored(3, HTTP_TOPIC);
  for (const v of raw) {
    assert.equal(v.readInt32BE(1), id);
    const c = (await schemas.decode(v)) as ReturnType<typeof customer>;
    assert.equal(c.card, '**** **** **** 1111');
    assert.equal(c.phone, '[pii]');
  }
  // bytes a registry serializer framed, sent as BINARY: decoded and masked the same way
  const framed = await schemas.encode(id, customer(5));
  const binary = await post('alice', { type: 'BINARY', data: framed.toString('base64') });
  assert.equal(binary.status, 200, JSON.stringify(binary.body));
  const [fourth] = (await stored(4, HTTP_TOPIC)).slice(3);
  assert.equal(((await schemas.decode(fourth!)) as ReturnType<typeof customer>).card, '**** **** **** 1111');
  const unfit = await post('alice', { schema_id: id, data: { id: 'not a long' } });
  assert.equal(unfit.status, 422, JSON.stringify(unfit.body));
  assert.equal(unfit.body.rule, 'schema.unfit');
  const unknown = await post('alice', { schema_id: 987654, data: {} });
  assert.equal(unknown.status, 422);
  assert.equal(unknown.body.rule, 'schema.unknown');
  const inline = await post('alice', { type: 'AVRO', schema: '"string"', data: 'x' });
  assert.equal(inline.status, 400);
  assert.match(inline.body.message, /does not register schemas/);
  // someone who may not write the topic learns nothing about the registry
  const outsider = await post('mallory', { schema_id: 987654, data: {} });
  assert.equal(outsider.status, 403);
});

test('a topic that names its subjects refuses values of a schema registered elsewhere (one without the PII tags, say), audited', async () => {
  const { id: own } = await schemas.register({ type: SchemaType.AVRO, schema: customerSchema('Customer') }, { subject: `${STRICT}-value` });
  // the same fields, no tags: under another subject it would dodge the tag rule
  const untagged = customerSchema('Untagged').replaceAll(',"confluent:tags":["PII"]', '');
  assert.ok(!untagged.includes('confluent:tags'));
  const { id: other } = await schemas.register({ type: SchemaType.AVRO, schema: untagged }, { subject: `${STRICT}-sneaky` });
  const producer = client('alice').producer();
  await producer.connect();
  try {
    await producer.send({ topic: STRICT, acks: -1, messages: [{ value: await schemas.encode(own, customer(1)) }] });
    await assert.rejects(producer.send({ topic: STRICT, acks: -1, messages: [{ value: await schemas.encode(other, customer(2)) }] }), (err: Error & { type?: string; cause?: { type?: string } }) => {
      assert.equal(err.type ?? err.cause?.type, 'INVALID_RECORD', err.message);
      return true;
    });
  } finally {
    await producer.disconnect();
  }
  const [stored1] = await stored(1, STRICT);
  assert.equal(((await schemas.decode(stored1!)) as ReturnType<typeof customer>).phone, '[pii]');
  const row = readAudit(spoolDir).find((r) => r.resource === STRICT && r.rule === 'schema.subject');
  assert.ok(row, 'the refusal is audited');
  assert.match(row.message, new RegExp(`schema ${other} is not registered under ${STRICT}-value`));
});

test('Kinesis: PutRecords Data framed by a registry serializer is masked before the stream, a plain value fails alone, GetRecords per role', async () => {
  const { id } = await schemas.register({ type: SchemaType.AVRO, schema: customerSchema('Customer') }, { subject: `${STREAM}-value` });
  const endpoint = `http://127.0.0.1:${gateway.addresses.kinesis!.port}`;
  const admin = bearerClient(endpoint, await infra.idp.token('ops'));
  await admin.send(new CreateStreamCommand({ StreamName: STREAM, ShardCount: 1 }));
  await waitActive(admin, STREAM);
  const writer = bearerClient(endpoint, await infra.idp.token('alice'));
  const put = await writer.send(new PutRecordsCommand({
    StreamName: STREAM,
    Records: [
      { PartitionKey: 'a', Data: await schemas.encode(id, customer(1)) },
      { PartitionKey: 'b', Data: Buffer.from('{"card":"4111111111111111"}') },
    ],
  }));
  assert.equal(put.FailedRecordCount, 1);
  assert.equal(put.Records![1]!.ErrorCode, 'InvalidArgumentException');
  assert.match(put.Records![1]!.ErrorMessage ?? '', /requires values written with a registered schema/);
  const read = async (who: string) => {
    const client = bearerClient(endpoint, await infra.idp.token(who));
    const shards = await client.send(new ListShardsCommand({ StreamName: STREAM }));
    const it = await client.send(new GetShardIteratorCommand({ StreamName: STREAM, ShardId: shards.Shards![0]!.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }));
    const got = await client.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator! }));
    return Promise.all(got.Records!.map(async (r) => (await schemas.decode(Buffer.from(r.Data!))) as ReturnType<typeof customer>));
  };
  const [asStored] = await read('ops');
  assert.equal(asStored!.card, '**** **** **** 1111');
  assert.equal(asStored!.home.street, '[pii]');
  assert.equal(asStored!.email, 'ann1@example.com');
  const [asAnalyst] = await read('bob');
  assert.match(asAnalyst!.email, /^tok_v1_/);
});

test('a catalog schema and a rule that would hash one of its number fields: the gateway refuses to start, naming both', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-catalog-'));
  writeFileSync(join(dir, 'customer.avsc'), customerSchema('Customer'));
  const made = testConfig(infra, (c) => {
    c.schemas = { catalog: { dir, schemas: [{ id: 1, subject: 'customers.avro-cat-value', file: 'customer.avsc' }] } };
    c.inspection!.rules!.push({ id: 'ids.hash', fields: ['$.id'], action: { type: 'hash' } });
    c.inspection!.topics!.unshift({ topics: ['customers.avro-cat'], schema: {}, produce: ['ids.hash'] });
  });
  await assert.rejects(startGateway(made.config), /topic customers\.avro-cat \(catalog subject customers\.avro-cat-value\): rule "ids\.hash" would hash \$\.id, a number in schema 1/);
});

test('registry down: records of a schema already seen keep flowing, a new schema id is refused fail-closed, readiness says so', async () => {
  const { id: known } = await schemas.register({ type: SchemaType.AVRO, schema: customerSchema('Customer') }, { subject: `${TOPIC}-value` });
  const { id: fresh } = await schemas.register({ type: SchemaType.AVRO, schema: customerSchema('Customer2') }, { subject: `${TOPIC}-other` });
  const knownValue = await schemas.encode(known, customer(7));
  const freshValue = await schemas.encode(fresh, customer(8));
  await registry.stop();
  const producer = client('alice').producer();
  await producer.connect();
  try {
    await producer.send({ topic: TOPIC, acks: -1, messages: [{ value: knownValue }] });
    await assert.rejects(producer.send({ topic: TOPIC, acks: -1, messages: [{ value: freshValue }] }));
  } finally {
    await producer.disconnect();
  }
  const row = readAudit(spoolDir).find((r) => r.resource === TOPIC && r.rule === 'schema.unavailable');
  assert.ok(row, 'the refusal is audited with the reason');
  const ready = await gateway.readiness();
  assert.equal(ready.schemas?.ok, false);
  // reported, but the instance stays in the load balancer: other topics still flow
  const readyz = await request(`http://127.0.0.1:${gateway.addresses.admin!.port}/readyz`);
  const body = (await readyz.body.json()) as { status: string };
  assert.equal(readyz.statusCode, 200);
  assert.equal(body.status, 'degraded');
  // nothing refused reached the broker: the three of the first test and the one just accepted
  const admin = new Kafka({ clientId: 'direct-admin', brokers: [infra.kafka], logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const [offsets] = await admin.fetchTopicOffsets(TOPIC);
    assert.equal(offsets!.high, '4');
  } finally {
    await admin.disconnect();
  }
});
