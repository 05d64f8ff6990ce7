import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runKafkaTool } from '../src/dev/kafka.ts';
import { Reader, Writer, MessageCodec, type MessageSpec } from '../src/protocols/kafka/codec.ts';
import { loadMessages, type MessageRegistry } from '../src/protocols/kafka/messages.ts';
import { summarize } from '../src/protocols/kafka/batches.ts';
import { parseOauthBearer, parsePlain } from '../src/protocols/kafka/sasl.ts';
import { createTopics, getInfra, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';

// The schema-driven codec against Kafka's own definitions and against bytes written by
// the real Java client and the real broker.

let reg: MessageRegistry;
let infra: Infra;

before(async () => {
  reg = await loadMessages();
  infra = await getInfra();
});

test('every version of every request and response round-trips through the codec', () => {
  let checked = 0;
  for (const codecs of [reg.requests, reg.responses]) {
    for (const [, codec] of codecs) {
      const [min, max] = codec.validVersions;
      for (let v = min; v <= max; v++) {
        const bytes = codec.encode(codec.defaults(v), v).finish();
        const { value, offset } = codec.decode(bytes, 0, v);
        assert.equal(offset, bytes.length, `${codec.spec.name} v${v}: consumed everything`);
        assert.deepEqual(codec.encode(value, v).finish(), bytes, `${codec.spec.name} v${v}`);
        checked++;
      }
    }
  }
  assert.ok(checked > 500, `checked ${checked} message versions`);
});

test('flexible versions: compact strings, nullable fields, tagged fields (known and unknown) survive a round trip', () => {
  const spec: MessageSpec = {
    name: 'TestMessage',
    type: 'request',
    apiKey: 9999,
    validVersions: '0-1',
    flexibleVersions: '1+',
    fields: [
      { name: 'Name', type: 'string', versions: '0+', nullableVersions: '0+' },
      { name: 'Data', type: 'bytes', versions: '0+' },
      { name: 'Items', type: '[]Item', versions: '0+', fields: [{ name: 'Id', type: 'int64', versions: '0+' }, { name: 'Flag', type: 'bool', versions: '0+' }] },
      { name: 'Extra', type: 'string', versions: '1+', taggedVersions: '1+', tag: 3, default: 'none' },
    ],
  };
  const codec = new MessageCodec(spec);
  const value = { Name: 'héllo', Data: Buffer.from([1, 2, 3]), Items: [{ Id: 2n ** 40n, Flag: true }], Extra: 'tagged' };
  for (const v of [0, 1]) {
    const bytes = codec.encode(value, v).finish();
    const back = codec.decode(bytes, 0, v).value;
    assert.equal(back.Name, 'héllo');
    assert.deepEqual(Buffer.from(back.Data as Uint8Array), Buffer.from([1, 2, 3]));
    assert.equal((back.Items as Array<{ Id: bigint }>)[0]!.Id, 2n ** 40n);
    if (v === 1) assert.equal(back.Extra, 'tagged');
  }
  // an unknown tag (from a newer peer) is kept and written back unchanged
  const w = new Writer();
  codec.encode({ Name: null, Data: new Uint8Array(0), Items: [] }, 1, w);
  const bytes = w.finish();
  const withUnknown = Buffer.concat([bytes.subarray(0, bytes.length - 1), Buffer.from([1, 7, 2, 0xaa, 0xbb])]);
  const decoded = codec.decode(withUnknown, 0, 1).value;
  assert.equal(decoded.Name, null);
  assert.deepEqual(codec.encode(decoded, 1).finish(), withUnknown);
  // truncated and absurd inputs are errors, not crashes
  assert.throws(() => codec.decode(withUnknown.subarray(0, 3), 0, 1));
  assert.throws(() => new Reader(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])).uvarint());
});

test('SASL client messages parse per RFC 7628 and RFC 4616', () => {
  assert.equal(parseOauthBearer(Buffer.from('n,,\x01auth=Bearer abc.def.ghi\x01\x01')).token, 'abc.def.ghi');
  assert.deepEqual(parseOauthBearer(Buffer.from('n,a=alice,\x01host=x\x01auth=Bearer t\x01\x01')), { token: 't', authzid: 'alice' });
  assert.throws(() => parseOauthBearer(Buffer.from('n,,\x01auth=Basic xyz\x01\x01')));
  assert.throws(() => parseOauthBearer(Buffer.from('garbage')));
  assert.deepEqual(parsePlain(Buffer.from('\0alice\0tok')), { username: 'alice', token: 'tok' });
  assert.throws(() => parsePlain(Buffer.from('alice')));
});

test('frames written by the Java client and by the broker decode and re-encode byte for byte', async () => {
  const topic = `codec.java-${process.pid}`;
  await createTopics(infra.kafka, [topic], 1);
  const { config } = testConfig(infra);
  const gateway = await startGateway(config);
  const requests: Buffer[] = [];
  const responses: Array<{ apiKey: number; version: number; frame: Buffer }> = [];
  const onRequest = (m: unknown) => requests.push(Buffer.from((m as { frame: Buffer }).frame));
  const onResponse = (m: unknown) => {
    const r = m as { apiKey: number; version: number; frame: Buffer };
    responses.push({ ...r, frame: Buffer.from(r.frame) });
  };
  subscribe('streamgate:kafka:request', onRequest);
  subscribe('streamgate:kafka:response', onResponse);
  after(() => {
    unsubscribe('streamgate:kafka:request', onRequest);
    unsubscribe('streamgate:kafka:response', onResponse);
  });
  const dir = mkdtempSync(join(tmpdir(), 'sg-codec-'));
  const props = join(dir, 'client.properties');
  writeFileSync(
    props,
    [
      'security.protocol=SASL_PLAINTEXT',
      'sasl.mechanism=PLAIN',
      `sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="ops" password="${await infra.idp.token('ops')}";`,
      'compression.type=lz4',
      'group.protocol=consumer',
      '',
    ].join('\n'),
  );
  const bootstrap = `127.0.0.1:${gateway.addresses.kafka!.port}`;
  const produced = await runKafkaTool('org.apache.kafka.tools.ConsoleProducer', ['--bootstrap-server', bootstrap, '--topic', topic, '--command-config', props], { input: 'a\nb\nc\n' });
  assert.equal(produced.code, 0, produced.stderr);
  const consumed = await runKafkaTool('org.apache.kafka.tools.consumer.ConsoleConsumer', ['--bootstrap-server', bootstrap, '--topic', topic, '--from-beginning', '--max-messages', '3', '--group', `codec-${process.pid}`, '--command-config', props]);
  assert.equal(consumed.code, 0, consumed.stderr);

  const apis = new Set<string>();
  for (const frame of requests) {
    const apiKey = frame.readInt16BE(4);
    const version = frame.readInt16BE(6);
    const codec = reg.requests.get(apiKey)!;
    const hv = codec.isFlexible(version) ? 2 : 1;
    const header = reg.requestHeader.decode(frame, 4, hv);
    const body = codec.decode(frame, header.offset, version);
    assert.equal(body.offset, frame.length, `${codec.spec.name} v${version}: whole frame consumed`);
    const w = reg.requestHeader.encode(header.value, hv);
    codec.encode(body.value, version, w);
    assert.deepEqual(w.finish(true), frame, `${codec.spec.name} v${version} request`);
    apis.add(codec.spec.name);
  }
  for (const { apiKey, version, frame } of responses) {
    const codec = reg.responses.get(apiKey)!;
    const hv = apiKey !== 18 && codec.isFlexible(version) ? 1 : 0;
    const header = reg.responseHeader.decode(frame, 4, hv);
    const body = codec.decode(frame, header.offset, version);
    assert.equal(body.offset, frame.length, `${codec.spec.name} v${version}: whole frame consumed`);
    const w = reg.responseHeader.encode(header.value, hv);
    codec.encode(body.value, version, w);
    assert.deepEqual(w.finish(true), frame, `${codec.spec.name} v${version} response`);
    apis.add(codec.spec.name);
    if (apiKey === 1) {
      for (const t of body.value.Responses as Array<{ Partitions: Array<{ Records: Uint8Array | null }> }>) {
        for (const p of t.Partitions) if (p.Records && p.Records.length > 0) assert.equal(summarize(p.Records).records, 3, 'record count from the batch headers');
      }
    }
  }
  for (const name of ['ApiVersionsRequest', 'ProduceRequest', 'FetchResponse', 'MetadataResponse', 'ConsumerGroupHeartbeatRequest', 'InitProducerIdRequest']) {
    assert.ok(apis.has(name), `${name} was exercised (saw ${[...apis].join(', ')})`);
  }
});
