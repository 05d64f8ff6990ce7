import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ConfigError, parseConfig } from '../src/config/load.ts';

const example = readFileSync(new URL('../streamgate.example.yaml', import.meta.url), 'utf8');

test('the shipped example config is valid and gets defaults', () => {
  const config = parseConfig(example, 'example.yaml');
  assert.equal(config.listeners.http?.port, 8080);
  assert.equal(config.inspection.limits.maxRecordBytes, 1048576);
  assert.equal(config.audit.spool.durability, 'write');
  assert.deepEqual(Object.keys(config.policy.roles), ['payments-writer', 'analyst', 'platform-admin', 'approver', 'fraud-analyst']);
});

test('errors name the file, the line, the path and what was expected', () => {
  const bad = example.replace('port: ${HTTP_PORT:-8080}', 'port: 70000').replace('algorithms: [ES256, RS256]', 'algorithms: [HS256]');
  assert.throws(
    () => parseConfig(bad, 'gw.yaml'),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const lines = err.message.split('\n');
      const portLine = bad.split('\n').findIndex((l) => l.includes('port: 70000')) + 1;
      assert.ok(lines.some((l) => l.startsWith(`gw.yaml:${portLine}: listeners.http.port: `) && l.includes('65535')), err.message);
      assert.ok(lines.some((l) => /^gw\.yaml:\d+: identity\.issuers\[0\]\.algorithms\[0\]: .*expected one of/.test(l)), err.message);
      return true;
    },
  );
});

test('unknown keys, unknown roles and unknown rules are refused', () => {
  assert.throws(() => parseConfig(example.replace('instance: dev-gateway', 'instance: dev-gateway\nlisteners_typo: {}'), 'x'), /Unrecognized key: "listeners_typo"/);
  assert.throws(() => parseConfig(example.replace('roles: [payments-writer]\n      actions: [produce, describe]', 'roles: [payment-writer]\n      actions: [produce, describe]'), 'x'), /unknown role "payment-writer"/);
  assert.throws(() => parseConfig(example.replace('produce: [pci.card-number]', 'produce: [pci.nope]'), 'x'), /unknown rule "pci\.nope"/);
  assert.throws(() => parseConfig('listeners: [', 'broken.yaml'), /broken\.yaml: /);
});

test('environment variables fill ${VAR} and ${VAR:-default}; a missing one is an error', () => {
  process.env.SG_TEST_PORT = '9999';
  const config = parseConfig(example.replace('${HTTP_PORT:-8080}', '${SG_TEST_PORT}'), 'x');
  assert.equal(config.listeners.http?.port, 9999);
  delete process.env.SG_TEST_NOPE;
  assert.throws(() => parseConfig(example.replace('${HTTP_PORT:-8080}', '${SG_TEST_NOPE}'), 'x'), /environment variable SG_TEST_NOPE is not set/);
});
