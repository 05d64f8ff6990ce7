import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Consumer, Producer, stringDeserializers, stringSerializers, type SASLOptions } from '@platformatic/kafka';
import { base64url } from 'jose';
import { Pool } from 'undici';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import type { Gateway } from '../src/gateway.ts';
import { recordingSchema } from '../src/recording/schema.ts';
import { readSession } from '../src/recording/store.ts';
import { listRecordingSegments, readHeadOf } from '../src/recording/segments.ts';
import { RawOpener } from '../src/recording/crypto.ts';
import { replay, type ReplayOptions } from '../src/cli/replay.ts';

// Session recording and replay against the real broker, the dev IdP and the gateway's
// HTTP and Kafka listeners. Recorded topics (per the selector below): payments.rec-*.

const run = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
const KEY = base64url.encode(randomBytes(32));
const KAFKA_SRC = `payments.rec-kafka-${run}`;
const HTTP_SRC = `payments.rec-http-${run}`;
const CONSUMED = `payments.rec-cons-${run}`;
const REPLAY_K = `sandbox.ops.replay-k-${run}`;
const REPLAY_H = `payments.replay-h-${run}`;
const CARD = '4111 1111 1111 1111';

let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let recDir: string;
let kafkaBootstrap: string;
let httpBase: string;

const oauth = async (who: string): Promise<SASLOptions> => ({ mechanism: 'OAUTHBEARER', token: await infra.idp.token(who) });

function cli(args: string[], env: Record<string, string> = {}) {
  const clean = { ...process.env };
  delete clean.STREAMGATE_RECORDING_KEY;
  return spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', env: { ...clean, ...env }, timeout: 120_000 });
}

function cliAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

/** The session of the one operation of `subject` on `topic` with `action` (all of a test's operations share it). */
function sessionOf(subject: string, topic: string, action: string): string {
  const ids = new Set(readAudit(spoolDir).filter((r) => r.event === 'operation' && r.subject === subject && r.resource === topic && r.action === action && r.decision === 'allow').map((r) => r.session_id));
  assert.equal(ids.size, 1, `one session of ${subject} ${action} ${topic}, got ${[...ids].join(', ')}`);
  return [...ids][0]!;
}

async function until<T>(what: string, f: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  infra = await getInfra();
  await createTopics(infra.kafka, [KAFKA_SRC, HTTP_SRC, CONSUMED, REPLAY_K, REPLAY_H], 1);
  const made = testConfig(infra);
  spoolDir = made.spoolDir;
  recDir = mkdtempSync(join(tmpdir(), 'sg-rec-'));
  made.config.recording = recordingSchema.parse({
    dir: recDir,
    sessions: [{ topics: ['payments.rec-*'] }],
    raw: { alg: 'dir', key: KEY, kid: 'test-key-1' },
  });
  gateway = await startGateway(made.config);
  kafkaBootstrap = `127.0.0.1:${gateway.addresses.kafka!.port}`;
  httpBase = `http://127.0.0.1:${gateway.addresses.http!.port}`;
});

function replayOptions(token: string, toTopic: string, gatewayUrl: string): ReplayOptions {
  return { toTopic, token, gateway: gatewayUrl, rate: 'max', cluster: 'local', action: 'all', batch: 7, keepPartitions: false };
}

test('a Kafka producer session is recorded in order with offsets and audit hashes, and replays hash-equal under the replaying identity', async () => {
  const values = Array.from({ length: 25 }, (_, i) => JSON.stringify({ n: i, run, text: `kafka record ${i}` }));
  const producer = new Producer({ clientId: 'alice-recorded', bootstrapBrokers: [kafkaBootstrap], sasl: await oauth('alice'), serializers: stringSerializers });
  try {
    for (let i = 0; i < values.length; i += 10) {
      await producer.send({ messages: values.slice(i, i + 10).map((value, k) => ({ topic: KAFKA_SRC, key: `k${i + k}`, value, headers: { trace: `t${i + k}` } })) });
    }
  } finally {
    await producer.close();
  }
  const session = sessionOf('alice', KAFKA_SRC, 'produce');
  const rows = await until('the recording', () => {
    const r = readSession(recDir, session);
    return r.length === values.length ? r : undefined;
  });
  assert.deepEqual(rows.map((r) => Buffer.from(r.value!, 'base64').toString()), values, 'values in the order produced');
  assert.deepEqual(rows.map((r) => r.offset), values.map((_, i) => String(i)), 'broker offsets');
  assert.deepEqual(rows.map((r) => Buffer.from(r.key!, 'base64').toString()), values.map((_, i) => `k${i}`));
  assert.deepEqual(rows[3]!.headers, [['trace', Buffer.from('t3').toString('base64')]]);
  assert.ok(rows.every((r) => r.action === 'produce' && r.subject === 'alice' && r.protocol === 'kafka' && r.masked === 0 && r.raw === ''));
  // each recorded hash is the one in the operation's audit row
  const audited = readAudit(spoolDir).filter((r) => r.session_id === session && r.event === 'operation' && r.resource === KAFKA_SRC).flatMap((r) => r.record_hashes);
  assert.deepEqual(rows.map((r) => r.hash), audited);
  assert.deepEqual(rows.map((r) => r.hash), values.map(sha256));

  // replay through the gateway's HTTP listener as ops (platform-admin)
  const opsToken = await infra.idp.token('ops');
  const summary = await replay(session, rows, replayOptions(opsToken, REPLAY_K, httpBase));
  assert.equal(summary.sent, values.length, JSON.stringify(summary.failed.slice(0, 3)));
  assert.equal(summary.hashesMatched, values.length);
  assert.deepEqual(summary.mismatches, []);
  const got = await readTopic(infra.kafka, REPLAY_K, values.length);
  assert.deepEqual(got.map((r) => sha256(r.value!)), rows.map((r) => r.hash), 'the replayed topic has the same records in the same order');
  assert.deepEqual(got.map((r) => r.key), values.map((_, i) => `k${i}`));
  assert.equal(got[3]!.headers.trace, 't3');
  // the replay is audited under the replaying identity, and replay topics are not recorded (no selector)
  const replayRows = readAudit(spoolDir).filter((r) => r.event === 'operation' && r.resource === REPLAY_K);
  assert.ok(replayRows.length > 0 && replayRows.every((r) => r.subject === 'ops' && r.action === 'produce' && r.decision === 'allow'));
  assert.equal(replayRows.reduce((n, r) => n + r.record_count, 0), values.length);
  assert.equal(readSession(recDir, replayRows[0]!.session_id).length, 0);
});

test('an HTTP keep-alive session is recorded after masking, raw originals only encrypted; replay over the Kafka listener re-applies policy and audit', async () => {
  const token = await infra.idp.token('alice');
  const pool = new Pool(httpBase, { connections: 1 });
  const values = Array.from({ length: 6 }, (_, i) => ({ n: i, run, card: i % 2 === 0 ? CARD : 'none' }));
  try {
    for (const v of values) {
      const res = await pool.request({
        path: `/v3/clusters/local/topics/${HTTP_SRC}/records`,
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ key: { type: 'STRING', data: `h${v.n}` }, value: { type: 'JSON', data: v } }),
      });
      assert.equal(res.statusCode, 200, await res.body.text());
      await res.body.dump();
    }
  } finally {
    await pool.close();
  }
  const session = sessionOf('alice', HTTP_SRC, 'produce');
  const rows = await until('the recording', () => {
    const r = readSession(recDir, session);
    return r.length === values.length ? r : undefined;
  });
  const recorded = rows.map((r) => JSON.parse(Buffer.from(r.value!, 'base64').toString()) as { n: number; card: string });
  assert.deepEqual(recorded.map((v) => v.n), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(recorded.map((v) => v.card), values.map((v) => (v.card === CARD ? '**** **** **** 1111' : 'none')), 'recorded as forwarded: masked');
  assert.deepEqual(rows.map((r) => r.offset), ['0', '1', '2', '3', '4', '5']);
  assert.deepEqual(rows.map((r) => r.masked), [1, 0, 1, 0, 1, 0]);
  const audit = readAudit(spoolDir).filter((r) => r.session_id === session && r.event === 'operation');
  assert.deepEqual(rows.map((r) => r.hash), audit.map((r) => r.masked_hashes[0] || r.record_hashes[0]), 'the hash of the value as forwarded, from the audit row');

  // raw originals: JWE with the key id, never plaintext in the segment files (compressed or not)
  const segments = listRecordingSegments(recDir);
  assert.ok(segments.length > 0);
  for (const s of segments) {
    const bytes = readFileSync(s);
    const text = gunzipSync(bytes).toString();
    for (const hay of [bytes.toString('latin1'), text]) {
      assert.ok(!hay.includes(CARD) && !hay.includes('4111111111111111'), `${s} holds the card number in plaintext`);
    }
    assert.equal(readHeadOf(s)?.raw?.kid, 'test-key-1');
  }
  const sealed = rows.filter((r) => r.masked === 1);
  assert.ok(sealed.every((r) => r.raw.split('.').length === 5 && r.kid === 'test-key-1'));
  const opener = new RawOpener(KEY);
  const original = JSON.parse(Buffer.from(await opener.open(sealed[0]!.raw)).toString()) as { card: string };
  assert.equal(original.card, CARD);
  await assert.rejects(new RawOpener(base64url.encode(randomBytes(32))).open(sealed[0]!.raw), /does not decrypt/);

  // export --raw without the key fails clearly; with it, the originals come back
  const store = ['--dir', spoolDir, '--recordings', recDir];
  const denied = cli(['sessions', 'export', session, '--raw', ...store]);
  assert.equal(denied.status, 2, denied.stderr);
  assert.match(denied.stderr, /--raw needs the recording key/);
  assert.equal(denied.stdout, '');
  const plain = cli(['sessions', 'export', session, ...store]);
  assert.equal(plain.status, 0, plain.stderr);
  assert.ok(!plain.stdout.includes(CARD));
  const first = JSON.parse(plain.stdout.split('\n')[0]!) as { value_text: string; raw_value?: string };
  assert.equal((JSON.parse(first.value_text) as { card: string }).card, '**** **** **** 1111', 'text payloads are exported as text too');
  assert.equal(first.raw_value, undefined);
  const exported = cli(['sessions', 'export', session, '--raw', ...store], { STREAMGATE_RECORDING_KEY: KEY });
  assert.equal(exported.status, 0, exported.stderr);
  const lines = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as { seq: number; raw_value: string; hash: string });
  assert.equal(lines.length, values.length);
  assert.equal((JSON.parse(Buffer.from(lines[0]!.raw_value, 'base64').toString()) as { card: string }).card, CARD);
  assert.equal((JSON.parse((lines[0] as unknown as { raw_text: string }).raw_text) as { card: string }).card, CARD);

  // replay through the Kafka listener as alice: her policy allows payments.*; masking runs again (nothing left to mask)
  const summary = await replay(session, rows, replayOptions(token, REPLAY_H, `kafka://${kafkaBootstrap}`));
  assert.equal(summary.sent, values.length, JSON.stringify(summary.failed.slice(0, 3)));
  const got = await readTopic(infra.kafka, REPLAY_H, values.length);
  assert.deepEqual(got.map((r) => sha256(r.value!)), rows.map((r) => r.hash));
  const replayRows = readAudit(spoolDir).filter((r) => r.event === 'operation' && r.resource === REPLAY_H);
  assert.ok(replayRows.length > 0 && replayRows.every((r) => r.subject === 'alice' && r.protocol === 'kafka' && r.decision === 'allow'));
});

test('a Kafka consumer session records the records as delivered (masked for its role) with their offsets', async () => {
  const values = Array.from({ length: 8 }, (_, i) => JSON.stringify({ n: i, email: `user${i}@example.com` }));
  const direct = new Producer({ clientId: 'rec-direct', bootstrapBrokers: [infra.kafka], serializers: stringSerializers });
  try {
    await direct.send({ messages: values.map((value) => ({ topic: CONSUMED, value })) });
  } finally {
    await direct.close();
  }
  const consumer = new Consumer({ clientId: 'bob-recorded', groupId: `bob-rec-${run}`, bootstrapBrokers: [kafkaBootstrap], sasl: await oauth('bob'), deserializers: stringDeserializers });
  const delivered: Array<{ value: string; offset: bigint }> = [];
  try {
    const stream = await consumer.consume({ topics: [CONSUMED], mode: 'earliest', maxWaitTime: 200 });
    const timer = setTimeout(() => void stream.close(), 20_000);
    try {
      for await (const m of stream) {
        delivered.push({ value: m.value as string, offset: m.offset });
        if (delivered.length >= values.length) break;
      }
    } finally {
      clearTimeout(timer);
    }
  } finally {
    await consumer.close(true);
  }
  assert.equal(delivered.length, values.length);
  assert.ok(delivered.every((d) => d.value.includes('tok_')), 'bob (analyst) reads e-mail addresses tokenized');
  // a consumer has several connections (coordinator, partition leader): the fetching one is the recorded session
  const sessions = new Set(readAudit(spoolDir).filter((r) => r.event === 'operation' && r.subject === 'bob' && r.resource === CONSUMED && r.record_count > 0).map((r) => r.session_id));
  assert.equal(sessions.size, 1);
  const session = [...sessions][0]!;
  const rows = await until('the recording', () => {
    const r = readSession(recDir, session).filter((x) => x.topic === CONSUMED);
    return r.length >= values.length ? r : undefined;
  });
  assert.deepEqual(rows.slice(0, values.length).map((r) => r.offset), delivered.map((d) => String(d.offset)));
  assert.deepEqual(rows.slice(0, values.length).map((r) => Buffer.from(r.value!, 'base64').toString()), delivered.map((d) => d.value), 'recorded as delivered');
  assert.ok(rows.every((r) => r.action === 'consume' && r.masked === 1 && r.raw !== ''));
  assert.deepEqual(rows.slice(0, values.length).map((r) => r.original_hash), values.map(sha256));

  // what bob received can be re-produced elsewhere: the masked records, hash-equal, in order
  const target = `sandbox.ops.replay-c-${run}`;
  await createTopics(infra.kafka, [target], 1);
  const summary = await replay(session, rows, replayOptions(await infra.idp.token('ops'), target, httpBase));
  assert.equal(summary.sent, rows.length, JSON.stringify(summary.failed.slice(0, 2)));
  const got = await readTopic(infra.kafka, target, rows.length);
  assert.deepEqual(got.map((g) => sha256(g.value!)), rows.map((r) => r.hash));
});

test('sessions list and show find recorded sessions by identity, topic and decision', () => {
  const store = ['--dir', spoolDir, '--recordings', recDir];
  const list = cli(['sessions', 'list', '--identity', 'alice', '--topic', 'payments.rec-http-*', '--recorded', '-f', 'json', ...store]);
  assert.equal(list.status, 0, list.stderr);
  const found = list.stdout.trim().split('\n').map((l) => JSON.parse(l) as { session_id: string; recorded: number | string; subjects: string[] });
  const http = sessionOf('alice', HTTP_SRC, 'produce');
  assert.deepEqual(found.map((s) => s.session_id), [http]);
  assert.equal(Number(found[0]!.recorded), 6);
  const none = cli(['sessions', 'list', '--identity', 'alice', '--decision', 'deny', '-f', 'json', ...store]);
  assert.equal(none.status, 0, none.stderr);
  assert.ok(!none.stdout.includes(http));
  const show = cli(['sessions', 'show', http, ...store]);
  assert.equal(show.status, 0, show.stderr);
  assert.match(show.stdout, /session-start/);
  assert.match(show.stdout, new RegExp(HTTP_SRC.replaceAll('.', '\\.')));
  assert.match(show.stdout, /recorded:/);
});

test('the replay CLI checks every payload against its recorded hash: a tampered record is reported and not sent', async () => {
  const session = sessionOf('alice', KAFKA_SRC, 'produce');
  // a copy of the recording with one payload changed after the fact
  const tampered = mkdtempSync(join(tmpdir(), 'sg-rec-tampered-'));
  const rows = readSession(recDir, session);
  rows[2]!.value = Buffer.from('{"forged":true}').toString('base64');
  writeFileSync(join(tampered, 'rec-0000000000001-1-000001.jsonl.gz'), gzipSync(rows.map((r) => JSON.stringify(r)).join('\n') + '\n'));
  const target = `sandbox.ops.replay-cli-${run}`;
  await createTopics(infra.kafka, [target], 1);
  // asynchronously: the gateway under test runs in this process and must answer the CLI
  const r = await cliAsync(['replay', session, '--to-topic', target, '--as', await infra.idp.token('ops'), '--gateway', httpBase, '--cluster', 'local', '--rate', '200/s', '--json', '--recordings', tampered]);
  assert.equal(r.status, 1, r.stderr);
  const summary = JSON.parse(r.stdout) as { records: number; sent: number; hashesMatched: number; mismatches: Array<{ seq: number; expected: string }> };
  assert.equal(summary.records, rows.length);
  assert.equal(summary.hashesMatched, rows.length - 1);
  assert.equal(summary.sent, rows.length - 1);
  assert.deepEqual(summary.mismatches.map((m) => [m.seq, m.expected]), [[2, rows[2]!.hash]]);
  const got = await readTopic(infra.kafka, target, rows.length - 1);
  assert.deepEqual(got.map((g) => sha256(g.value!)), rows.filter((_, i) => i !== 2).map((x) => x.hash));
});

test('the sessions API on the admin listener: reading a recording is an authorized, audited consume', async () => {
  const admin = `http://127.0.0.1:${gateway.addresses.admin!.port}`;
  const session = sessionOf('alice', HTTP_SRC, 'produce');
  const get = async (path: string, who?: string) => {
    const res = await fetch(`${admin}${path}`, { headers: who ? { authorization: `Bearer ${await infra.idp.token(who)}` } : {} });
    return { status: res.status, text: await res.text(), withheld: res.headers.get('x-streamgate-withheld') };
  };
  assert.equal((await get(`/v1/sessions/${session}/records`)).status, 401);
  assert.equal((await get(`/v1/sessions/${session}/records`, 'mallory')).status, 403, 'no consume grant on the topic');
  const bob = await get(`/v1/sessions/${session}/records`, 'bob');
  assert.equal(bob.status, 200, bob.text);
  assert.equal(bob.withheld, '0');
  const rows = bob.text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(rows.map((r) => r.seq), [0, 1, 2, 3, 4, 5]);
  assert.ok(rows.every((r) => !('raw' in r)), 'raw payloads never leave through the API');
  assert.ok(!bob.text.includes(Buffer.from(CARD).toString('base64').slice(0, 12)));
  const audited = readAudit(spoolDir).filter((r) => r.event === 'operation' && r.subject === 'bob' && r.meta.recorded_session === session);
  assert.equal(audited.length, 1);
  assert.equal(audited[0]!.resource, HTTP_SRC);
  assert.equal(audited[0]!.record_count, 6);
  const list = await get('/v1/sessions?identity=alice', 'bob');
  assert.equal(list.status, 200);
  const sessions = (JSON.parse(list.text) as { sessions: Array<{ session_id: string; records: number }> }).sessions;
  assert.equal(sessions.find((s) => s.session_id === session)?.records, 6);
  assert.equal((await get('/v1/sessions/00000000-0000-0000-0000-000000000000/records', 'bob')).status, 404);
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  const recorded = Number(/^streamgate_recording_records_total (\d+)/m.exec(metrics)?.[1]);
  assert.ok(recorded >= 6 + 25 + 8, `streamgate_recording_records_total ${recorded}`);
  assert.match(metrics, /^streamgate_recording_stops_total 0$/m);
});

test('which sessions are recorded reloads with the config; the rest of the recording section needs a restart', async () => {
  const topic = `payments.reload-${run}`; // not recorded by the selector above
  await createTopics(infra.kafka, [topic], 1);
  const before = gateway.config.recording!;
  const r = await gateway.reload({ ...gateway.config, recording: { ...before, sessions: [{ topics: ['payments.rec-*'] }, { subjects: ['alice'], topics: [topic], actions: ['produce'] }] } });
  assert.ok(r.applied.includes('recording.sessions'), JSON.stringify(r));
  assert.ok(!r.restartNeeded.includes('recording'));
  const token = await infra.idp.token('alice');
  const value = { reloaded: run };
  const res = await fetch(`${httpBase}/v3/clusters/local/topics/${topic}/records`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ value: { type: 'JSON', data: value } }) });
  assert.equal(res.status, 200, await res.text());
  const row = readAudit(spoolDir).findLast((a) => a.event === 'operation' && a.resource === topic && a.subject === 'alice')!;
  const rows = await until('the recording', () => {
    const got = readSession(recDir, row.session_id).filter((x) => x.topic === topic);
    return got.length > 0 ? got : undefined;
  });
  assert.equal(Buffer.from(rows[0]!.value!, 'base64').toString(), JSON.stringify(value));
  const moved = await gateway.reload({ ...gateway.config, recording: { ...gateway.config.recording!, dir: join(recDir, 'elsewhere') } });
  assert.ok(moved.restartNeeded.includes('recording'));
  assert.ok(!moved.applied.includes('recording.sessions'));
});
