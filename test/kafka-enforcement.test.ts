import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createTopics, getInfra, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { rawClient, walkResponse as walk } from './helpers/kafka-gateway.ts';
import type { Gateway } from '../src/gateway.ts';
import type { Identity } from '../src/operation.ts';
import type { Struct } from '../src/protocols/kafka/codec.ts';
import { loadMessages, type MessageRegistry } from '../src/protocols/kafka/messages.ts';
import { API, resourcesOf, SUPPORTED } from '../src/protocols/kafka/apis.ts';
import { ENFORCEMENT, enforcementTable, servedVersions } from '../src/protocols/kafka/enforcement.ts';
import type { UpstreamMessage } from '../src/protocols/kafka/listener.ts';

// The API x version account of SECURITY.md, walked against the real broker: every API the
// gateway serves, at every version it advertises, sent by an identity without any grant
// (mallory) and by one with partial grants (bob, naming one resource he may use and one he
// may not). For each request: nothing that names a resource the identity may not use
// reaches the broker, nothing comes back that names one (except the refusal of the
// client's own request, with its error code), no broker address comes back, and a request
// that named a refused resource gets an error code the client can see.

const run = `${process.pid}-${Date.now() % 100000}`;
const SECRET_TOPIC = `secret.walk-${run}`;
const OPEN_TOPIC = `analytics.walk-${run}`; // bob: consume + describe
const SECRET_GROUP = `secret-walk-${run}`;
const OPEN_GROUP = `analytics-walk-${run}`; // bob: consume + describe
const SECRET_TXN = `secret-txn-${run}`;
const FORBIDDEN = new Set([SECRET_TOPIC, SECRET_GROUP, SECRET_TXN]);
/** APIs answered at the gateway before or during login: their own tests cover them */
const LOGIN_APIS = new Set<number>([API.SaslHandshake, API.SaslAuthenticate, API.ApiVersions]);

let infra: Infra;
let gateway: Gateway;
let reg: MessageRegistry;
let brokerPort: number;

before(async () => {
  infra = await getInfra();
  brokerPort = Number(infra.kafka.split(':')[1]);
  await createTopics(infra.kafka, [SECRET_TOPIC, OPEN_TOPIC], 1);
  reg = await loadMessages();
  gateway = await startGateway(testConfig(infra).config);
});

after(async () => {
  await gateway?.close();
});

test('SECURITY.md holds the Kafka API table rendered from the enforcement declarations', () => {
  assert.deepEqual(Object.keys(ENFORCEMENT).map(Number).sort((a, b) => a - b), [...SUPPORTED].sort((a, b) => a - b), 'one declaration per served API');
  const table = enforcementTable(reg.names, (key) => {
    const codec = reg.requests.get(key);
    return codec ? servedVersions(codec.validVersions, key) : undefined;
  });
  const doc = readFileSync(new URL('../SECURITY.md', import.meta.url), 'utf8');
  const start = doc.indexOf('<!-- kafka-apis:start -->');
  const end = doc.indexOf('<!-- kafka-apis:end -->');
  assert.ok(start >= 0 && end > start, 'SECURITY.md has the kafka-apis markers');
  const current = doc.slice(start + '<!-- kafka-apis:start -->'.length, end).trim();
  if (current !== table) writeFileSync(new URL('../.tmp-kafka-apis.md', import.meta.url), `${table}\n`);
  assert.equal(current, table, 'SECURITY.md differs from src/protocols/kafka/enforcement.ts: the rendered table is in .tmp-kafka-apis.md');
});

type Variant = { topic: string; group: string; txn: string };

const TOPIC_FIELDS = new Set(['Name', 'Topic', 'TopicName']);
const GROUP_FIELDS = new Set(['GroupId', 'Key']);
const TXN_FIELDS = new Set(['TransactionalId', 'V3AndBelowTransactionalId']);
const TOPIC_LISTS = new Set(['TopicNames', 'SubscribedTopicNames']);
const GROUP_LISTS = new Set(['Groups', 'GroupIds', 'GroupsNames', 'CoordinatorKeys']);
const TXN_LISTS = new Set(['TransactionalIds']);
const INT_LISTS = new Set(['PartitionIndexes', 'Partitions']);
const SETTINGS: Record<string, unknown> = {
  Acks: -1,
  TimeoutMs: 5000,
  timeoutMs: 5000,
  MaxWaitMs: 100,
  MinBytes: 1,
  MaxBytes: 1 << 20,
  PartitionMaxBytes: 1 << 20,
  SessionTimeoutMs: 6000,
  RebalanceTimeoutMs: 6000,
  ProtocolType: 'consumer',
  ReplicaId: -1,
  SessionEpoch: -1,
  NumPartitions: 1,
  ReplicationFactor: 1,
  ResourceType: 2,
  KeyType: 0,
  ValidateOnly: true,
  validateOnly: true,
};

const names = (s: Struct) => Object.keys(s).some((k) => TOPIC_FIELDS.has(k) || GROUP_FIELDS.has(k) || TXN_FIELDS.has(k) || k === 'ResourceName');

/** A request struct from the definitions' defaults with every resource field filled from `variants` (one list element per variant). */
function fill(s: Struct, variants: Variant[], v: Variant): Struct {
  for (const key of Object.keys(s)) {
    const value = s[key];
    const proto = (s as Record<string, unknown>)[`__proto_${key}`];
    if (key in SETTINGS) s[key] = SETTINGS[key];
    else if (TOPIC_FIELDS.has(key) || key === 'ResourceName') s[key] = v.topic;
    else if (GROUP_FIELDS.has(key)) s[key] = v.group;
    else if (TXN_FIELDS.has(key)) s[key] = v.txn;
    else if (typeof proto === 'function') {
      const sample = (proto as () => Struct)();
      s[key] = names(sample) ? variants.map((w) => fill((proto as () => Struct)(), variants, w)) : [fill(sample, variants, v)];
    } else if (Array.isArray(value) || value === null) {
      if (TOPIC_LISTS.has(key)) s[key] = variants.map((w) => w.topic);
      else if (GROUP_LISTS.has(key)) s[key] = variants.map((w) => w.group);
      else if (TXN_LISTS.has(key)) s[key] = variants.map((w) => w.txn);
      else if (INT_LISTS.has(key)) s[key] = [0];
    }
  }
  return s;
}

async function login(who: string): Promise<Awaited<ReturnType<typeof rawClient>>> {
  const client = await rawClient(gateway.addresses.kafka!.port);
  await client.request(17, 1, { Mechanism: 'OAUTHBEARER' });
  const auth = await client.request(36, 2, { AuthBytes: Buffer.from(`n,,\x01auth=Bearer ${await infra.idp.token(who)}\x01\x01`) });
  assert.equal(auth.ErrorCode, 0);
  return client;
}

function identity(who: string, groups: string[]): Identity {
  return { subject: who, issuer: infra.idp.issuer, roles: groups.includes('analysts') ? ['analyst'] : [], groups, claims: { sub: who } };
}

async function walkAs(who: string, groups: string[], variants: Variant[]): Promise<{ problems: string[]; sent: number; refused: number }> {
  const id = identity(who, groups);
  const may = (kind: 'topic' | 'group' | 'transactional-id' | 'cluster' | 'stream', name: string, action: 'produce' | 'consume' | 'describe' | 'admin') =>
    gateway.permits(id, action, { kind, name });
  const problems: string[] = [];
  let sent = 0;
  let refused = 0;
  const frames: Buffer[] = [];
  const onUpstream = (m: unknown) => {
    const f = (m as UpstreamMessage).frame;
    if (f) frames.push(Buffer.from(f));
  };
  subscribe('streamgate:kafka:upstream', onUpstream);
  let client = await login(who);
  try {
    const advertised = (await client.request(18, 3, { ClientSoftwareName: 'walk', ClientSoftwareVersion: '1' })).ApiKeys as Struct[];
    for (const a of advertised) {
      const key = a.ApiKey as number;
      if (LOGIN_APIS.has(key)) continue;
      for (let version = a.MinVersion as number; version <= (a.MaxVersion as number); version++) {
        const where = `${reg.names.get(key)} v${version} as ${who}`;
        const body = fill(reg.requests.get(key)!.defaults(version), variants, variants[0]!);
        const namedRefused = resourcesOf(key, version, body).filter((n) => !may(n.kind, n.name, n.action));
        frames.length = 0;
        sent++;
        if (namedRefused.length > 0) refused++;
        let res: Struct;
        try {
          res = await Promise.race([
            client.request(key, version, body),
            new Promise<never>((_r, reject) => setTimeout(() => reject(new Error('no answer in 15 s')), 15_000)),
          ]);
        } catch (err) {
          problems.push(`${where}: ${(err as Error).message}`);
          client.close();
          client = await login(who);
          continue;
        }
        // 1. what reached the broker names nothing the identity may not use
        for (const f of frames) {
          const apiKey = f.readInt16BE(4);
          const v = f.readInt16BE(6);
          const codec = reg.requests.get(apiKey)!;
          const { offset } = reg.requestHeader.decode(f, 4, codec.isFlexible(v) ? 2 : 1);
          const sent = codec.decode(f, offset, v).value;
          for (const n of resourcesOf(apiKey, v, sent)) if (!may(n.kind, n.name, n.action)) problems.push(`${where}: forwarded ${n.action} on ${n.kind} ${n.name}`);
          if (apiKey === API.Metadata && (v < 4 || sent.AllowAutoTopicCreation === true)) problems.push(`${where}: Metadata v${v} forwarded with auto-creation`);
          if (apiKey === API.Fetch && (sent.SessionId ?? 0) !== 0) problems.push(`${where}: a fetch session id was forwarded`);
        }
        // 2. what came back names nothing it may not see, outside the refusal of its own request
        const errors = walk(res, (s, hasError) => {
          for (const [k, x] of Object.entries(s)) {
            if (typeof x === 'string' && FORBIDDEN.has(x) && (TOPIC_FIELDS.has(k) || GROUP_FIELDS.has(k) || TXN_FIELDS.has(k) || k === 'ResourceName') && !hasError) problems.push(`${where}: the answer names ${x} (${k}) without an error`);
            if (k === 'Port' && x === brokerPort) problems.push(`${where}: the answer carries the broker port`);
            if (typeof x === 'string' && x.includes(`:${brokerPort}`)) problems.push(`${where}: ${k} carries the broker address`);
          }
        });
        // 3. a refusal is visible in the protocol's own terms
        if (namedRefused.length > 0 && !errors) problems.push(`${where}: ${namedRefused.map((n) => n.name).join(', ')} refused without an error code`);
      }
    }
  } finally {
    unsubscribe('streamgate:kafka:upstream', onUpstream);
    client.close();
  }
  return { problems, sent, refused };
}

test('every API and advertised version, as an identity without grants: nothing forwarded that names a resource, nothing revealed, every refusal visible', async () => {
  const { problems, sent, refused } = await walkAs('mallory', [], [{ topic: SECRET_TOPIC, group: SECRET_GROUP, txn: SECRET_TXN }]);
  assert.deepEqual(problems, []);
  assert.ok(sent > 150, `every API x version was sent (${sent})`);
  assert.ok(refused > 120, `most of them named a refused resource (${refused})`);
});

test('every API and advertised version, as an identity with partial grants naming an allowed and a refused resource', async () => {
  const { problems, sent } = await walkAs('bob', ['analysts'], [
    { topic: OPEN_TOPIC, group: OPEN_GROUP, txn: SECRET_TXN },
    { topic: SECRET_TOPIC, group: SECRET_GROUP, txn: SECRET_TXN },
  ]);
  assert.deepEqual(problems, []);
  assert.ok(sent > 150, `every API x version was sent (${sent})`);
});
