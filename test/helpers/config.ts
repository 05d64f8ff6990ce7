import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { z } from 'zod';
import { parseConfig } from '../../src/config/load.ts';
import { configSchema, type Config } from '../../src/config/schema.ts';

/**
 * Gateway configs for tests: the example config as a typed object, edited by plain property
 * assignment and validated by the real parser. Misspelled keys fail to compile (and, through
 * casts, fail validation: every schema object is strict), so an edit cannot silently miss.
 */

/** What a config file may hold: defaulted keys are optional, durations may be "30s". */
export type ConfigInput = z.input<typeof configSchema>;
type KafkaUpstreamInput = Extract<ConfigInput['upstream'], { kafka: unknown }>['kafka'];

/** The test services a config points at (an `Infra` from helpers/infra.ts fits). */
export interface ConfigServices {
  kafka: string;
  idp: { issuer: string };
}

export interface TestConfigOptions {
  /** resolves `${NAME}` references an edit put in (e.g. secrets a child gateway gets in its environment) while validating */
  env?: Record<string, string>;
}

export interface TestConfig {
  /** validated, defaults filled in: what Gateway.start takes */
  config: Config;
  /** the YAML `config` was parsed from, for a gateway in its own process (`${NAME}` references kept) */
  yaml: string;
  /** the audit spool directory, fresh for each testConfig call */
  spoolDir: string;
  /** a copy with more edits, validated again; same spool directory and env */
  with(edit: (c: ConfigInput) => void): TestConfig;
}

let example: Config | undefined;

/**
 * streamgate.example.yaml pointed at the test services: every listener port 0 (a free one),
 * a fresh audit spool, logs silent, no clock tolerance for identity tokens (expiry tests
 * must not wait 5 s), then `edit`. Throws ConfigError when the edited config is invalid.
 */
export function testConfig(services: ConfigServices, edit: (c: ConfigInput) => void = () => {}, options: TestConfigOptions = {}): TestConfig {
  example ??= parseConfig(readFileSync(new URL('../../streamgate.example.yaml', import.meta.url), 'utf8'), 'streamgate.example.yaml');
  const spoolDir = mkdtempSync(join(tmpdir(), 'sg-audit-'));
  // a parsed Config is valid input too (defaults filled in, durations already milliseconds)
  const base: ConfigInput = structuredClone(example);
  base.listeners.http!.port = 0;
  base.listeners.kafka!.port = 0;
  base.listeners.kafka!.brokerPortBase = 0;
  base.listeners.admin!.port = 0;
  kafkaUpstream(base).bootstrap = [services.kafka];
  base.identity.issuers[0]!.issuer = services.idp.issuer;
  base.identity.issuers[0]!.clockToleranceSeconds = 0;
  base.audit!.spool!.dir = spoolDir;
  base.log = { level: 'silent' };
  // the test services have no schema registry: a test that needs one starts it and adds these back
  delete base.schemas;
  base.inspection!.topics = base.inspection!.topics!.filter((t) => !t.schema);
  return build(base, edit, spoolDir, options.env ?? {});
}

function build(base: ConfigInput, edit: (c: ConfigInput) => void, spoolDir: string, env: Record<string, string>): TestConfig {
  const draft = structuredClone(base);
  edit(draft);
  // no folding and no anchors: the text stays greppable and reads like a hand-written file
  const yaml = stringify(draft, { lineWidth: 0, aliasDuplicateObjects: false });
  const config = withEnv(env, () => parseConfig(yaml, 'test-config.yaml'));
  return { config, yaml, spoolDir, with: (more) => build(draft, more, spoolDir, env) };
}

/** parseConfig reads process.env; it is synchronous, so the variables are never seen by anything else. */
function withEnv<T>(env: Record<string, string>, run: () => T): T {
  const saved = Object.keys(env).map((name) => [name, process.env[name]] as const);
  Object.assign(process.env, env);
  try {
    return run();
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

/** upstream.kafka of a draft (the upstream section is a union; the example has kafka). */
export function kafkaUpstream(c: ConfigInput): KafkaUpstreamInput {
  if (!('kafka' in c.upstream)) throw new Error('the config has no upstream.kafka');
  return c.upstream.kafka;
}
