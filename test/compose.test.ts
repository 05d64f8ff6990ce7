import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { DEV_TOPICS } from '../src/dev/stack.ts';

// No Docker engine here: check that docker-compose.yml parses and agrees with the
// Dockerfile, the example config and the local launchers it mirrors.

const read = (f: string) => readFileSync(new URL(`../${f}`, import.meta.url), 'utf8');

interface Service {
  image?: string;
  build?: string;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  command?: string[] | string;
  entrypoint?: string[];
  depends_on?: Record<string, { condition: string }>;
}

test('docker-compose.yml is valid YAML and consistent with the Dockerfile and the example config', () => {
  const compose = parse(read('docker-compose.yml'), { strict: true, uniqueKeys: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };
  const { kafka, 'kafka-init': init, clickhouse, idp, gateway } = compose.services;
  assert.ok(kafka && init && clickhouse && idp && gateway, 'kafka, kafka-init, clickhouse, idp, gateway');

  // Kafka: the official image in KRaft mode, the launcher's version
  const version = /<kafka\.version>(\d[^<]*)<\/kafka\.version>/.exec(read('src/dev/kafka/pom.xml'))![1];
  assert.equal(kafka.image, `apache/kafka:${version}`);
  assert.equal(init.image, kafka.image);
  assert.equal(kafka.environment!.KAFKA_PROCESS_ROLES, 'broker,controller');
  const script = String(init.command);
  for (const t of DEV_TOPICS) assert.ok(script.includes(t), `kafka-init creates ${t}`);

  // the gateway runs the example config from its own image; every variable it sets is one the config reads
  const example = read('streamgate.example.yaml');
  assert.equal(gateway.build, '.');
  assert.ok(gateway.volumes!.some((v) => v.startsWith('./streamgate.example.yaml:/app/streamgate.example.yaml')));
  const dockerfile = read('Dockerfile');
  assert.match(dockerfile, /CMD \["serve", "--config", "\/app\/streamgate\.example\.yaml"\]/);
  for (const name of Object.keys(gateway.environment!)) {
    if (name === 'STREAMGATE_KAFKA_CLIENTS_JAR') continue; // read by the Kafka listener, not the config
    assert.ok(example.includes(`\${${name}`), `the example config reads ${name}`);
  }
  // published ports are the example's defaults and the image's EXPOSE
  for (const [variable, port] of [['HTTP_PORT', 8080], ['KAFKA_LISTENER_PORT', 9192], ['ADMIN_PORT', 9644]] as const) {
    assert.ok(example.includes(`\${${variable}:-${port}}`), `${variable} defaults to ${port}`);
    assert.ok(gateway.ports!.some((p) => p.endsWith(`:${port}:${port}`)), `gateway publishes ${port}`);
    assert.match(dockerfile, new RegExp(`EXPOSE .*\\b${port}\\b`));
  }
  assert.match(dockerfile, /\/readyz/, 'the image health check uses readiness');
  assert.equal(gateway.environment!.OIDC_ISSUER, idp.environment!.IDP_ISSUER, 'tokens carry the issuer the gateway trusts');
  assert.equal(idp.image, gateway.image, 'the dev IdP runs from the gateway image');
  assert.deepEqual(idp.entrypoint, ['node', 'src/dev/idp.ts']);
  for (const v of Object.values(compose.services).flatMap((s) => s.volumes ?? [])) {
    const name = v.split(':')[0]!;
    if (!name.startsWith('.')) assert.ok(name in compose.volumes, `volume ${name} is declared`);
  }
});
