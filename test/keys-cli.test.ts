import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureKcat, plainJwtAuth, runKcat } from './helpers/kcat.ts';
import { createTopics, getInfra, readTopic, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { redisUrl } from './helpers/redis.ts';
import { spawnGateway, type GatewayProcess } from './helpers/gateway-process.ts';

// `streamgate keys` against a gateway in its own process (issue 22): a keyring file whose
// secrets are wrapped by a key-encryption key from the environment; rotation and retirement
// reach the running gateway through its file watch; status reads the invocations every
// instance reserved from Redis.

const run = `${process.pid}-${Date.now() % 100000}`;
const ROOT = new URL('..', import.meta.url).pathname;
const env = { STREAMGATE_KEK: 'test-key-encryption-key-0123456789abcdef' };
let infra: Infra;
let dir: string;
let keyring: string;
let configFile: string;
let gateway: GatewayProcess;

function keys(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['src/cli/main.ts', 'keys', ...args], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const kcat = async (who: string, args: string[], input?: string) => runKcat(`127.0.0.1:${gateway.kafka}`, plainJwtAuth(who, await infra.idp.token(who)), args, input, 30_000);

before(async () => {
  ensureKcat();
  infra = await getInfra();
  dir = mkdtempSync(join(tmpdir(), 'sg-keys-'));
  keyring = join(dir, 'keyring.json');
  const init = keys('init', '--keyring', keyring);
  assert.equal(init.code, 0, init.err);
  assert.equal(statSync(keyring).mode & 0o777, 0o600, 'the keyring file is private');
  assert.doesNotMatch(readFileSync(keyring, 'utf8'), /"secret"/, 'secrets are only stored wrapped');
  assert.equal(keys('init', '--keyring', keyring).code, 1, 'init never overwrites a keyring');
  const url = await redisUrl();
  const made = testConfig(
    infra,
    (c) => {
      c.state = { kind: 'redis', url, prefix: `sg-keys-${run}:` };
      c.inspection!.protection = { keyring: { file: keyring, kek: '${STREAMGATE_KEK}' }, subjects: c.inspection!.protection!.subjects };
      // only envelopes here: the FF1 rules pin a version, which `keys retire` protects (tested below)
      c.inspection!.rules = c.inspection!.rules!.filter((r) => r.id !== 'pci.card-encrypt' && r.id !== 'pci.card-reveal');
      const cards = c.inspection!.topics!.find((t) => t.topics.includes('cards.*'))!;
      cards.produce = ['pii.ssn-encrypt'];
      cards.consume = [{ roles: ['fraud-analyst'], rules: ['pii.ssn-reveal'] }];
    },
    { env },
  );
  configFile = join(dir, 'gateway.yaml');
  writeFileSync(configFile, made.yaml);
  gateway = await spawnGateway(made.yaml, { env, wait: ['kafka'] });
});

const ssn = (i: number) => JSON.stringify({ i, ssn: `123-45-${6700 + i}` });

async function produceUntil(topic: string, version: number, from: number): Promise<number> {
  for (let i = from; i < from + 200; i++) {
    assert.equal((await kcat('alice', ['-P', '-t', topic], `${ssn(i)}\n`)).code, 0);
    const last = (await readTopic(infra.kafka, topic, i + 1)).at(-1)!;
    if (JSON.parse(last.value!).ssn.startsWith(`sge1.${version}.`)) return i + 1;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`the gateway never encrypted with version ${version}`);
}

test('rotate and retire through the keyring file reach the running gateway; status counts what was reserved', async () => {
  const topic = `cards.keys-${run}`;
  await createTopics(infra.kafka, [topic]);
  let n = await produceUntil(topic, 1, 0);

  const status = keys('status', '-c', configFile, '--json');
  assert.equal(status.code, 0, status.err);
  const s = JSON.parse(status.out) as { active: number; versions: Array<{ version: number; invocationsReserved: number; advice: string; rules: string[] }> };
  assert.equal(s.active, 1);
  assert.ok(s.versions[0]!.invocationsReserved >= 1, 'the gateway reserved invocations of version 1 in Redis');
  assert.equal(s.versions[0]!.advice, 'ok');
  assert.deepEqual(s.versions[0]!.rules, ['pii.ssn-encrypt']);

  const rotate = keys('rotate', '-c', configFile);
  assert.equal(rotate.code, 0, rotate.err);
  assert.match(rotate.out, /key version 2 is active/);
  n = await produceUntil(topic, 2, n);
  const fran = await kcat('fran', ['-C', '-t', topic, '-o', 'beginning', '-c', String(n), '-e', '-f', '%s\n']);
  assert.deepEqual(fran.stdout.trim().split('\n'), Array.from({ length: n }, (_, i) => ssn(i)), 'envelopes of both versions are revealed');

  assert.match(keys('retire', '-c', configFile, '--version', '2').err, /version 2 is active: rotate first/);
  const retire = keys('retire', '-c', configFile, '--version', '1');
  assert.equal(retire.code, 0, retire.err);
  // the gateway reloads the keyring: version 1's envelopes become unreadable, version 2's stay readable
  const deadline = Date.now() + 20_000;
  let read: string[] = [];
  while (Date.now() < deadline) {
    read = (await kcat('fran', ['-C', '-t', topic, '-o', 'beginning', '-c', String(n), '-e', '-f', '%s\n'])).stdout.trim().split('\n');
    if (JSON.parse(read[0]!).ssn === '[UNREADABLE]') break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const stored = await readTopic(infra.kafka, topic, n);
  read.forEach((line, i) => {
    const v1 = JSON.parse(stored[i]!.value!).ssn.startsWith('sge1.1.');
    assert.equal(JSON.parse(line).ssn, v1 ? '[UNREADABLE]' : `123-45-${6700 + i}`);
  });
  assert.ok(gateway.alive());
});
