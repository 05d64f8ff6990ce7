import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { createLogger } from '../src/log.ts';
import type { AuditRow } from '../src/audit/row.ts';
import type { Identity, Operation, Session, UpstreamResult } from '../src/operation.ts';
import { RawOpener, RawSealer } from '../src/recording/crypto.ts';
import { Recorder, RecordingPolicy } from '../src/recording/recorder.ts';
import { recordingSchema } from '../src/recording/schema.ts';
import { readSegmentLines } from '../src/recording/segments.ts';
import { readSession } from '../src/recording/store.ts';

// The recorder without a gateway: selectors, bounds (a session stops, an audit note says so),
// offsets from per-partition base offsets, torn segments, ECDH-ES raw payloads.

const enc = (s: string) => new TextEncoder().encode(s);
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const alice: Identity = { subject: 'alice', issuer: 'i', roles: ['writer'], groups: [], claims: {} };
const bob: Identity = { subject: 'bob', issuer: 'i', roles: ['reader'], groups: [], claims: {} };

function session(id: string): Session {
  return { id, protocol: 'kafka', client: { address: '127.0.0.1' }, startedAt: Date.now() };
}

let opSeq = 0;
function op(s: Session, topic: string, values: string[], identity = alice, partitions?: number[]): Operation {
  return {
    id: `op-${++opSeq}`,
    receivedAt: Date.now(),
    startedAt: performance.now(),
    session: s,
    protocol: s.protocol,
    action: 'produce',
    resource: { kind: 'topic', name: topic },
    identity,
    records: values.map((v, i) => ({ key: null, value: enc(v), headers: [], ...(partitions ? { partition: partitions[i]! } : {}) })),
    meta: {},
  };
}

/** What the chain would do: run, then the audit control's hashes. */
function run(recorder: Recorder, o: Operation, result: UpstreamResult): boolean {
  const capture = recorder.capture(o);
  if (!capture) return false;
  o.inspection = { hashes: o.records!.map((r) => createHash('sha256').update(r.value!).digest('hex')), maskedHashes: o.records!.map(() => null), masking: {}, where: 'none', notes: [] };
  recorder.complete(capture, o, result);
  return true;
}

test('selectors: topics, subjects, roles and actions must all match within one selector; any selector will do', () => {
  const p = new RecordingPolicy([{ topics: ['payments.*'], roles: ['writer'] }, { subjects: ['bob'], actions: ['consume'] }]);
  assert.equal(p.applies('payments.cards', 'produce', alice), true);
  assert.equal(p.applies('orders', 'produce', alice), false);
  assert.equal(p.applies('payments.cards', 'produce', bob), false, 'bob lacks the writer role');
  assert.equal(p.applies('anything', 'consume', bob), true);
  assert.equal(p.applies('anything', 'produce', bob), false);
  assert.equal(p.applies('payments.cards', 'produce', undefined), false);
  assert.equal(new RecordingPolicy('all').applies('x', 'consume', undefined), true);
});

test('a session past maxSessionBytes stops being recorded with one audit note; other sessions go on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-rec-unit-'));
  const notes: Array<Partial<AuditRow>> = [];
  const recorder = new Recorder(recordingSchema.parse({ dir, sessions: 'all', maxSessionBytes: 100, flushIntervalMs: 10 }), { instance: 't', log: createLogger('silent'), note: (n) => notes.push(n) });
  const a = session('sess-a');
  const b = session('sess-b');
  const value = 'x'.repeat(40);
  const recorded: boolean[] = [];
  for (let i = 0; i < 4; i++) recorded.push(run(recorder, op(a, 't', [value]), { records: [{ partition: 0, offset: String(i), timestamp: 0 }] }));
  assert.deepEqual(recorded, [true, true, false, false], '40 + 40 bytes fit, the third would pass 100');
  assert.equal(notes.length, 1);
  assert.equal(notes[0]!.reason, 'recording-session-bound');
  assert.equal(notes[0]!.session_id, 'sess-a');
  assert.match(notes[0]!.message!, /maxSessionBytes 100/);
  assert.equal(run(recorder, op(b, 't', [value]), { records: [{ partition: 0, offset: '9', timestamp: 0 }] }), true);
  await recorder.close();
  assert.deepEqual(readSession(dir, 'sess-a').map((r) => r.offset), ['0', '1']);
  assert.deepEqual(readSession(dir, 'sess-b').map((r) => r.hash), [sha(value)]);
});

test('produce offsets from one base offset per partition (Kafka) and the record order within each partition', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-rec-unit-'));
  const recorder = new Recorder(recordingSchema.parse({ dir, sessions: 'all', flushIntervalMs: 10 }), { instance: 't', log: createLogger('silent'), note: () => {} });
  const s = session('sess-p');
  run(recorder, op(s, 't', ['a', 'b', 'c', 'd', 'e'], alice, [0, 0, 1, 1, 1]), {
    records: [
      { partition: 0, offset: '10', timestamp: 0 },
      { partition: 1, offset: '200', timestamp: 0 },
    ],
  });
  await recorder.close();
  const rows = readSession(dir, 'sess-p');
  assert.deepEqual(rows.map((r) => `${r.partition}:${r.offset}`), ['0:10', '0:11', '1:200', '1:201', '1:202']);
  assert.deepEqual(rows.map((r) => r.seq), [0, 1, 2, 3, 4]);
});

test('a segment torn by a crash mid-write keeps its complete lines', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-rec-unit-'));
  const path = join(dir, 'rec-0000000000001-1-000001.jsonl.gz');
  writeFileSync(path, gzipSync('{"a":1}\n{"a":2}\n'));
  const second = gzipSync('{"a":3}\n{"a":4}\n');
  appendFileSync(path, second.subarray(0, second.length - 12)); // the trailer and some data are missing
  const lines = readSegmentLines(path);
  assert.deepEqual(lines.slice(0, 2), ['{"a":1}', '{"a":2}']);
  assert.ok(lines.every((l) => JSON.parse(l)), 'no partial line');
  assert.ok(readFileSync(path).length > 0);
});

test('ECDH-ES raw payloads: sealed with the public key, opened only with the private key', async () => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pub = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const priv = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const sealer = new RawSealer({ alg: 'ECDH-ES', key: pub, kid: 'ec-1' });
  const jwe = await sealer.seal(enc('4111 1111 1111 1111'));
  assert.equal(JSON.parse(Buffer.from(jwe.split('.')[0]!, 'base64url').toString()).kid, 'ec-1');
  assert.ok(!jwe.includes('4111'));
  assert.equal(new TextDecoder().decode(await new RawOpener(priv).open(jwe)), '4111 1111 1111 1111');
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  await assert.rejects(new RawOpener(other).open(jwe), /does not decrypt/);
  assert.throws(() => new RawSealer({ alg: 'dir', key: 'too-short', kid: 'k' }), /32 bytes/);
});
