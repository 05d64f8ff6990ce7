// `streamgate inspect`: dry run of a topic's rules on stdin payloads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';

const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const config = fileURLToPath(new URL('../streamgate.example.yaml', import.meta.url));

function cli(args: string[], input: string) {
  const r = spawnSync(process.execPath, [main, 'inspect', ...args], { input, encoding: 'utf8', env: { ...process.env, HTTP_PORT: '0' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('masks stdin lines with a topic\'s produce rules; summary on stderr; exit 3 when a record is blocked', () => {
  const input = [
    '{"card":"4111 1111 1111 1111","password":"x","mail":"ann@example.com"}',
    'hello 123-45-6789',
    '{"k":"-----BEGIN PRIVATE KEY-----\\nMII\\n-----END PRIVATE KEY-----"}',
    '{"broken": "4111111111111111"',
  ].join('\n') + '\n';
  const r = cli(['--config', config, '--topic', 'customers.eu'], input);
  assert.equal(r.code, 3, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 2, 'the blocked records are not written');
  assert.match(lines[0]!, /^\{"card":"\*\*\*\* \*\*\*\* \*\*\*\* 1111","password":"[0-9a-f]{16}","mail":"tok_v1_[\w-]{22}"\}$/);
  assert.equal(lines[1], 'hello ***-**-****');
  assert.match(r.stderr, /4 records: 2 changed, 2 blocked, 0 unchanged/);
  assert.match(r.stderr, /actions by rule: .*pci\.card-number 1/);
  assert.match(r.stderr, /1 records are not valid JSON/);
  assert.match(r.stderr, /record 3: blocked by rule "secrets\.private-key": private keys must not be published/);
  // fail closed: the topic hashes "$..password" fields, which a value that does not parse cannot show
  assert.match(r.stderr, /record 4: blocked by rule "inspection\.malformedJson": the value is not valid JSON/);
});

test('consume side per role, raw format, and topics without rules', () => {
  const doc = '{"mail":"ann@example.com",\n"card":"4111111111111111"}';
  const analyst = cli(['-c', config, '-t', 'payments.cards', '--side', 'consume', '--role', 'analyst', '--format', 'raw'], doc);
  assert.equal(analyst.code, 0, analyst.stderr);
  assert.match(analyst.stdout, /^\{"mail":"tok_v1_[\w-]{22}",\n"card":"4111111111111111"\}$/);
  const admin = cli(['-c', config, '-t', 'payments.cards', '--side', 'consume', '--role', 'platform-admin', '--format', 'raw'], doc);
  assert.equal(admin.stdout, doc);
  assert.match(admin.stderr, /no inspection rules apply/);
  const none = cli(['-c', config, '-t', 'orders'], 'card 4111111111111111\n');
  assert.equal(none.stdout, 'card 4111111111111111\n');
});

test('usage errors and the detector list', () => {
  const r = cli(['--topic', 'x'], '');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /needs --config/);
  const list = cli(['--list-detectors'], '');
  for (const id of ['payment-card', 'us-ssn', 'email', 'phone', 'iban', 'ipv4', 'ipv6', 'aws-access-key-id', 'aws-secret-key', 'jwt', 'pem-private-key']) {
    assert.match(list.stdout, new RegExp(`^${id} `, 'm'));
  }
});

test('schema topics: JSON data lines written with the catalog schema, inspected, printed as the decoded forwarded value', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-inspect-schema-'));
  const doc = parseYaml(readFileSync(config, 'utf8')) as Record<string, any>;
  doc.schemas = { catalog: { dir: fileURLToPath(new URL('../src/dev/schemas', import.meta.url)), schemas: [{ id: 1, subject: 'customers.avro-value', file: 'customer.avsc' }] } };
  const file = join(dir, 'config.yaml');
  writeFileSync(file, stringifyYaml(doc));
  const data = (i: number) => JSON.stringify({ id: i, email: `ann${i}@example.com`, card: { string: '4111 1111 1111 1111' }, phone: { string: '+1 202 555 0100' }, address: { street: '1 Main St', city: 'Springfield' } });
  const r = cli(['-c', file, '-t', 'customers.avro'], `${data(1)}\n{"id":"not a long"}\n${data(2)}\n`);
  assert.equal(r.code, 3, r.stderr);
  const lines = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
  assert.equal(lines.length, 2);
  assert.deepEqual(lines[0], { id: 1, email: 'ann1@example.com', card: '**** **** **** 1111', phone: '[pii]', address: { street: '[pii]', city: 'Springfield' } });
  assert.match(r.stderr, /3 records: 2 changed, 1 refused/);
  assert.match(r.stderr, /record 2: the data does not fit the Avro schema/);
  const analyst = cli(['-c', file, '-t', 'customers.avro', '--side', 'consume', '--role', 'analyst'], `${data(3)}\n`);
  assert.equal(analyst.code, 0, analyst.stderr);
  assert.match((JSON.parse(analyst.stdout) as { email: string }).email, /^tok_v1_/);
});
