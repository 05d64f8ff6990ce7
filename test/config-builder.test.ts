import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { ConfigError, parseConfig } from '../src/config/load.ts';
import { testConfig } from './helpers/config.ts';

// The test config builder (test/helpers/config.ts): no services needed, only their addresses.

const services = { kafka: '127.0.0.1:19092', idp: { issuer: 'http://127.0.0.1:19400' } };
const example = readFileSync(new URL('../streamgate.example.yaml', import.meta.url), 'utf8');

test('the example config is pointed at the test services, on free ports, with its own spool', () => {
  const { config, spoolDir } = testConfig(services);
  assert.equal(config.listeners.http?.port, 0);
  assert.equal(config.listeners.kafka?.port, 0);
  assert.equal(config.listeners.kafka?.brokerPortBase, 0);
  assert.equal(config.listeners.admin?.port, 0);
  assert.deepEqual('kafka' in config.upstream && config.upstream.kafka.bootstrap, [services.kafka]);
  assert.equal(config.identity.issuers[0]?.issuer, services.idp.issuer);
  assert.equal(config.identity.issuers[0]?.clockToleranceSeconds, 0);
  assert.equal(config.credentials?.clockToleranceSeconds, 5, 'only the identity issuer loses its tolerance');
  assert.equal(config.log.level, 'silent');
  assert.equal(config.audit.spool.dir, spoolDir);
  assert.ok(existsSync(spoolDir));
  assert.notEqual(testConfig(services).spoolDir, spoolDir, 'each config gets a fresh spool');
});

test('edits are applied, validated, and are in the YAML', () => {
  const made = testConfig(services, (c) => {
    c.limits!.authTimeoutMs = 700;
    c.policy.approvals![0]!.maxWait = '2s';
    c.state = { kind: 'redis', prefix: 'builder:' };
  });
  assert.equal(made.config.limits.authTimeoutMs, 700);
  assert.equal(made.config.policy.approvals?.[0]?.maxWait, 2000, 'durations are parsed by the real schema');
  assert.deepEqual(made.config.state, { kind: 'redis', url: 'redis://127.0.0.1:6379', prefix: 'builder:' }, 'defaults of new sections filled in');
  assert.match(made.yaml, /authTimeoutMs: 700/);
  assert.deepEqual(parseConfig(made.yaml), made.config);
});

test('a misspelled key fails to compile and fails validation', () => {
  assert.throws(
    () =>
      testConfig(services, (c) => {
        // @ts-expect-error: no such key (tsc fails if this line ever compiles)
        c.limits!.authTimeoutMS = 700;
      }),
    (err: unknown) => err instanceof ConfigError && /limits: Unrecognized key: "authTimeoutMS"/.test(err.message),
  );
  assert.throws(
    () =>
      testConfig(services, (c) => {
        // @ts-expect-error: a typo inside a new section
        c.listeners.kinesis = { port: 0, maxClockSkewSecond: 3 };
      }),
    /Unrecognized key: "maxClockSkewSecond"/,
  );
  // a value the schema refuses, though well typed
  assert.throws(() => testConfig(services, (c) => void (c.listeners.http!.port = 70000)), /listeners\.http\.port/);
});

test('the parsed example, defaults filled in, stringifies to YAML that parses to the same config', () => {
  const parsed = parseConfig(example, 'example.yaml');
  assert.deepEqual(parseConfig(stringify(parsed), 'again.yaml'), parsed);
  const made = testConfig(services);
  assert.deepEqual(parseConfig(stringify(made.config)), made.config);
  assert.deepEqual(parseConfig(made.yaml), made.config);
});

test('with: a copy with more edits, same spool; the original stays as it was', () => {
  const base = testConfig(services, (c) => {
    c.instance = 'base';
  });
  const derived = base.with((c) => {
    c.inspection!.mode = 'pool';
  });
  assert.equal(derived.config.instance, 'base', 'the earlier edits are kept');
  assert.equal(derived.config.inspection.mode, 'pool');
  assert.equal(derived.spoolDir, base.spoolDir);
  assert.equal(base.config.inspection.mode, 'auto');
  assert.doesNotMatch(base.yaml, /mode: pool/);
});

test('env: ${NAME} references resolve while validating and stay in the YAML', () => {
  delete process.env.SG_BUILDER_KEY;
  const made = testConfig(
    services,
    (c) => {
      c.inspection!.tokenization!.keys[0]!.secret = '${SG_BUILDER_KEY}';
    },
    { env: { SG_BUILDER_KEY: 'builder-secret-0123456789' } },
  );
  assert.equal(made.config.inspection.tokenization?.keys[0]?.secret, 'builder-secret-0123456789');
  assert.match(made.yaml, /secret: \$\{SG_BUILDER_KEY\}/);
  assert.equal(process.env.SG_BUILDER_KEY, undefined, 'the environment is restored');
  assert.throws(() => testConfig(services, (c) => void (c.inspection!.tokenization!.keys[0]!.secret = '${SG_BUILDER_KEY}')), /environment variable SG_BUILDER_KEY is not set/);
});
