import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Admin, Consumer, Producer, stringDeserializers, stringSerializers, type SASLOptions } from '@platformatic/kafka';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { frame, rawClient, rawExchange, watchAdvertisedAddresses } from './helpers/kafka-gateway.ts';
import type { Gateway } from '../src/gateway.ts';

// Integration: @platformatic/kafka -> streamgate Kafka listener -> real Kafka 4 broker,
// OAUTHBEARER tokens from the real OIDC provider.

const run = `${process.pid}-${Date.now() % 100000}`;
const PAY = `payments.kt-${run}`; // alice writes, bob reads
const SECRET = `secret.kt-${run}`; // nobody but ops
let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let bootstrap: string;
let watch: Awaited<ReturnType<typeof watchAdvertisedAddresses>>;

const oauth = async (who: string): Promise<SASLOptions> => ({ mechanism: 'OAUTHBEARER', token: await infra.idp.token(who) });

before(async () => {
  infra = await getInfra();
  await createTopics(infra.kafka, [PAY, SECRET], 2);
  watch = await watchAdvertisedAddresses();
  const made = testConfig(infra);
  spoolDir = made.spoolDir;
  gateway = await startGateway(made.config);
  bootstrap = `127.0.0.1:${gateway.addresses.kafka!.port}`;
});

after(() => watch?.stop());

async function consumeN(sasl: SASLOptions, groupId: string, topic: string, n: number, timeoutMs = 15_000): Promise<string[]> {
  const consumer = new Consumer({ clientId: `test-${groupId}`, groupId, bootstrapBrokers: [bootstrap], sasl, deserializers: stringDeserializers });
  const out: string[] = [];
  try {
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest', maxWaitTime: 200 });
    const timer = setTimeout(() => void stream.close(), timeoutMs);
    try {
      for await (const m of stream) {
        out.push(m.value as string);
        if (out.length >= n) break;
      }
    } finally {
      clearTimeout(timer);
    }
  } finally {
    await consumer.close(true);
  }
  return out;
}

test('alice produces (idempotent, every compression codec) and consumes through the gateway with OAUTHBEARER; all audited', async () => {
  const sasl = await oauth('alice');
  const sent: string[] = [];
  for (const compression of ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const) {
    const producer = new Producer({ clientId: `alice-${compression}`, bootstrapBrokers: [bootstrap], sasl, idempotent: true, compression, serializers: stringSerializers });
    try {
      const values = [0, 1].map((i) => `${compression}-${i}`);
      const res = await producer.send({ messages: values.map((value, i) => ({ topic: PAY, key: `k${i}`, value })) });
      assert.equal(res.offsets?.length ? true : true, true);
      sent.push(...values);
    } finally {
      await producer.close();
    }
  }
  const got = await consumeN(sasl, `alice-g-${run}`, PAY, sent.length);
  assert.deepEqual([...got].sort(), [...sent].sort());

  const direct = await readTopic(infra.kafka, PAY, sent.length);
  assert.deepEqual(direct.map((r) => r.value).sort(), [...sent].sort(), 'the broker has exactly what alice sent');

  const rows = readAudit(spoolDir);
  const produced = rows.filter((r) => r.subject === 'alice' && r.action === 'produce' && r.resource === PAY && r.decision === 'allow');
  assert.equal(produced.reduce((n, r) => n + r.record_count, 0), sent.length);
  for (const r of produced) {
    assert.match(r.batch_hash, /^[0-9a-f]{64}$/);
    assert.ok(r.bytes > 0);
    assert.ok(r.offsets.length > 0, 'the broker offsets are audited');
  }
  const consumed = rows.filter((r) => r.subject === 'alice' && r.action === 'consume' && r.resource === PAY && r.meta.api === 'Fetch');
  assert.equal(consumed.reduce((n, r) => n + r.record_count, 0), sent.length);
  assert.ok(consumed.some((r) => /^[0-9a-f]{64}$/.test(r.batch_hash)));
  assert.ok(rows.some((r) => r.subject === 'alice' && r.meta.api === 'SaslAuthenticate' && r.meta.mechanism === 'OAUTHBEARER'));
  assert.ok(rows.some((r) => r.resource_kind === 'group' && r.resource === `alice-g-${run}` && r.decision === 'allow'));
});

test('bob may read but not write: TOPIC_AUTHORIZATION_FAILED on produce, reads fine, secret topics are invisible, denials audited', async () => {
  const sasl = await oauth('bob');
  const producer = new Producer({ clientId: 'bob-p', bootstrapBrokers: [bootstrap], sasl, serializers: stringSerializers, retries: 0 });
  await assert.rejects(
    producer.send({ messages: [{ topic: PAY, value: 'bob was here' }] }),
    (err: Error & { errors?: Array<{ errors?: Array<{ apiId?: string }> }> }) => {
      assert.match(JSON.stringify(err.errors?.[0]?.errors?.map((e) => e.apiId) ?? err.message), /TOPIC_AUTHORIZATION_FAILED/);
      return true;
    },
  );
  await producer.close();

  const got = await consumeN(sasl, `bob-g-${run}`, PAY, 10);
  assert.equal(got.length, 10);
  assert.ok(!got.includes('bob was here'));
  const direct = await readTopic(infra.kafka, PAY, 11, 3000);
  assert.ok(!direct.some((r) => r.value === 'bob was here'), 'the denied record never reached the broker');

  const admin = new Admin({ clientId: 'bob-admin', bootstrapBrokers: [bootstrap], sasl });
  try {
    const topics = await admin.listTopics();
    assert.ok(topics.includes(PAY));
    assert.ok(!topics.includes(SECRET), 'a topic bob may not describe is absent from his Metadata');
    await assert.rejects(admin.createTopics({ topics: [`payments.bob-${run}`], partitions: 1, replicas: 1 }));
  } finally {
    await admin.close();
  }

  // a group outside his grants
  await assert.rejects(consumeN(sasl, `not-bobs-${run}`, PAY, 1, 5000), /authorization|Group/i);

  const rows = readAudit(spoolDir).filter((r) => r.subject === 'bob' && r.decision === 'deny');
  assert.ok(rows.some((r) => r.action === 'produce' && r.resource === PAY && r.rule === 'default-deny' && r.record_count === 1 && r.batch_hash.length === 64));
  assert.ok(rows.some((r) => r.action === 'admin' && r.resource === `payments.bob-${run}`));
  assert.ok(rows.some((r) => r.resource_kind === 'group' && r.resource === `not-bobs-${run}`));
  const admin2 = new Admin({ clientId: 'check', bootstrapBrokers: [infra.kafka] });
  try {
    assert.ok(!(await admin2.listTopics()).includes(`payments.bob-${run}`), 'the denied CreateTopics never reached the broker');
  } finally {
    await admin2.close();
  }
});

test('one Produce request for an allowed and a denied topic: the allowed part is forwarded, the denied part answered with TOPIC_AUTHORIZATION_FAILED', async () => {
  // a real record batch, as @platformatic/kafka wrote it, replayed in a crafted request
  const { subscribe, unsubscribe } = await import('node:diagnostics_channel');
  const { loadMessages } = await import('../src/protocols/kafka/messages.ts');
  const reg = await loadMessages();
  let batch: Uint8Array | undefined;
  const onRequest = (m: unknown) => {
    const f = (m as { frame: Buffer }).frame;
    if (f.readInt16BE(4) !== 0) return;
    const version = f.readInt16BE(6);
    const codec = reg.requests.get(0)!;
    const h = reg.requestHeader.decode(f, 4, codec.isFlexible(version) ? 2 : 1);
    const body = codec.decode(f, h.offset, version).value as { TopicData: Array<{ PartitionData: Array<{ Records: Uint8Array }> }> };
    batch = Buffer.from(body.TopicData[0]!.PartitionData[0]!.Records);
  };
  subscribe('streamgate:kafka:request', onRequest);
  const producer = new Producer({ clientId: 'alice-batch', bootstrapBrokers: [bootstrap], sasl: await oauth('alice'), serializers: stringSerializers });
  try {
    await producer.send({ messages: [{ topic: PAY, value: `mixed-${run}`, partition: 0 }] });
  } finally {
    unsubscribe('streamgate:kafka:request', onRequest);
    await producer.close();
  }
  assert.ok(batch);

  const token = await infra.idp.token('alice');
  const client = await rawClient(gateway.addresses.kafka!.port);
  try {
    assert.equal((await client.request(17, 1, { Mechanism: 'OAUTHBEARER' })).ErrorCode, 0);
    const auth = await client.request(36, 2, { AuthBytes: Buffer.from(`n,,\x01auth=Bearer ${token}\x01\x01`) });
    assert.equal(auth.ErrorCode, 0);
    const res = await client.request(0, 9, {
      TransactionalId: null,
      Acks: -1,
      TimeoutMs: 5000,
      TopicData: [
        { Name: PAY, PartitionData: [{ Index: 0, Records: batch }] },
        { Name: SECRET, PartitionData: [{ Index: 0, Records: batch }] },
      ],
    });
    const byTopic = new Map((res.Responses as Array<{ Name: string; PartitionResponses: Array<{ ErrorCode: number; ErrorMessage: string | null }> }>).map((t) => [t.Name, t.PartitionResponses[0]!]));
    assert.equal(byTopic.get(PAY)?.ErrorCode, 0);
    assert.equal(byTopic.get(SECRET)?.ErrorCode, 29);
    assert.match(byTopic.get(SECRET)?.ErrorMessage ?? '', /alice may not produce to topic/);
  } finally {
    client.close();
  }
  const direct = await readTopic(infra.kafka, PAY, 100, 3000);
  assert.equal(direct.filter((r) => r.value === `mixed-${run}`).length, 2, 'the allowed topic got the replayed batch');
  assert.equal((await readTopic(infra.kafka, SECRET, 1, 2000)).length, 0, 'the denied topic got nothing');
});

test('admin requests listing several resources are answered per resource, as the broker authorizer does: allowed ones done, refused ones get their error', async () => {
  // alice administers her own sandbox topics only (a grant added for this test)
  const made = testConfig(infra, (c) => {
    // right after the example's sandbox grant, so the other grants keep their indexes in audit rows
    const sandbox = c.policy.grants!.findIndex((g) => g.topics?.includes('sandbox.{sub}.*'));
    assert.ok(sandbox >= 0, 'the example has a sandbox grant');
    c.policy.grants!.splice(sandbox + 1, 0, { roles: ['payments-writer'], actions: ['admin', 'describe'], topics: ['sandbox.{sub}.*'] });
  });
  const gw = await startGateway(made.config);
  const mine = `sandbox.alice.split-${run}`;
  const theirs = `sandbox.bob.split-${run}`;
  const token = await infra.idp.token('alice');
  const client = await rawClient(gw.addresses.kafka!.port);
  try {
    assert.equal((await client.request(17, 1, { Mechanism: 'OAUTHBEARER' })).ErrorCode, 0);
    assert.equal((await client.request(36, 2, { AuthBytes: Buffer.from(`n,,\x01auth=Bearer ${token}\x01\x01`) })).ErrorCode, 0);
    const topic = (name: string) => ({ Name: name, NumPartitions: 1, ReplicationFactor: 1, Assignments: [], Configs: [] });
    const created = await client.request(19, 7, { Topics: [topic(theirs), topic(mine)], timeoutMs: 10_000, validateOnly: false });
    const byName = new Map((created.Topics as Array<{ Name: string; ErrorCode: number; ErrorMessage: string | null }>).map((t) => [t.Name, t]));
    assert.equal(byName.size, 2, 'one answer per requested topic');
    assert.equal(byName.get(mine)?.ErrorCode, 0, byName.get(mine)?.ErrorMessage ?? '');
    assert.equal(byName.get(theirs)?.ErrorCode, 29, 'TOPIC_AUTHORIZATION_FAILED');
    assert.match(byName.get(theirs)?.ErrorMessage ?? '', /alice may not admin/);

    const described = await client.request(32, 4, {
      Resources: [
        { ResourceType: 2, ResourceName: mine, ConfigurationKeys: ['cleanup.policy'] },
        { ResourceType: 2, ResourceName: theirs, ConfigurationKeys: ['cleanup.policy'] },
      ],
      IncludeSynonyms: false,
      IncludeDocumentation: false,
    });
    const results = new Map((described.Results as Array<{ ResourceName: string; ErrorCode: number; Configs: Array<{ Name: string; Value: string | null }> }>).map((r) => [r.ResourceName, r]));
    assert.equal(results.get(mine)?.ErrorCode, 0);
    assert.equal(results.get(mine)?.Configs.find((c) => c.Name === 'cleanup.policy')?.Value, 'delete', 'the broker answered for the allowed topic');
    assert.equal(results.get(theirs)?.ErrorCode, 29);
  } finally {
    client.close();
  }
  const admin = new Admin({ clientId: 'check-split', bootstrapBrokers: [infra.kafka] });
  try {
    const existing = await admin.listTopics();
    assert.ok(existing.includes(mine), 'the allowed topic was created');
    assert.ok(!existing.includes(theirs), 'the refused topic never reached the broker');
  } finally {
    await admin.close();
  }
  const rows = readAudit(made.spoolDir).filter((r) => r.subject === 'alice' && r.action === 'admin');
  assert.ok(rows.some((r) => r.resource === mine && r.decision === 'allow'));
  assert.ok(rows.some((r) => r.resource === theirs && r.decision === 'deny'));
});

test('Metadata auto-creates a topic only for an identity with admin on it', async () => {
  const login = async (who: string) => {
    const client = await rawClient(gateway.addresses.kafka!.port);
    await client.request(17, 1, { Mechanism: 'PLAIN' });
    const auth = await client.request(36, 2, { AuthBytes: Buffer.from(`\0${who}\0${await infra.idp.token(who)}`) });
    assert.equal(auth.ErrorCode, 0);
    return client;
  };
  const topics = async () => {
    const admin = new Admin({ clientId: 'check-auto', bootstrapBrokers: [infra.kafka] });
    try {
      return await admin.listTopics();
    } finally {
      await admin.close();
    }
  };
  const aliceTopic = `payments.auto-alice-${run}`;
  const opsTopic = `payments.auto-ops-${run}`;
  const alice = await login('alice');
  try {
    const res = await alice.request(3, 12, { Topics: [{ Name: aliceTopic, TopicId: new Uint8Array(16) }], AllowAutoTopicCreation: true, IncludeTopicAuthorizedOperations: false });
    assert.equal((res.Topics as Array<{ ErrorCode: number }>)[0]!.ErrorCode, 3, 'UNKNOWN_TOPIC_OR_PARTITION: not created');
  } finally {
    alice.close();
  }
  const ops = await login('ops');
  try {
    await ops.request(3, 12, { Topics: [{ Name: opsTopic, TopicId: new Uint8Array(16) }], AllowAutoTopicCreation: true, IncludeTopicAuthorizedOperations: false });
  } finally {
    ops.close();
  }
  await new Promise((r) => setTimeout(r, 500));
  const existing = await topics();
  assert.ok(!existing.includes(aliceTopic), 'alice (no admin) did not auto-create');
  assert.ok(existing.includes(opsTopic), 'ops (admin) did');
});

test('fixed broker ports survive a gateway restart: a client that kept a broker address gets straight in', async () => {
  const { createServer } = await import('node:net');
  const free = await new Promise<number>((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
  const nodePort = free; // the test broker is node 1: base + 1
  const made = testConfig(infra);
  made.config.listeners.kafka!.brokerPortBase = nodePort - 1;
  const ask = async () => {
    const client = await rawClient(nodePort);
    try {
      await client.request(17, 1, { Mechanism: 'PLAIN' });
      assert.equal((await client.request(36, 2, { AuthBytes: Buffer.from(`\0ops\0${await infra.idp.token('ops')}`) })).ErrorCode, 0);
      const md = await client.request(3, 12, { Topics: [{ Name: SECRET, TopicId: new Uint8Array(16) }], AllowAutoTopicCreation: false, IncludeTopicAuthorizedOperations: false });
      return md;
    } finally {
      client.close();
    }
  };
  const first = await startGateway(made.config);
  const md = await ask();
  assert.deepEqual((md.Brokers as Array<{ Port: number }>).map((b) => b.Port), [nodePort]);
  await first.close();
  const second = await startGateway(made.config);
  try {
    // no client has asked the new gateway anything yet: the broker port is already open
    const again = await ask();
    assert.equal((again.Topics as Array<{ ErrorCode: number }>)[0]!.ErrorCode, 0);
  } finally {
    await second.close();
  }
});

test('large fetch responses are cut through to the client byte for byte, and still counted and hashed in the audit', async () => {
  const { createHash, randomBytes } = await import('node:crypto');
  const topic = `analytics.big-${run}`;
  await createTopics(infra.kafka, [topic], 1);
  const values = Array.from({ length: 600 }, () => randomBytes(16 * 1024).toString('base64')); // ~13 MB
  const direct = new Producer({ clientId: 'big-direct', bootstrapBrokers: [infra.kafka], serializers: stringSerializers });
  try {
    for (let i = 0; i < values.length; i += 20) await direct.send({ messages: values.slice(i, i + 20).map((value) => ({ topic, value })) });
  } finally {
    await direct.close();
  }
  const got = await consumeN(await oauth('bob'), `bob-big-${run}`, topic, values.length, 30_000);
  const digest = (xs: string[]) => createHash('sha256').update(xs.join('\n')).digest('hex');
  assert.equal(got.length, values.length);
  assert.equal(digest(got), digest(values), 'every byte arrived unchanged and in order');
  await new Promise((r) => setTimeout(r, 200));
  const rows = readAudit(spoolDir).filter((r) => r.subject === 'bob' && r.action === 'consume' && r.resource === topic && r.meta.api === 'Fetch');
  assert.equal(rows.reduce((n, r) => n + r.record_count, 0), values.length);
  assert.ok(rows.reduce((n, r) => n + r.bytes, 0) > 12 * 1024 * 1024);
});

test('PLAIN with a JWT as password authenticates; bad credentials get SASL_AUTHENTICATION_FAILED and an audit row', async () => {
  const token = await infra.idp.token('alice');
  const admin = new Admin({ clientId: 'plain', bootstrapBrokers: [bootstrap], sasl: { mechanism: 'PLAIN', username: 'alice', password: token } });
  try {
    assert.ok((await admin.listTopics()).includes(PAY));
  } finally {
    await admin.close();
  }
  const bad = new Admin({ clientId: 'bad', bootstrapBrokers: [bootstrap], sasl: { mechanism: 'OAUTHBEARER', token: 'not.a.jwt' }, retries: 0 });
  try {
    await assert.rejects(bad.listTopics());
  } finally {
    await bad.close();
  }
  const rows = readAudit(spoolDir).filter((r) => r.meta.api === 'SaslAuthenticate');
  assert.ok(rows.some((r) => r.subject === 'alice' && r.meta.mechanism === 'PLAIN' && r.decision === 'allow'));
  assert.ok(rows.some((r) => r.decision === 'deny' && r.reason === 'unauthenticated' && /well-formed JWT/.test(r.message)));
});

test('a session whose token expires without re-authentication is closed and audited (KIP-368 lifetime reported)', async () => {
  const { subscribe, unsubscribe } = await import('node:diagnostics_channel');
  const lifetimes: bigint[] = [];
  const { loadMessages } = await import('../src/protocols/kafka/messages.ts');
  const { decodeResponse } = await import('../src/protocols/kafka/upstream.ts');
  const reg = await loadMessages();
  const onResponse = (m: unknown) => {
    const r = m as { apiKey: number; version: number; frame: Buffer };
    if (r.apiKey !== 36 || r.version < 1) return;
    const res = decodeResponse(reg, 36, r.version, r.frame);
    if (res.ErrorCode === 0) lifetimes.push(res.SessionLifetimeMs as bigint);
  };
  subscribe('streamgate:kafka:response', onResponse);
  const admin = new Admin({ clientId: 'short', bootstrapBrokers: [bootstrap], sasl: await oauth('shortlived'), retries: 0 });
  try {
    await admin.listTopics();
    await new Promise((r) => setTimeout(r, 2600)); // shortlived tokens live 2 s
  } finally {
    unsubscribe('streamgate:kafka:response', onResponse);
    await admin.close().catch(() => {});
  }
  assert.ok(lifetimes.length > 0 && lifetimes.every((l) => l > 0n && l <= 2000n), `session_lifetime_ms follows the token expiry: ${lifetimes.join(',')}`);
  // @platformatic/kafka re-authenticates (KIP-368) with the token it has until that expires
  const rows = readAudit(spoolDir).filter((r) => r.subject === 'shortlived' || r.meta.api === 'session-expiry');
  assert.ok(rows.filter((r) => r.meta.api === 'SaslAuthenticate' && r.decision === 'allow').length >= 2, 're-authentication on the same connection');
  const ended = readAudit(spoolDir).find(
    (r) => r.decision === 'deny' && ((r.meta.api === 'session-expiry' && r.subject === 'shortlived') || (r.meta.api === 'SaslAuthenticate' && /expired/.test(r.message))),
  );
  assert.ok(ended, 'the end of the session is audited');
});

test('garbage, oversized frames, unknown API keys, truncated requests and unauthenticated requests close only that connection, with an audit row', async () => {
  const port = gateway.addresses.kafka!.port;
  const header = (apiKey: number, version: number, extra: Buffer = Buffer.alloc(0)) => {
    const b = Buffer.alloc(10);
    b.writeInt16BE(apiKey, 0);
    b.writeInt16BE(version, 2);
    b.writeInt32BE(42, 4);
    b.writeInt16BE(-1, 8); // null client id
    return Buffer.concat([b, extra]);
  };
  const oversized = Buffer.alloc(4);
  oversized.writeInt32BE(200 * 1024 * 1024);
  const cases: Array<[string, Buffer, RegExp]> = [
    ['garbage', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), /exceeds the limit/],
    ['oversized', Buffer.concat([oversized, Buffer.alloc(100)]), /exceeds the limit/],
    ['unknown api key', frame(header(999, 0)), /API key 999/],
    ['truncated', frame(header(3, 12, Buffer.from([0x05]))), /malformed request/],
    ['tiny', frame(Buffer.from([0, 3])), /too small/],
  ];
  for (const [name, payload] of cases) {
    const { closed } = await rawExchange(port, payload);
    assert.ok(closed, `${name}: the connection is closed`);
  }
  // a well-formed Metadata request without SASL first
  // header tags, Topics: null (all), AllowAutoTopicCreation, IncludeTopicAuthorizedOperations, body tags
  const { closed } = await rawExchange(port, frame(header(3, 12, Buffer.from([0x00, 0x00, 0x01, 0x00, 0x00]))));
  assert.ok(closed, 'unauthenticated Metadata closes the connection');

  await new Promise((r) => setTimeout(r, 100));
  const rows = readAudit(spoolDir);
  for (const [name, , message] of cases) {
    assert.ok(rows.some((r) => r.protocol === 'kafka' && message.test(r.meta.violation ?? '')), `${name}: audited`);
  }
  assert.ok(rows.some((r) => r.reason === 'unauthenticated' && r.meta.api === 'Metadata'));

  // the gateway keeps serving everyone else
  const admin = new Admin({ clientId: 'after-garbage', bootstrapBrokers: [bootstrap], sasl: await oauth('ops') });
  try {
    assert.ok((await admin.listTopics()).includes(SECRET), 'ops may describe everything');
  } finally {
    await admin.close();
  }
});

test('no client ever saw a broker address', () => {
  const brokerPort = Number(infra.kafka.split(':')[1]);
  assert.ok(watch.seen.length > 0, 'addresses were handed out');
  for (const a of watch.seen) {
    assert.notEqual(a.port, brokerPort, `API ${a.api} leaked the broker port`);
    assert.equal(a.host, '127.0.0.1');
  }
});
