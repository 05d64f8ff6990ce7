import { mkdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Admin } from '@platformatic/kafka';
import { loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { createLogger } from '../log.ts';
import { Gateway } from '../gateway.ts';
import { stopOnSignals } from '../cli/signals.ts';
import { serveReloads } from '../ops/reload.ts';
import { startKafka } from './kafka.ts';
import { startRegistry } from './registry.ts';
import { startKinesis, DEV_STREAMS, createDevStreams } from './kinesis.ts';
import { DEV_CLIENTS, resourceIndicatorFor, startIdp } from './idp.ts';

export interface DevStackOptions {
  httpPort: number;
  kafkaPort: number;
  idpPort: number;
  config: string;
}

/** Topics the walkthrough uses; created up front because the gateway never auto-creates. */
export const DEV_TOPICS = ['payments.cards', 'payments.ledger', 'orders', 'analytics.events', 'payouts.eu', 'customers.avro', 'cards.demo'];
/** registered by the dev stack under customers.avro-value (the topic name strategy) */
const DEMO_SCHEMA = new URL('./schemas/customer.avsc', import.meta.url);

/**
 * `streamgate dev`: a local Kafka (jars from Maven Central, cached under .cache/), the
 * development identity provider and the gateway with the example config, in one process
 * tree that stops together.
 */
export async function runDevStack(opts: DevStackOptions): Promise<void> {
  const dataDir = resolve('.cache/dev');
  mkdirSync(dataDir, { recursive: true });
  // stopped in reverse order on Ctrl-C, or when a later part fails to start
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
  };
  try {
    console.log('starting Kafka (the first run downloads the Kafka jars from Maven Central)...');
    const kafka = await startKafka({ port: opts.kafkaPort, dataDir: resolve(dataDir, 'kafka') });
    stops.push(() => kafka.stop());
    const idp = await startIdp({ port: opts.idpPort }).catch((err: unknown) => {
      throw new Error(`cannot start the development identity provider on port ${opts.idpPort} (use --idp-port): ${(err as Error).message}`);
    });
    stops.push(() => idp.stop());
    await createDevTopics(kafka.bootstrap);
    // a local Kinesis (kinesalite, in memory) behind the gateway's Kinesis listener
    const kinesis = await startKinesis({ port: Number(process.env.KINESALITE_PORT ?? 4567) });
    stops.push(() => kinesis.stop());
    await createDevStreams(kinesis.endpoint);

    // a schema registry (Apicurio, Confluent-compatible API) with the demo schema
    console.log('starting the schema registry (the first run builds it with Maven)...');
    const registry = await startRegistry({ port: Number(process.env.REGISTRY_PORT ?? 8081) });
    stops.push(() => registry.stop());
    const demoSchemaId = await registerDemoSchema(registry.ccompat);

    process.env.KAFKA_BOOTSTRAP = kafka.bootstrap;
    process.env.SCHEMA_REGISTRY_URL ??= registry.ccompat;
    process.env.OIDC_ISSUER = idp.issuer;
    process.env.HTTP_PORT ??= String(opts.httpPort);
    const config = loadConfig(opts.config);
    withDevKinesis(config, kinesis.endpoint);
    const log = createLogger(config.log.level);
    const gateway = await Gateway.start(config, log);
    stops.push(() => gateway.close());
    // edits to the config file (policy, inspection rules, log level) apply without a restart
    const stopReloads = serveReloads(gateway, opts.config, log);
    stops.push(async () => stopReloads());
    printWelcome(config, gateway, kafka.bootstrap, idp.issuer, { url: registry.ccompat, demoSchemaId });
    stopOnSignals(log, stopAll);
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** The example config leaves Kinesis commented out; the dev stack adds it, pointed at its kinesalite, unless the file configures it. */
function withDevKinesis(config: Config, endpoint: string): void {
  const upstream = config.upstream as { kinesis?: unknown };
  if (config.listeners.kinesis || upstream.kinesis) return;
  config.listeners.kinesis = { host: '127.0.0.1', port: Number(process.env.KINESIS_PORT ?? 9567), maxBodyBytes: 8 * 1024 * 1024, maxClockSkewSeconds: 300, requestTimeoutMs: 30_000, allowUnsignedPayload: false };
  // kinesalite accepts any signature; the gateway still signs with these
  upstream.kinesis = { endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, connections: 16, timeoutMs: 10_000 };
}

async function createDevTopics(bootstrap: string): Promise<void> {
  const admin = new Admin({ clientId: 'streamgate-dev', bootstrapBrokers: [bootstrap] });
  try {
    const existing = new Set(await admin.listTopics());
    const missing = DEV_TOPICS.filter((t) => !existing.has(t));
    if (missing.length > 0) await admin.createTopics({ topics: missing, partitions: 3, replicas: 1 });
  } finally {
    await admin.close();
  }
}

/** Registers the demo Avro schema (idempotent: the registry answers the same id for the same schema). */
async function registerDemoSchema(ccompat: string): Promise<number> {
  const schema = readFileSync(DEMO_SCHEMA, 'utf8');
  const res = await fetch(`${ccompat}/subjects/customers.avro-value/versions`, {
    method: 'POST',
    headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
    body: JSON.stringify({ schemaType: 'AVRO', schema }),
  });
  const body = (await res.json()) as { id?: number; message?: string };
  if (!res.ok || typeof body.id !== 'number') throw new Error(`the schema registry refused the demo schema: ${res.status} ${body.message ?? ''}`);
  return body.id;
}

function printWelcome(config: Config, gateway: Gateway, bootstrap: string, issuer: string, registry: { url: string; demoSchemaId: number }): void {
  const http = gateway.addresses.http!;
  const base = `http://${http.host}:${http.port}/v3/clusters/${config.listeners.http!.clusterId}`;
  console.log(`
streamgate is running
  gateway (HTTP produce API)  http://${http.host}:${http.port}
  Kafka broker                ${bootstrap}   (for reading what arrived; clients use the gateway)
  identity provider           ${issuer}
  schema registry             ${registry.url}   (customers.avro-value = schema ${registry.demoSchemaId})
${gateway.addresses.kinesis ? `  gateway (Kinesis API)       http://${gateway.addresses.kinesis.host}:${gateway.addresses.kinesis.port}   (streams: ${DEV_STREAMS.join(', ')}; kinesalite behind it)\n` : ''}  audit spool                 ${resolve(config.audit.spool.dir)}
  identities                  ${DEV_CLIENTS.filter((c) => !c.tokenTtlSeconds).map((c) => `${c.id} [${c.groups.join(', ') || 'no groups'}]`).join(', ')}

Get a token and produce a record with a card number (masked before it reaches Kafka):
  TOKEN=$(npm run -s streamgate -- dev-token alice --issuer ${issuer})
  curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
    ${base}/topics/payments.cards/records \\
    -d '{"key":{"type":"STRING","data":"order-1"},"value":{"type":"JSON","data":{"card":"4111 1111 1111 1111","amount":42}}}'

An Avro record, serialized by the gateway with the registered schema (phone and street are
tagged PII, the card is masked; the broker holds Avro with the same schema id):
  curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
    ${base}/topics/customers.avro/records \\
    -d '{"value":{"subject_name_strategy":"TOPIC_NAME","data":{"id":1,"email":"ann@example.com","card":{"string":"4111 1111 1111 1111"},"phone":{"string":"+1 202 555 0100"},"address":{"street":"1 Main St","city":"Springfield"}}}}'

Ctrl-C stops everything.`);
}

/** client_credentials grant against the development identity provider. */
export async function fetchDevToken(issuer: string, clientId: string, audience: string): Promise<string> {
  const client = DEV_CLIENTS.find((c) => c.id === clientId);
  if (!client) throw new Error(`unknown development identity "${clientId}" (known: ${DEV_CLIENTS.map((c) => c.id).join(', ')})`);
  const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as { token_endpoint: string };
  const res = await fetch(discovery.token_endpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource: resourceIndicatorFor(audience) }),
  });
  const body = (await res.json()) as { access_token?: string; error_description?: string };
  if (!res.ok || !body.access_token) throw new Error(`token request failed: ${body.error_description ?? res.status}`);
  return body.access_token;
}
