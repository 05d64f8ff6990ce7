import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Agent, request } from 'undici';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { createTopics, getInfra, readAudit, readTopic, startGateway } from './helpers/infra.ts';
import { testConfig, type ConfigInput } from './helpers/config.ts';
import { createLogger } from '../src/log.ts';
import { serveReloads } from '../src/ops/reload.ts';

// Hot reload: the policy file changes under a running gateway while a keep-alive client stays connected.

const ALLOWING = ['payments.*', 'orders'];
const DENYING = ['payments.*'];

test('a changed policy file applies to the next request on the same connection; an invalid file keeps the running policy', async (t) => {
  const infra = await getInfra();
  await createTopics(infra.kafka, ['orders'], 1);
  const made = testConfig(infra);
  const { config, spoolDir } = made;
  const grant = config.policy.grants[0];
  assert.deepEqual({ roles: grant?.roles, actions: grant?.actions, topics: grant?.topics }, { roles: ['payments-writer'], actions: ['produce', 'describe'], topics: ALLOWING }, 'the example grants payments-writers produce on orders');
  const denying = made.with((c) => {
    c.policy.grants![0]!.topics = DENYING;
  });
  const dir = mkdtempSync(join(tmpdir(), 'sg-reload-'));
  const file = join(dir, 'gateway.yaml');
  // like config management does: write aside, then rename over the watched file
  const write = (text: string) => {
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };
  write(made.yaml);

  const gateway = await startGateway(config);
  const lines: string[] = [];
  const log = createLogger('info', new Writable({ write: (chunk, _enc, cb) => (lines.push(String(chunk)), cb()) }));
  const stop = serveReloads(gateway, file, log);
  t.after(stop);

  const agent = new Agent({ connections: 1 });
  t.after(() => agent.close());
  const token = await infra.idp.token('alice');
  const produce = async () => {
    const res = await request(`http://127.0.0.1:${gateway.addresses.http!.port}/v3/clusters/local/topics/orders/records`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ value: { type: 'JSON', data: { n: 1 } } }),
    });
    await res.body.dump();
    return res.statusCode;
  };
  const waitFor = async (what: string, cond: () => boolean) => {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(cond(), what);
  };

  assert.equal(await produce(), 200);
  const before = gateway.policyVersion;

  write(denying.yaml);
  await waitFor('the new policy is active', () => gateway.policyVersion !== before);
  const after = gateway.policyVersion;
  assert.equal(await produce(), 403, 'orders is denied now');

  const rows = readAudit(spoolDir).filter((r) => r.event === 'operation' && r.resource === 'orders' && r.subject === 'alice');
  assert.equal(rows.length, 2);
  assert.deepEqual(rows.map((r) => r.decision), ['allow', 'deny']);
  assert.deepEqual(rows.map((r) => r.policy_version), [before, after], 'each row carries the policy that decided it');
  assert.equal(rows[0]!.session_id, rows[1]!.session_id, 'the same keep-alive connection (session) before and after the reload');
  const sessions = readAudit(spoolDir).filter((r) => r.event === 'session-start' && r.protocol === 'http');
  assert.equal(sessions.length, 1, 'no new connection');
  assert.ok(lines.some((l) => l.includes('"config reloaded"') && l.includes('"policy"')), lines.join(''));

  // invalid: a grant naming a role that does not exist
  const rejected = lines.length;
  // past the builder, which would refuse it too
  const invalid = parseYaml(denying.yaml) as ConfigInput;
  invalid.policy.grants![0]!.roles = ['payments-writr'];
  write(stringifyYaml(invalid));
  await waitFor('the invalid file is rejected with a log line', () => lines.slice(rejected).some((l) => l.includes('config reload rejected')));
  const line = lines.slice(rejected).find((l) => l.includes('config reload rejected'))!;
  assert.match(line, /unknown role \\"payments-writr\\"/, 'the log line names the problem');
  assert.equal(JSON.parse(line).level, 50, 'logged as an error');
  assert.equal(gateway.policyVersion, after, 'the running policy stays');
  assert.equal(await produce(), 403);

  // listener changes are not applied, and the log says a restart is needed
  const restart = lines.length;
  write(
    made.with((c) => {
      c.listeners.http!.maxBodyBytes = 1024;
    }).yaml,
  );
  await waitFor('the restart warning', () => lines.slice(restart).some((l) => l.includes('need a restart')));
  assert.equal(gateway.config.listeners.http!.maxBodyBytes, 8388608);
  await waitFor('the allowing policy is back', () => gateway.policyVersion === before);
  assert.equal(await produce(), 200, 'the original policy again, still on the same connection');
  assert.equal(readAudit(spoolDir).filter((r) => r.event === 'session-start' && r.protocol === 'http').length, 1);
});

test('a reload swaps the inspection rules: a topic that passed through is masked from the next request on', async () => {
  const infra = await getInfra();
  const topic = 'sandbox.alice.reload';
  await createTopics(infra.kafka, [topic], 1);
  const made = testConfig(infra);
  const gateway = await startGateway(made.config);
  const token = await infra.idp.token('alice');
  const produce = async () => {
    const res = await request(`http://127.0.0.1:${gateway.addresses.http!.port}/v3/clusters/local/topics/${topic}/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ value: { type: 'JSON', data: { card: '4111 1111 1111 1111' } } }),
    });
    assert.equal(res.statusCode, 200, await res.body.text());
  };
  await produce();
  const masking = made.with((c) => {
    c.inspection!.topics!.unshift({ topics: ['sandbox.*'], produce: ['pci.card-number'] });
  });
  const result = await gateway.reload(masking.config);
  assert.deepEqual(result.applied, ['inspection']);
  assert.deepEqual(result.restartNeeded, []);
  await produce();
  const records = await readTopic(infra.kafka, topic, 2);
  assert.deepEqual(records.map((r) => JSON.parse(r.value!).card), ['4111 1111 1111 1111', '**** **** **** 1111']);
});
