import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startKafka, type RunningKafka } from '../src/dev/kafka.ts';
import { createTopics, freePort, getInfra, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { kafkaUpstream, testConfig } from './helpers/config.ts';
import { ensureKcat, plainJwtAuth, runKcat } from './helpers/kcat.ts';

// The gateway's own login to a broker that requires SASL (SCRAM-SHA-256/512 or PLAIN): both
// the Kafka listener's broker connections and the HTTP path's producer use the configured
// credentials, clients keep their OIDC identities, and wrong credentials fail clearly.

let infra: Infra;
let broker: RunningKafka;
let saslBootstrap: string;

before(async () => {
  ensureKcat();
  infra = await getInfra();
  const [port, controllerPort, saslPort] = [await freePort(), await freePort(), await freePort()];
  const jaas = (module: string, extra = '') => `org.apache.kafka.common.security.${module} required${extra};`;
  broker = await startKafka({
    port,
    controllerPort,
    formatArgs: ['--add-scram', 'SCRAM-SHA-256=[name=gw256,password=gw-secret-256]', '--add-scram', 'SCRAM-SHA-512=[name=gw512,password=gw-secret-512]'],
    extraConfig: {
      listeners: `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort},SASL_PLAINTEXT://127.0.0.1:${saslPort}`,
      'advertised.listeners': `PLAINTEXT://127.0.0.1:${port},SASL_PLAINTEXT://127.0.0.1:${saslPort}`,
      'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT',
      'sasl.enabled.mechanisms': 'SCRAM-SHA-256,SCRAM-SHA-512,PLAIN',
      'listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config': jaas('scram.ScramLoginModule'),
      'listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config': jaas('scram.ScramLoginModule'),
      'listener.name.sasl_plaintext.plain.sasl.jaas.config': jaas('plain.PlainLoginModule', ' user_gwplain="gw-secret-plain"'),
    },
  });
  saslBootstrap = `127.0.0.1:${saslPort}`;
  await createTopics(broker.bootstrap, ['payments.sasl-upstream']);
});

after(async () => {
  await broker?.stop();
});

function gatewayWith(mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512', username: string, password: string) {
  return startGateway(
    testConfig({ ...infra, kafka: saslBootstrap }, (c) => {
      kafkaUpstream(c).security = { sasl: { mechanism, username, password } };
    }).config,
  );
}

for (const [mechanism, username, password] of [
  ['SCRAM-SHA-256', 'gw256', 'gw-secret-256'],
  ['SCRAM-SHA-512', 'gw512', 'gw-secret-512'],
  ['PLAIN', 'gwplain', 'gw-secret-plain'],
] as const) {
  test(`${mechanism} to the broker: Kafka clients and HTTP produce through the gateway, consume back`, async () => {
    const gateway = await gatewayWith(mechanism, username, password);
    try {
      assert.equal(gateway.config.upstream && 'kafka' in gateway.config.upstream && gateway.config.upstream.kafka.security?.sasl?.mechanism, mechanism);
      const topic = 'payments.sasl-upstream';
      const alice = await infra.idp.token('alice');
      const tag = `${mechanism}-${Date.now()}`;
      const bootstrap = `127.0.0.1:${gateway.addresses.kafka!.port}`;
      const produced = await runKcat(bootstrap, plainJwtAuth('alice', alice), ['-P', '-t', topic], `{"via":"kafka","tag":"${tag}","card":"4111 1111 1111 1111"}\n`);
      assert.equal(produced.code, 0, produced.stderr);
      const res = await request(`http://127.0.0.1:${gateway.addresses.http!.port}/v3/clusters/local/topics/${topic}/records`, {
        method: 'POST',
        headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
        body: JSON.stringify({ value: { type: 'JSON', data: { via: 'http', tag } } }),
      });
      assert.equal(res.statusCode, 200, await res.body.text());
      const ops = await infra.idp.token('ops');
      const consumed = await runKcat(bootstrap, plainJwtAuth('ops', ops), ['-C', '-t', topic, '-o', 'beginning', '-e', '-f', '%s\n']);
      assert.equal(consumed.code, 0, consumed.stderr);
      const mine = consumed.stdout.split('\n').filter((l) => l.includes(tag));
      assert.equal(mine.length, 2, consumed.stdout);
      assert.ok(mine.some((l) => l.includes('**** **** **** 1111')), 'masked on the way in');
    } finally {
      await gateway.close();
    }
  });
}

test('wrong gateway credentials: readiness says so, clients get retriable errors, and nothing is written', async () => {
  const gateway = await gatewayWith('SCRAM-SHA-256', 'gw256', 'not-the-password');
  try {
    assert.equal(await gateway.upstreamReady(), false);
    const alice = await infra.idp.token('alice');
    const res = await request(`http://127.0.0.1:${gateway.addresses.http!.port}/v3/clusters/local/topics/payments.sasl-upstream/records`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({ value: { type: 'JSON', data: { via: 'http', tag: 'wrong-credentials' } } }),
    });
    const body = await res.body.text();
    assert.ok(res.statusCode === 503 || res.statusCode === 502, `${res.statusCode} ${body}`);
    assert.ok(!body.includes('not-the-password'), 'the password is not echoed');
    const stored = await readTopic(broker.bootstrap, 'payments.sasl-upstream', 100, 3000);
    assert.ok(!stored.some((r) => r.value!.includes('wrong-credentials')));
  } finally {
    await gateway.close();
  }
});
