import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type RunningRegistry } from '../src/dev/registry.ts';
import { SchemaCatalog } from '../src/schemas/catalog.ts';
import { RegistryClient } from '../src/schemas/registry.ts';
import { catalogSchema, registrySchema } from '../src/schemas/schema.ts';
import { SchemaError } from '../src/schemas/source.ts';

// The registry client against a real schema registry (Apicurio, Confluent-compatible API),
// directly and through an HTTPS front that asks for credentials, counts the requests that
// reach it, and can answer like a broken registry for the paths a test names.
const run = `${process.pid}-${Date.now() % 100000}`;
const dir = mkdtempSync(join(tmpdir(), 'sg-registry-'));
let registry: RunningRegistry;
let front: Server;
let frontUrl: string;
/** requests that reached the front, by path */
const seen: string[] = [];
/** path -> the answer the front gives instead of the registry's */
const broken = new Map<string, { status: number; body: string }>();

const client = (extra: Partial<Parameters<typeof registrySchema.parse>[0]> = {}) => new RegistryClient(registrySchema.parse({ url: registry.ccompat, ...extra }));
const viaFront = (extra: Record<string, unknown> = {}) =>
  new RegistryClient(registrySchema.parse({ url: `${frontUrl}/apis/ccompat/v7`, tls: { ca: join(dir, 'ca.crt') }, auth: { basic: { username: 'gateway', password: 's3cret' } }, retries: 0, ...extra }));

async function post(path: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${registry.ccompat}${path}`, { method: 'POST', headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' }, body: JSON.stringify(body) });
  const answer = (await res.json()) as Record<string, unknown>;
  assert.ok(res.ok, `${path}: ${res.status} ${JSON.stringify(answer)}`);
  return answer;
}

const address = JSON.stringify({ type: 'record', name: 'Address', namespace: 'com.example', fields: [{ name: 'city', type: 'string' }] });
const customer = JSON.stringify({
  type: 'record',
  name: 'Customer',
  namespace: 'com.example',
  fields: [
    { name: 'email', type: 'string', 'confluent:tags': ['PII'] },
    { name: 'home', type: 'com.example.Address' },
  ],
});
const money = 'syntax = "proto3";\npackage shop;\nmessage Money { string currency = 1; int64 units = 2; }\n';
const payment = 'syntax = "proto3";\npackage shop;\nimport "money.proto";\nmessage Payment { string card = 1; Money amount = 2; oneof via { string iban = 3; string wallet = 4; } }\n';
const order = JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', properties: { card: { type: 'string' } } });
const ids: Record<string, number> = {};

before(async () => {
  registry = await startRegistry();
  ids.address = Number((await post(`/subjects/address-${run}/versions`, { schema: address })).id);
  ids.customer = Number((await post(`/subjects/customer-${run}-value/versions`, { schema: customer, references: [{ name: 'com.example.Address', subject: `address-${run}`, version: 1 }] })).id);
  ids.money = Number((await post(`/subjects/money-${run}/versions`, { schema: money, schemaType: 'PROTOBUF' })).id);
  ids.payment = Number((await post(`/subjects/payment-${run}-value/versions`, { schema: payment, schemaType: 'PROTOBUF', references: [{ name: 'money.proto', subject: `money-${run}`, version: 1 }] })).id);
  ids.order = Number((await post(`/subjects/order-${run}-value/versions`, { schema: order, schemaType: 'JSON' })).id);

  // the HTTPS front: basic gateway:s3cret or bearer tok-1, else 401
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=streamgate registry test CA']);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'san.ext']);
  const allowed = new Set([`Basic ${Buffer.from('gateway:s3cret').toString('base64')}`, 'Bearer tok-1']);
  front = createServer({ key: readFileSync(join(dir, 'server.key')), cert: readFileSync(join(dir, 'server.crt')) }, (req, res) => {
    seen.push(req.url ?? '');
    if (!allowed.has(req.headers.authorization ?? '')) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error_code":401,"message":"Unauthorized"}');
      return;
    }
    const fake = broken.get(req.url ?? '');
    if (fake) {
      res.writeHead(fake.status, { 'content-type': 'application/json' }).end(fake.body);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void fetch(`${registry.url}${req.url}`, { method: req.method, headers: { 'content-type': req.headers['content-type'] ?? 'application/json' }, ...(chunks.length ? { body: Buffer.concat(chunks) } : {}) })
        .then(async (up) => res.writeHead(up.status, { 'content-type': 'application/json' }).end(Buffer.from(await up.arrayBuffer())))
        .catch(() => res.writeHead(502).end());
    });
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()));
  frontUrl = `https://127.0.0.1:${(front.address() as AddressInfo).port}`;
});

after(async () => {
  if (front?.listening) front.close();
  await registry?.stop();
});

test('schemas by id with their references resolved: Avro (a named type of another subject), Protobuf (an import), JSON Schema', async () => {
  const c = client();
  try {
    const avro = await c.byId(ids.customer!);
    assert.equal(avro.type, 'AVRO');
    assert.deepEqual(JSON.parse(avro.schema), JSON.parse(customer));
    assert.deepEqual(avro.references, [{ name: 'com.example.Address', subject: `address-${run}`, version: 1 }]);
    assert.deepEqual(JSON.parse(avro.resolved.get('com.example.Address')!.schema), JSON.parse(address));
    const proto = await c.byId(ids.payment!);
    assert.equal(proto.type, 'PROTOBUF');
    assert.match(proto.schema, /message Payment/);
    assert.match(proto.resolved.get('money.proto')!.schema, /message Money/);
    assert.equal(proto.resolved.get('money.proto')!.id, ids.money);
    const json = await c.byId(ids.order!);
    assert.equal(json.type, 'JSON');
    assert.equal(json.resolved.size, 0);
  } finally {
    await c.close();
  }
});

test('subject versions: latest and numbered; registering a known schema gives its id; a breaking change is not compatible', async () => {
  const c = client();
  try {
    const subject = `customer-${run}-value`;
    const latest = await c.version(subject, 'latest');
    assert.equal(latest.id, ids.customer);
    assert.equal(latest.version, 1);
    assert.equal((await c.version(subject, 1)).id, ids.customer);
    const refs = [{ name: 'com.example.Address', subject: `address-${run}`, version: 1 }];
    assert.equal(await c.register(subject, 'AVRO', customer, refs), ids.customer);
    // compatibility under BACKWARD, on a subject without references (Apicurio 2.4.2 cannot check
    // a schema with references: 422, "invalid Avro schema")
    const plain = `plain-${run}-value`;
    const v1 = JSON.stringify({ type: 'record', name: 'Plain', fields: [{ name: 'a', type: 'string' }] });
    const v1id = await c.register(plain, 'AVRO', v1);
    const res = await fetch(`${registry.ccompat}/config/${plain}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ compatibility: 'BACKWARD' }) });
    assert.ok(res.ok, String(res.status));
    // a new field without a default breaks BACKWARD; one with a default does not
    const breaking = JSON.stringify({ type: 'record', name: 'Plain', fields: [{ name: 'a', type: 'string' }, { name: 'b', type: 'string' }] });
    assert.equal(await c.compatible(plain, 'AVRO', breaking), false);
    assert.equal(await c.compatible(plain, 'AVRO', JSON.stringify({ type: 'record', name: 'Plain', fields: [{ name: 'a', type: 'string' }, { name: 'b', type: 'string', default: '' }] })), true);
    await assert.rejects(c.register(plain, 'AVRO', breaking), (e: SchemaError) => e.code === 'SCHEMA_REJECTED' && e.status === 409);
    await assert.rejects(c.register(plain, 'AVRO', '{"type":"record"'), (e: SchemaError) => e.code === 'SCHEMA_REJECTED');
    assert.equal((await c.version(plain, 'latest')).id, v1id);
    await assert.rejects(c.version(subject, 99), (e: SchemaError) => e.code === 'SCHEMA_NOT_FOUND' && e.subject === subject);
    await assert.rejects(c.version(`nobody-${run}`, 'latest'), (e: SchemaError) => e.code === 'SCHEMA_NOT_FOUND');
  } finally {
    await c.close();
  }
});

test('through an HTTPS front with credentials: basic and bearer work, a wrong secret is REGISTRY_REFUSED, an unknown CA is REGISTRY_UNAVAILABLE', async () => {
  const basic = viaFront();
  const bearer = viaFront({ auth: { bearer: 'tok-1' } });
  const wrong = viaFront({ auth: { basic: { username: 'gateway', password: 'nope' } } });
  const anonymous = viaFront({ auth: undefined });
  const untrusting = viaFront({ tls: undefined });
  try {
    assert.equal((await basic.byId(ids.customer!)).id, ids.customer);
    assert.equal((await bearer.byId(ids.order!)).type, 'JSON');
    for (const c of [wrong, anonymous]) await assert.rejects(c.byId(ids.order!), (e: SchemaError) => e.code === 'REGISTRY_REFUSED' && e.status === 401);
    await assert.rejects(untrusting.byId(ids.order!), (e: SchemaError) => e.code === 'REGISTRY_UNAVAILABLE' && !/127\.0\.0\.1/.test(e.message));
    assert.equal(await basic.ready(), true);
    assert.equal(await wrong.ready(), false);
  } finally {
    await Promise.all([basic, bearer, wrong, anonymous, untrusting].map((c) => c.close()));
  }
});

test('each schema is asked for once: concurrent lookups share a request, later ones are served from the cache', async () => {
  const c = viaFront();
  try {
    seen.length = 0;
    const all = await Promise.all(Array.from({ length: 20 }, () => c.byId(ids.payment!)));
    assert.ok(all.every((s) => s === all[0]));
    await c.byId(ids.payment!);
    // the schema and its one reference, once each
    assert.deepEqual(seen.filter((p) => p.includes(`/schemas/ids/${ids.payment}`)).length, 1, seen.join('\n'));
    assert.equal(seen.filter((p) => p.includes(`/subjects/money-${run}/versions/1`)).length, 1, seen.join('\n'));
  } finally {
    await c.close();
  }
});

test('an unknown id is SCHEMA_NOT_FOUND and remembered (bounded, for a while); ids that cannot exist never leave the gateway', async () => {
  const c = viaFront({ negativeCache: { size: 2, ttlMs: 60_000 } });
  try {
    seen.length = 0;
    for (let i = 0; i < 3; i++) await assert.rejects(c.byId(987_654), (e: SchemaError) => e.code === 'SCHEMA_NOT_FOUND' && e.schemaId === 987_654);
    assert.equal(seen.filter((p) => p.endsWith('/schemas/ids/987654')).length, 1, 'asked once, then remembered');
    // the bound: two more unknown ids push the first out, so it is asked again
    for (const id of [987_655, 987_656]) await assert.rejects(c.byId(id));
    await assert.rejects(c.byId(987_654));
    assert.equal(seen.filter((p) => p.endsWith('/schemas/ids/987654')).length, 2);
    seen.length = 0;
    for (const id of [-1, 1.5, 2 ** 31, Number.NaN]) await assert.rejects(c.byId(id), (e: SchemaError) => e.code === 'SCHEMA_NOT_FOUND');
    assert.equal(seen.length, 0);
  } finally {
    await c.close();
  }
});

test('a broken registry: answers that are not schemas, references nesting without end, 5xx after retries', async () => {
  const c = viaFront({ retries: 2 });
  try {
    broken.set('/apis/ccompat/v7/schemas/ids/900001', { status: 200, body: '{"schema":5}' });
    broken.set('/apis/ccompat/v7/schemas/ids/900002', { status: 200, body: '<html>not json</html>' });
    broken.set('/apis/ccompat/v7/schemas/ids/900003', { status: 200, body: '{"schema":"{}","schemaType":"XML"}' });
    // a reference to a version that references itself
    broken.set('/apis/ccompat/v7/schemas/ids/900004', { status: 200, body: JSON.stringify({ schema: '{}', references: [{ name: 'loop', subject: 'loop', version: 1 }] }) });
    broken.set('/apis/ccompat/v7/subjects/loop/versions/1', { status: 200, body: JSON.stringify({ subject: 'loop', version: 1, id: 900005, schema: '{}', references: [{ name: 'loop', subject: 'loop', version: 1 }] }) });
    broken.set('/apis/ccompat/v7/schemas/ids/900006', { status: 503, body: '{}' });
    for (const id of [900001, 900002, 900003, 900004]) await assert.rejects(c.byId(id), (e: SchemaError) => e.code === 'REGISTRY_INVALID_ANSWER', String(id));
    seen.length = 0;
    await assert.rejects(c.byId(900006), (e: SchemaError) => e.code === 'REGISTRY_UNAVAILABLE' && e.status === 503);
    assert.equal(seen.length, 3, 'one request and two retries');
  } finally {
    broken.clear();
    await c.close();
  }
});

test('registry down: schemas already fetched keep coming from the cache, a new id is REGISTRY_UNAVAILABLE, readiness says so', async () => {
  const c = viaFront();
  try {
    await c.byId(ids.customer!);
    await new Promise<void>((r) => front.close(() => r()));
    front.closeAllConnections();
    assert.equal((await c.byId(ids.customer!)).id, ids.customer);
    await assert.rejects(c.byId(ids.order!), (e: SchemaError) => e.code === 'REGISTRY_UNAVAILABLE');
    assert.equal(await c.ready(), false);
  } finally {
    await c.close();
  }
});

test('a local catalog: files with the ids, subjects and versions the configuration gives them, references resolved', async () => {
  const cat = mkdtempSync(join(tmpdir(), 'sg-catalog-'));
  writeFileSync(join(cat, 'address.avsc'), address);
  writeFileSync(join(cat, 'customer.avsc'), customer);
  writeFileSync(join(cat, 'customer-v2.avsc'), customer.replace('"Customer"', '"Customer2"'));
  const config = catalogSchema.parse({
    dir: cat,
    schemas: [
      { id: 7, subject: 'address', file: 'address.avsc' },
      { id: 8, subject: 'customers-value', file: 'customer.avsc', references: [{ name: 'com.example.Address', subject: 'address', version: 1 }] },
      { id: 9, subject: 'customers-value', version: 2, file: 'customer-v2.avsc', references: [{ name: 'com.example.Address', subject: 'address', version: 1 }] },
    ],
  });
  const catalog = new SchemaCatalog(config);
  const s = await catalog.byId(8);
  assert.equal(s.type, 'AVRO');
  assert.equal(s.resolved.get('com.example.Address')!.id, 7);
  assert.equal((await catalog.version('customers-value', 'latest')).id, 9);
  assert.equal((await catalog.version('customers-value', 1)).id, 8);
  await assert.rejects(catalog.byId(10), (e: SchemaError) => e.code === 'SCHEMA_NOT_FOUND' && e.schemaId === 10);
  // configuration errors: a missing file, a reference to an unlisted version, a loop, a path outside the directory, duplicate ids
  assert.throws(() => new SchemaCatalog(catalogSchema.parse({ dir: cat, schemas: [{ id: 1, subject: 'x', file: 'missing.avsc' }] })), /cannot read .*ENOENT/);
  assert.throws(() => new SchemaCatalog(catalogSchema.parse({ dir: cat, schemas: [{ id: 1, subject: 'x', file: 'customer.avsc', references: [{ name: 'a', subject: 'nope', version: 1 }] }] })), /does not list/);
  assert.throws(
    () =>
      new SchemaCatalog(
        catalogSchema.parse({
          dir: cat,
          schemas: [
            { id: 1, subject: 'a', file: 'address.avsc', references: [{ name: 'b', subject: 'b', version: 1 }] },
            { id: 2, subject: 'b', file: 'address.avsc', references: [{ name: 'a', subject: 'a', version: 1 }] },
          ],
        }),
      ),
    /loop/,
  );
  assert.throws(() => new SchemaCatalog(catalogSchema.parse({ dir: cat, schemas: [{ id: 1, subject: 'x', file: '../etc/passwd' }] })), /outside the catalog/);
  assert.equal(catalogSchema.safeParse({ dir: cat, schemas: [{ id: 1, subject: 'x', file: 'a' }, { id: 1, subject: 'y', file: 'b' }] }).success, false);
});
