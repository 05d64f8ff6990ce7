import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { Admin } from '@platformatic/kafka';
import fc from 'fast-check';
import { generateKeyPair, SignJWT } from 'jose';
import { request } from 'undici';
import { loadMessages, type MessageRegistry } from '../src/protocols/kafka/messages.ts';
import { decodeResponse, encodeRequest } from '../src/protocols/kafka/upstream.ts';
import { Framer } from '../src/protocols/kafka/framing.ts';
import { MAX_VERSION, SUPPORTED } from '../src/protocols/kafka/apis.ts';
import { createTopics, getInfra, readAudit, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { spawnGateway, type GatewayProcess } from './helpers/gateway-process.ts';
import { fuzzRuns, sampleRequest, seeded } from './helpers/fuzz.ts';
import { startTestIssuer, trustIssuer, type TestIssuer } from './helpers/issuer.ts';

// Hostile clients against a gateway in its own process, with the real broker behind it:
// mutated Kafka requests of every accepted API after a real SASL login, garbage before it,
// hostile HTTP bodies and headers, and forged or bent JWTs on both listeners. The gateway
// must answer with a protocol error or close that one connection: it never exits, keeps
// serving well-behaved clients, and its memory stays bounded.

let infra: Infra;
let gw: GatewayProcess;
let reg: MessageRegistry;
let spoolDir: string;
let issuer: TestIssuer;

before(async () => {
  infra = await getInfra();
  reg = await loadMessages();
  // a second issuer the gateway trusts, whose key the test holds: it signs tokens bent one way each
  issuer = await startTestIssuer('fuzz-key-1');
  const made = testConfig(infra, (c) => trustIssuer(c, issuer));
  spoolDir = made.spoolDir;
  gw = await spawnGateway(made.yaml, { wait: ['http', 'kafka'] });
});

after(async () => {
  await gw?.stop();
  await issuer?.close();
});

/** A raw Kafka connection: write frames, collect response frames, notice the close. */
function rawConnection(port: number): Promise<{ socket: Socket; frames: Buffer[]; closed: Promise<void>; next: () => Promise<Buffer> }> {
  return new Promise((resolve, reject) => {
    const frames: Buffer[] = [];
    const waiting: Array<(f: Buffer) => void> = [];
    const socket = connect(port, '127.0.0.1');
    const framer = new Framer(1 << 28, (f) => {
      const copy = Buffer.from(f);
      const w = waiting.shift();
      if (w) w(copy);
      else frames.push(copy);
    });
    socket.on('data', (d) => framer.push(d));
    socket.on('error', () => {});
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('connect', () =>
      resolve({
        socket,
        frames,
        closed,
        next: () =>
          new Promise<Buffer>((res, rej) => {
            const f = frames.shift();
            if (f) return res(f);
            waiting.push(res);
            void closed.then(() => rej(new Error('closed before a response')));
          }),
      }),
    );
    socket.once('error', reject);
  });
}

async function saslLogin(port: number, user: string, token: string) {
  const conn = await rawConnection(port);
  conn.socket.write(encodeRequest(reg, 17, 1, 1, { Mechanism: 'PLAIN' }, 'fuzz'));
  await conn.next();
  conn.socket.write(encodeRequest(reg, 36, 2, 2, { AuthBytes: Buffer.from(`\0${user}\0${token}`) }, 'fuzz'));
  const reply = decodeResponse(reg, 36, 2, await conn.next());
  return { ...conn, reply: { errorCode: reply.ErrorCode as number, message: reply.ErrorMessage as string | null } };
}

function versionsOf(apiKey: number): [number, number] {
  const [lo, hi] = reg.requests.get(apiKey)!.validVersions;
  return [lo, Math.min(hi, MAX_VERSION[apiKey] ?? hi)];
}

/** A request frame of `apiKey`, well formed, then damaged the way `damage` says. */
function hostileFrame(apiKey: number, version: number, seed: number, damage: 'none' | 'flip' | 'cut' | 'lie-long' | 'lie-short'): Buffer {
  const body = sampleRequest(reg.requests.get(apiKey)!, version, seeded(seed));
  const frame = Buffer.from(encodeRequest(reg, apiKey, version, 1000 + (seed % 1000), body, 'fuzz'));
  const rnd = seeded(seed + 7);
  switch (damage) {
    case 'flip':
      for (let i = 0; i < 3; i++) frame[4 + 8 + Math.floor(rnd() * Math.max(1, frame.length - 12))] = Math.floor(rnd() * 256);
      return frame;
    case 'cut': {
      const cut = frame.subarray(0, 12 + Math.floor(rnd() * Math.max(1, frame.length - 12)));
      const out = Buffer.from(cut);
      out.writeInt32BE(out.length - 4, 0);
      return out;
    }
    case 'lie-long':
      frame.writeInt32BE(frame.length - 4 + 1 + Math.floor(rnd() * 64), 0); // more than is sent: the gateway waits for the rest
      return frame;
    case 'lie-short':
      frame.writeInt32BE(Math.max(0, frame.length - 4 - 1 - Math.floor(rnd() * 8)), 0); // the tail becomes the next "frame"
      return frame;
    default:
      return frame;
  }
}

async function stillServes(): Promise<void> {
  assert.ok(gw.alive(), 'the gateway process is alive');
  const admin = new Admin({ clientId: 'after-fuzz', bootstrapBrokers: [`127.0.0.1:${gw.kafka}`], sasl: { mechanism: 'PLAIN', username: 'ops', password: await infra.idp.token('ops') } });
  try {
    await admin.listTopics();
  } finally {
    await admin.close();
  }
  const res = await request(`http://127.0.0.1:${gw.http}/v3/clusters/local/topics/fuzz.alive/records`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await infra.idp.token('mallory')}`, 'content-type': 'application/json' },
    body: '{"value":{"data":1}}',
  });
  await res.body.text();
  assert.equal(res.statusCode, 403, 'the HTTP listener still answers (mallory may not produce)');
}

test('Kafka: mutated requests of every accepted API and version after a real SASL login, and garbage before it', async () => {
  const token = await infra.idp.token('ops');
  const rssBefore = gw.rss();
  const apis = [...SUPPORTED].filter((k) => k !== 17 && k !== 36);
  let sent = 0;
  let answered = 0;
  let closedByGateway = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.constantFrom(...apis), fc.nat(), fc.nat(), fc.constantFrom('none', 'flip', 'flip', 'cut', 'lie-long', 'lie-short') as fc.Arbitrary<'none' | 'flip' | 'cut' | 'lie-long' | 'lie-short'>), { minLength: 1, maxLength: 4 }),
      fc.boolean(),
      async (requests, authenticated) => {
        const conn = authenticated ? await saslLogin(gw.kafka!, 'ops', token) : await rawConnection(gw.kafka!);
        for (const [apiKey, v, seed, damage] of requests) {
          const [lo, hi] = versionsOf(apiKey);
          conn.socket.write(hostileFrame(apiKey, lo + (v % (hi - lo + 1)), seed, damage));
          sent++;
        }
        // an answer, a close, or (a request the broker may legitimately hold, like a long Fetch) neither within the window
        const outcome = await Promise.race([
          conn.next().then(() => 'answered', () => 'closed'),
          conn.closed.then(() => 'closed'),
          new Promise((r) => setTimeout(() => r('pending'), 1500)),
        ]);
        if (outcome === 'answered') answered++;
        if (outcome === 'closed') closedByGateway++;
        conn.socket.destroy();
      },
    ),
    { numRuns: fuzzRuns(80) },
  );
  // random bytes with a plausible length prefix, unauthenticated
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), async (bytes) => {
      const conn = await rawConnection(gw.kafka!);
      const size = Buffer.alloc(4);
      size.writeInt32BE(bytes.length);
      conn.socket.write(Buffer.concat([size, bytes]));
      await Promise.race([conn.closed, new Promise((r) => setTimeout(r, 1000))]);
      conn.socket.destroy();
    }),
    { numRuns: fuzzRuns(60) },
  );
  assert.ok(sent > 80 && answered > 0 && closedByGateway > 0, `sent ${sent}, answered ${answered}, closed ${closedByGateway}`);
  await stillServes();
  const grown = gw.rss() - rssBefore;
  assert.ok(grown < 150 * 1024 * 1024, `RSS grew by ${Math.round(grown / 1e6)} MB`);
  const malformed = readAudit(spoolDir).filter((r) => r.protocol === 'kafka' && /malformed|too small|exceeds|API key/.test(r.meta.violation ?? ''));
  assert.ok(malformed.length > 0, 'malformed requests are audited');
});

test('HTTP: hostile bodies, headers, paths and methods get 4xx answers, never a crash', async () => {
  const token = await infra.idp.token('alice');
  const rssBefore = gw.rss();
  const statuses = new Map<number, number>();
  const body = fc.oneof(
    fc.json(),
    fc.string({ unit: 'binary', maxLength: 2000 }),
    fc.nat({ max: 20_000 }).map((n) => '['.repeat(n) + ']'.repeat(n)), // deep nesting
    fc.nat({ max: 20_000 }).map((n) => `{"value":{"data":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}}`),
    fc.uint8Array({ maxLength: 4000 }).map((b) => Buffer.from(b).toString('latin1')),
    fc.constant('{"records":' + JSON.stringify(Array.from({ length: 3000 }, (_, i) => ({ value: { data: i } }))) + '}'),
  );
  await fc.assert(
    fc.asyncProperty(
      body,
      fc.constantFrom('application/json', 'text/plain', 'application/json; charset=utf-16', '', 'multipart/form-data; boundary=x'),
      fc.constantFrom('POST', 'PUT', 'GET', 'DELETE', 'PATCH'),
      fc.constantFrom('/v3/clusters/local/topics/payments.fuzz/records', '/v3/clusters/local/topics/payments.fuzz/records:batch', '/v3/clusters/local/topics/%00%ff/records', '/v3/clusters/local/topics/' + 'a'.repeat(3000) + '/records', '/../../etc/passwd', '/v3/clusters/x/topics//records'),
      fc.constantFrom(`Bearer ${token}`, 'Bearer', `Bearer ${token}x`, `Basic ${Buffer.from('a:b').toString('base64')}`, `Bearer ${'a'.repeat(7000)}.${'b'.repeat(500)}.c`),
      async (payload, contentType, method, path, authorization) => {
        const res = await request(`http://127.0.0.1:${gw.http}${path}`, {
          method,
          headers: { authorization, ...(contentType ? { 'content-type': contentType } : {}), 'x-fuzz': '%E2%80%AE\t;,=' },
          body: method === 'GET' ? undefined : payload,
        });
        await res.body.dump();
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        assert.ok(res.statusCode < 500, `${method} ${path.slice(0, 60)} -> ${res.statusCode}`);
      },
    ),
    { numRuns: fuzzRuns(150) },
  );
  // headers the server must refuse rather than buffer: huge and many
  const huge = await request(`http://127.0.0.1:${gw.http}/v3/clusters/local/topics/t/records`, { method: 'POST', headers: { 'x-big': 'x'.repeat(64 * 1024) }, body: '{}' }).then(
    async (r) => {
      await r.body.dump();
      return r.statusCode;
    },
    () => 431,
  );
  assert.ok(huge === 431 || huge === 400, `oversized headers are refused (${huge})`);
  await stillServes();
  assert.ok(gw.rss() - rssBefore < 150 * 1024 * 1024, 'RSS stays bounded');
  assert.ok((statuses.get(400) ?? 0) + (statuses.get(401) ?? 0) + (statuses.get(404) ?? 0) > 0, JSON.stringify([...statuses]));
});

test('JWTs: none, HMAC with the public key, wrong kid, expired, not yet valid, wrong issuer or audience, oversized and unicode tricks are refused on HTTP and Kafka', async () => {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: 'eve', groups: ['payments-writers'], aud: 'streamgate', iss: issuer.url };
  const sign = (c: Record<string, unknown>, header: Record<string, unknown> = {}) =>
    // `crit`: let the signer emit extensions the verifier is then expected to refuse
    new SignJWT(c).setProtectedHeader({ alg: 'ES256', kid: issuer.kid, typ: 'JWT', ...header }).sign(issuer.key, { crit: { 'x-unknown': true } });
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const { createHmac } = await import('node:crypto');
  const hmacWithPublicKey = (() => {
    const head = b64({ alg: 'HS256', kid: issuer.kid, typ: 'JWT' });
    const payload = b64({ ...claims, iat: now, exp: now + 600 });
    const sig = createHmac('sha256', JSON.stringify(issuer.publicJwk)).update(`${head}.${payload}`).digest('base64url');
    return `${head}.${payload}.${sig}`;
  })();
  const valid = await sign({ ...claims, iat: now, exp: now + 600 });
  const cases: Array<[string, string]> = [
    ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, exp: now + 600 })}.`],
    ['HS256 keyed with the public key', hmacWithPublicKey],
    ['unknown kid', await sign({ ...claims, iat: now, exp: now + 600 }, { kid: 'not-a-key' })],
    ['expired', await sign({ ...claims, iat: now - 1200, exp: now - 600 })],
    ['not yet valid', await sign({ ...claims, iat: now, nbf: now + 600, exp: now + 1200 })],
    ['wrong issuer', await sign({ ...claims, iss: 'http://evil.example', iat: now, exp: now + 600 })],
    ['issuer with a zero-width space', await sign({ ...claims, iss: `${issuer.url}\u200b`, iat: now, exp: now + 600 })],
    ['wrong audience', await sign({ ...claims, aud: 'other-service', iat: now, exp: now + 600 })],
    ['oversized', await sign({ ...claims, iat: now, exp: now + 600, pad: 'x'.repeat(300_000) })],
    ['signature from another key', await (async () => {
      const other = await generateKeyPair('ES256');
      return new SignJWT({ ...claims, iat: now, exp: now + 600 }).setProtectedHeader({ alg: 'ES256', kid: issuer.kid }).sign(other.privateKey);
    })()],
    ['payload swapped under a valid signature', (() => {
      const [h, , s] = valid.split('.');
      return `${h}.${b64({ ...claims, sub: 'admin', groups: ['platform-admins'], iat: now, exp: now + 600 })}.${s}`;
    })()],
    ['crit header the gateway does not understand', await sign({ ...claims, iat: now, exp: now + 600 }, { crit: ['x-unknown'], 'x-unknown': 1 })],
  ];
  const produce = async (token: string) => {
    const res = await request(`http://127.0.0.1:${gw.http}/v3/clusters/local/topics/payments.jwt-fuzz/records`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{"value":{"data":{"n":1}}}',
    });
    await res.body.dump();
    return res.statusCode;
  };
  await createTopics(infra.kafka, ['payments.jwt-fuzz']);
  // the control: the same issuer's well-formed token is accepted, so every refusal below is the bend's doing
  assert.equal(await produce(valid), 200, 'a valid token of the test issuer is accepted');
  const kafkaOk = await saslLogin(gw.kafka!, 'eve', valid);
  assert.equal(kafkaOk.reply.errorCode, 0, `SASL accepts the valid token: ${kafkaOk.reply.message}`);
  kafkaOk.socket.destroy();

  for (const [name, token] of cases) {
    const status = await produce(token);
    // a 300 KB Authorization header is refused by the HTTP parser itself (header limit)
    if (name === 'oversized') assert.ok(status === 400 || status === 431, `HTTP: ${name} -> ${status}`);
    else assert.equal(status, 401, `HTTP: ${name}`);
    const conn = await saslLogin(gw.kafka!, 'eve', token).catch(() => undefined);
    if (conn) {
      assert.equal(conn.reply.errorCode, 58, `Kafka: ${name} is refused with SASL_AUTHENTICATION_FAILED`);
      conn.socket.destroy();
    }
  }
  // random damage to a valid token: any change refuses it
  await fc.assert(
    fc.asyncProperty(fc.nat(), fc.constantFrom(...'ABCxyz019-_.'.split('')), async (at, ch) => {
      const i = at % valid.length;
      if (valid[i] === ch) return;
      const bent = valid.slice(0, i) + ch + valid.slice(i + 1);
      assert.equal(await produce(bent), 401, `damaged at ${i}`);
    }),
    { numRuns: fuzzRuns(60) },
  );
  const rows = readAudit(spoolDir).filter((r) => r.reason === 'unauthenticated');
  assert.ok(rows.length >= cases.length * 2 - 1, `refusals are audited (${rows.length})`);
  const logs = gw.logs.join('\n');
  for (const [name, token] of cases) assert.ok(!logs.includes(token.split('.')[2] || token), `no token material in logs (${name})`);
  assert.ok(!JSON.stringify(rows).includes(valid.split('.')[2]!), 'no signature in audit rows');
  await stillServes();
});
