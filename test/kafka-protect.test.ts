import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { base64url } from 'jose';
import { readSession } from '../src/recording/store.ts';
import { listRecordingSegments } from '../src/recording/segments.ts';
import { RawOpener } from '../src/recording/crypto.ts';
import { replay } from '../src/cli/replay.ts';
import { Producer, stringSerializers } from '@platformatic/kafka';
import { ensureKcat, plainJwtAuth, runKcat } from './helpers/kcat.ts';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig, type TestConfig } from './helpers/config.ts';
import type { Gateway } from '../src/gateway.ts';
import { luhnValid } from '../src/protect/preserve.ts';

// Reversible protection on the Kafka wire protocol with unchanged clients (issue 22): the
// example config encrypts card numbers (FF1, Luhn-valid, issuer prefix kept) and SSNs
// (AES-GCM envelopes) produced to cards.*; the fraud-analyst role reads the originals, an
// analyst the ciphertexts with cards masked on top; each reveal is an audit fact.

const run = `${process.pid}-${Date.now() % 100000}`;
const V2 = 'second-protection-secret-for-tests-0123456789';
const ROOT = new URL('..', import.meta.url).pathname;
let infra: Infra;
let gateway: Gateway;
let made: TestConfig;
let bootstrap: string;
let recDir: string;
const RECORDING_KEY = base64url.encode(randomBytes(32));

const kcat = async (who: string, args: string[], input?: string) => runKcat(bootstrap, plainJwtAuth(who, await infra.idp.token(who)), args, input, 30_000);
const digits = (s: string) => [...s.replace(/\D/g, '')].map(Number);
const record = (i: number) => JSON.stringify({ id: i, card: '4111 1111 1111 1111', ssn: `123-45-${String(1000 + i).slice(-4)}`, note: `order ${i}` });

async function readAs(who: string, topic: string, count: number): Promise<string[]> {
  const res = await kcat(who, ['-C', '-t', topic, '-o', 'beginning', '-c', String(count), '-e', '-f', '%s\n']);
  assert.equal(res.code, 0, res.stderr);
  return res.stdout.trim().split('\n');
}

before(async () => {
  ensureKcat();
  infra = await getInfra();
  recDir = mkdtempSync(join(tmpdir(), 'sg-protect-rec-'));
  made = testConfig(infra, (c) => {
    c.recording = { dir: recDir, sessions: [{ topics: ['cards.rec-*'] }], raw: { alg: 'dir', key: RECORDING_KEY, kid: 'protect-test' } };
  });
  gateway = await startGateway(made.config);
  bootstrap = `127.0.0.1:${gateway.addresses.kafka!.port}`;
});

test('the broker holds format-valid ciphertexts; the fraud analyst reads the originals, an analyst the ciphertexts, and both leave audit rows', async () => {
  const topic = `cards.kafka-${run}`;
  await createTopics(infra.kafka, [topic]);
  const lines = [0, 1, 2].map(record);
  const res = await kcat('alice', ['-P', '-t', topic, '-z', 'lz4'], `${lines.join('\n')}\nrefund to 5500 0000 0000 0004 now\n`);
  assert.equal(res.code, 0, res.stderr);

  const stored = (await readTopic(infra.kafka, topic, 4)).map((r) => r.value!);
  const docs = stored.slice(0, 3).map((v) => JSON.parse(v) as { card: string; ssn: string; note: string });
  for (const d of docs) {
    assert.match(d.card, /^4111 11\d\d \d{4} \d{4}$/, 'same grouping, issuer prefix in clear');
    assert.notEqual(d.card, '4111 1111 1111 1111');
    assert.ok(luhnValid(digits(d.card)), 'a consumer checking Luhn accepts the stored card');
    assert.match(d.ssn, /^sge1\.1\.[A-Za-z0-9_-]{40,}$/);
  }
  assert.equal(new Set(docs.map((d) => d.card)).size, 1, 'deterministic: equal cards stay equal (joins work)');
  assert.equal(new Set(docs.map((d) => d.ssn)).size, 3);
  assert.match(stored[3]!, /^refund to 5500 00\d\d \d{4} \d{4} now$/);

  const fran = await readAs('fran', topic, 4);
  assert.deepEqual(fran, [...lines, 'refund to 5500 0000 0000 0004 now']);
  const bob = await readAs('bob', topic, 4);
  const bobDocs = bob.slice(0, 3).map((v) => JSON.parse(v) as { card: string; ssn: string });
  assert.ok(bobDocs.every((d, i) => d.card === `**** **** **** ${docs[i]!.card.slice(-4)}` && d.ssn === docs[i]!.ssn), bob.join('\n'));

  const rows = readAudit(made.spoolDir).filter((r) => r.resource === topic);
  const produced = rows.filter((r) => r.action === 'produce' && r.decision === 'allow');
  assert.equal(produced.reduce((n, r) => n + (r.masking['pci.card-encrypt@v1'] ?? 0), 0), 4);
  assert.equal(produced.reduce((n, r) => n + (r.masking['pii.ssn-encrypt@v1'] ?? 0), 0), 3);
  const reveals = rows.filter((r) => r.action === 'consume' && r.subject === 'fran');
  assert.equal(reveals.reduce((n, r) => n + (r.masking['pci.card-reveal@v1'] ?? 0), 0), 4, 'who saw which card numbers in clear: one fact per value');
  assert.equal(reveals.reduce((n, r) => n + (r.masking['pii.ssn-reveal@v1'] ?? 0), 0), 3);
  const masked = rows.filter((r) => r.action === 'consume' && r.subject === 'bob');
  assert.ok(masked.length > 0 && masked.every((r) => !Object.keys(r.masking).some((k) => k.includes('reveal'))));
});

test('a tampered envelope written past the gateway is revealed as [UNREADABLE], with the reason in the audit row', async () => {
  const topic = `cards.tamper-${run}`;
  await createTopics(infra.kafka, [topic]);
  assert.equal((await kcat('alice', ['-P', '-t', topic], `${record(7)}\n`)).code, 0);
  const [stored] = await readTopic(infra.kafka, topic, 1);
  const doc = JSON.parse(stored!.value!) as { ssn: string };
  const flipped = doc.ssn.slice(0, -2) + (doc.ssn.at(-2) === 'A' ? 'B' : 'A') + doc.ssn.at(-1);
  const producer = new Producer({ clientId: 'tamper', bootstrapBrokers: [infra.kafka], serializers: stringSerializers });
  try {
    await producer.send({ messages: [{ topic, value: JSON.stringify({ ...doc, ssn: flipped }) }] });
  } finally {
    await producer.close();
  }
  const [, tampered] = await readAs('fran', topic, 2);
  assert.equal(JSON.parse(tampered!).ssn, '[UNREADABLE]');
  const rows = readAudit(made.spoolDir).filter((r) => r.resource === topic && r.action === 'consume' && r.subject === 'fran');
  assert.ok(rows.some((r) => r.masking['pii.ssn-reveal!AUTHENTICATION_FAILED'] === 1), JSON.stringify(rows.map((r) => r.masking)));
});

test('key rotation under load: records written before and after the rotation are all revealed; retiring the old version makes its records unreadable', async () => {
  const topic = `cards.rotate-${run}`;
  await createTopics(infra.kafka, [topic]);
  const producer = new Producer({ clientId: 'rotate', bootstrapBrokers: [bootstrap], sasl: { mechanism: 'OAUTHBEARER', token: await infra.idp.token('alice') }, serializers: stringSerializers });
  const sent: string[] = [];
  let stop = false;
  const load = (async () => {
    for (let i = 0; !stop; i++) {
      const batch = [0, 1, 2, 3, 4].map((k) => record(i * 5 + k));
      await producer.send({ messages: batch.map((value) => ({ topic, value })) });
      sent.push(...batch);
    }
  })();
  try {
    while (sent.length < 50) await new Promise((r) => setTimeout(r, 20));
    const rotated = made.with((c) => {
      c.inspection!.protection = { ...c.inspection!.protection!, active: 2, keys: [...(c.inspection!.protection!.keys ?? []), { version: 2, secret: V2 }] };
    });
    assert.deepEqual((await gateway.reload(rotated.config)).applied, ['inspection']);
    const at = sent.length;
    while (sent.length < at + 50) await new Promise((r) => setTimeout(r, 20));
  } finally {
    stop = true;
    await load;
    await producer.close();
  }
  const stored = (await readTopic(infra.kafka, topic, sent.length)).map((r) => JSON.parse(r.value!) as { ssn: string });
  const versions = new Set(stored.map((d) => d.ssn.split('.')[1]));
  assert.deepEqual([...versions].sort(), ['1', '2'], 'both key versions wrote envelopes');
  const fran = (await readAs('fran', topic, sent.length)).sort();
  assert.deepEqual(fran, [...sent].sort(), 'every record, before and after the rotation, is revealed');

  // version 1 retired (the card rule moves to version 2 first; see docs/inspection.md on FF1 keys)
  const retired = made.with((c) => {
    c.inspection!.protection = { ...c.inspection!.protection!, active: 2, keys: [{ version: 2, secret: V2 }] };
    const card = c.inspection!.rules!.find((r) => r.id === 'pci.card-encrypt')!;
    card.action = { ...card.action, keyVersion: 2 } as typeof card.action;
  });
  await gateway.reload(retired.config);
  const after = (await readAs('fran', topic, sent.length)).map((v) => JSON.parse(v) as { ssn: string });
  const v1 = stored.filter((d) => d.ssn.startsWith('sge1.1.')).length;
  assert.equal(after.filter((d) => d.ssn === '[UNREADABLE]').length, v1);
  assert.equal(after.filter((d) => /^123-45-\d{4}$/.test(d.ssn)).length, sent.length - v1);
  const rows = readAudit(made.spoolDir).filter((r) => r.resource === topic && r.action === 'consume' && r.subject === 'fran');
  assert.equal(rows.reduce((n, r) => n + (r.masking['pii.ssn-reveal!UNKNOWN_KEY'] ?? 0), 0), v1);
  await gateway.reload(made.config);
});

test('an exhausted envelope key refuses the write (POLICY_VIOLATION naming the rule), audited as a block; nothing reaches the broker in clear', async () => {
  const topic = `cards.exhausted-${run}`;
  await createTopics(infra.kafka, [topic]);
  // another instance has used up version 7's AES-GCM budget in the shared store
  await gateway.state.incrementBy('keyuse:7', 2 ** 32);
  const exhausted = made.with((c) => {
    c.inspection!.protection = { ...c.inspection!.protection!, active: 7, keys: [...(c.inspection!.protection!.keys ?? []), { version: 7, secret: `${V2}-seven` }] };
  });
  await gateway.reload(exhausted.config);
  const producer = new Producer({ clientId: 'exhausted', bootstrapBrokers: [bootstrap], sasl: { mechanism: 'OAUTHBEARER', token: await infra.idp.token('alice') }, serializers: stringSerializers, retries: 0 });
  try {
    const err = await producer.send({ messages: [{ topic, value: record(1) }] }).then(
      () => assert.fail('the write must be refused'),
      (e: unknown) => e,
    );
    type Leaf = { apiId?: string; serverErrorMessage?: string; errors?: Leaf[] };
    const leaves: Leaf[] = [];
    const walk = (e: Leaf) => (e.errors?.length ? e.errors.forEach(walk) : leaves.push(e));
    walk(err as Leaf);
    assert.ok(leaves.some((l) => l.apiId === 'POLICY_VIOLATION'), JSON.stringify(leaves));
  } finally {
    await producer.close();
    await gateway.reload(made.config);
  }
  assert.equal((await readTopic(infra.kafka, topic, 1, 2000)).length, 0, 'nothing was written');
  const rows = readAudit(made.spoolDir).filter((r) => r.resource === topic && r.action === 'produce');
  assert.ok(rows.some((r) => r.decision === 'block' && r.rule === 'pii.ssn-encrypt!KEY_EXHAUSTED' && /could not encrypt: the active key version has done all the encryptions/.test(r.message)), JSON.stringify(rows.map((r) => [r.decision, r.rule, r.message])));
});

test('crypto-shredding end to end: erasing one customer (streamgate keys erase-subject) makes its e-mails unreadable, the other customer stays readable, and the erasure is audited', async () => {
  const topic = `cards.shred-${run}`;
  await createTopics(infra.kafka, [topic]);
  const customer = (id: string, i: number) => JSON.stringify({ customer_id: id, email: `${id}.${i}@example.com`, order: i });
  const lines = [customer('c-1', 1), customer('c-2', 2), customer('c-1', 3)];
  assert.equal((await kcat('alice', ['-P', '-t', topic], `${lines.join('\n')}\n`)).code, 0);
  const stored = (await readTopic(infra.kafka, topic, 3)).map((r) => JSON.parse(r.value!) as { email: string });
  assert.ok(stored.every((d) => /^sgs1\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{8}\./.test(d.email)), 'the broker holds envelopes under each customer\'s key');
  assert.deepEqual(await readAs('fran', topic, 3), lines);

  // asynchronous: the gateway answering the CLI runs in this process
  const cli = async (who: string, ...args: string[]) => {
    const argv = ['src/cli/main.ts', 'keys', 'erase-subject', ...args, '--token', await infra.idp.token(who), '--admin-url', `http://127.0.0.1:${gateway.addresses.admin!.port}`];
    return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, argv, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
    );
  };
  const denied = await cli('bob', 'c-1');
  assert.notEqual(denied.status, 0);
  assert.match(denied.stderr, /HTTP 403/);
  const erased = await cli('ops', 'c-1', '--reason', 'erasure request #4711');
  assert.equal(erased.status, 0, erased.stderr);
  assert.match(erased.stdout, /erased: its values can no longer be revealed/);

  const after = (await readAs('fran', topic, 3)).map((v) => JSON.parse(v) as { customer_id: string; email: string });
  assert.deepEqual(after.map((d) => d.email), ['[UNREADABLE]', 'c-2.2@example.com', '[UNREADABLE]']);
  const rows = readAudit(made.spoolDir);
  const erasure = rows.filter((r) => r.event === 'subject-erase');
  assert.ok(erasure.some((r) => r.subject === 'ops' && r.decision === 'allow' && r.resource_kind === 'data-subject' && /^[A-Za-z0-9_-]{22}$/.test(r.resource) && r.message === 'erasure request #4711'), JSON.stringify(erasure));
  assert.ok(erasure.some((r) => r.subject === 'bob' && r.decision === 'deny'));
  assert.ok(!erasure.some((r) => JSON.stringify(r).includes('c-1')), 'the trail names the subject by its id, not its value');
  const reads = rows.filter((r) => r.resource === topic && r.action === 'consume' && r.subject === 'fran');
  assert.equal(reads.reduce((n, r) => n + (r.masking['pii.email-reveal!SHREDDED'] ?? 0), 0), 2);
});

test('session recording never keeps a revealed value in clear; replaying the originals (--raw) through a protected topic encrypts them once, and the fraud analyst reads them again', async () => {
  const src = `cards.rec-src-${run}`;
  const dst = `cards.rec-dst-${run}`;
  await createTopics(infra.kafka, [src, dst]);
  const lines = [1, 2, 3].map((i) => JSON.stringify({ customer_id: `r-${i}`, email: `r${i}@example.com`, card: '4111 1111 1111 1111', ssn: `123-45-${6780 + i}` }));
  assert.equal((await kcat('alice', ['-P', '-t', src], `${lines.join('\n')}\n`)).code, 0);
  assert.deepEqual(await readAs('fran', src, 3), lines);

  const sessions = () => {
    const ids = new Map<string, string>();
    for (const r of readAudit(made.spoolDir)) if (r.event === 'operation' && r.resource === src && r.decision === 'allow' && r.record_count > 0) ids.set(`${r.subject}:${r.action}`, r.session_id);
    return ids;
  };
  let rows: ReturnType<typeof readSession> = [];
  for (let i = 0; i < 50 && rows.length < 3; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const id = sessions().get('fran:consume');
    rows = id ? readSession(recDir, id) : [];
  }
  assert.equal(rows.length, 3);
  assert.ok(rows.every((r) => r.masked === 2 && r.value === null && r.raw !== ''), 'revealed values are withheld; the stored ciphertext is sealed as the raw payload');
  const everything = listRecordingSegments(recDir).map((f) => gunzipSync(readFileSync(f), { finishFlush: 2 }).toString()).join('\n');
  assert.ok(!everything.includes('4111 1111 1111 1111') && !everything.includes('r1@example.com') && !everything.includes('123-45-6781'), 'no original in clear anywhere in the recordings');

  // alice's produce session holds the ciphertexts as forwarded and the originals sealed: replayed raw, the target's rules encrypt them once
  const produced = readSession(recDir, sessions().get('alice:produce')!);
  const summary = await replay(produced[0]!.session_id, produced, {
    toTopic: dst, token: await infra.idp.token('alice'), gateway: `kafka://${bootstrap}`, rate: 'max', cluster: 'local', action: 'produce', batch: 10, keepPartitions: false, raw: new RawOpener(RECORDING_KEY),
  });
  assert.equal(summary.sent, 3, JSON.stringify(summary));
  assert.equal(summary.hashesMatched, 3);
  const stored = (await readTopic(infra.kafka, dst, 3)).map((r) => JSON.parse(r.value!) as { card: string; email: string });
  assert.ok(stored.every((d) => d.card !== '4111 1111 1111 1111' && d.email.startsWith('sgs1.')));
  assert.deepEqual(await readAs('fran', dst, 3), lines, 'revealed to the fraud analyst as written');
  const bob = (await readAs('bob', dst, 3)).map((v) => JSON.parse(v) as { card: string });
  assert.ok(bob.every((d) => /^\*{4} \*{4} \*{4} \d{4}$/.test(d.card)));
});

test('HTTP produce: the same rules encrypt a REST v3 record; a record without its data subject is refused with 422 naming the rule, nothing stored', async () => {
  const topic = `cards.http-${run}`;
  await createTopics(infra.kafka, [topic]);
  const post = async (data: unknown) => {
    const res = await fetch(`http://127.0.0.1:${gateway.addresses.http!.port}/v3/clusters/local/topics/${topic}/records`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await infra.idp.token('alice')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ value: { type: 'JSON', data } }),
    });
    return { status: res.status, body: (await res.json()) as { error_code?: number; message?: string } };
  };
  const doc = { customer_id: 'h-1', email: 'h1@example.com', card: '5500 0000 0000 0004', ssn: '123-45-6799' };
  assert.equal((await post(doc)).status, 200);
  const refused = await post({ email: 'orphan@example.com' });
  assert.equal(refused.status, 422);
  assert.match(refused.body.message ?? '', /pii\.email-per-customer!NO_SUBJECT/);
  const stored = await readTopic(infra.kafka, topic, 2, 3000);
  assert.equal(stored.length, 1, 'the refused record was not stored');
  const d = JSON.parse(stored[0]!.value!) as typeof doc;
  assert.ok(d.email.startsWith('sgs1.') && d.ssn.startsWith('sge1.1.') && /^5500 00\d\d \d{4} \d{4}$/.test(d.card) && d.card !== doc.card);
  assert.deepEqual(JSON.parse((await readAs('fran', topic, 1))[0]!), doc);
});
