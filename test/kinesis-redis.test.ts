import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ListStreamsCommand } from '@aws-sdk/client-kinesis';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { getInfra, readAudit, startGateway } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { jitCredentials, kinesisClient, startCapturedKinesis, withKinesis, type CapturedKinesis } from './helpers/kinesis.ts';
import type { Gateway } from '../src/gateway.ts';
import type { RunningIdp } from '../src/dev/idp.ts';

// Two gateway instances sharing the real Redis (state.kind: redis, one prefix for this run)
// in front of one Kinesis: a just-in-time key issued by one works on the other, and a signed
// request replayed to the other instance is refused there.
const run = randomUUID().slice(0, 8);
const PREFIX = `sg-kinesis-test-${run}:`;
let a: Gateway;
let b: Gateway;
let spoolB: string;
let idp: RunningIdp;
let upstream: CapturedKinesis;

before(async () => {
  const infra = await getInfra();
  idp = infra.idp;
  upstream = await startCapturedKinesis();
  const config = () =>
    testConfig(infra, (c) => {
      withKinesis(c, upstream.endpoint);
      c.state = { kind: 'redis', url: 'redis://127.0.0.1:6379', prefix: PREFIX };
    });
  a = await startGateway(config().config);
  const second = config();
  spoolB = second.spoolDir;
  b = await startGateway(second.config);
});

after(async () => {
  const redis = new Redis('redis://127.0.0.1:6379', { lazyConnect: true });
  try {
    await redis.connect();
    const keys = await redis.keys(`${PREFIX}*`);
    if (keys.length > 0) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
});

test('a key issued by one instance signs for the other; a request replayed to the other is refused', async () => {
  const aws = await jitCredentials(`http://127.0.0.1:${a.addresses.http!.port}`, await idp.token('ops'), 'describe:*');
  const onA = `http://127.0.0.1:${a.addresses.kinesis!.port}`;
  const onB = `http://127.0.0.1:${b.addresses.kinesis!.port}`;
  let sent: { headers: Record<string, string>; body: string } | undefined;
  const client = kinesisClient(onA, aws, { http1: true });
  client.middlewareStack.add(
    ((next: (x: { request: { headers: Record<string, string>; body: string } }) => Promise<unknown>) => (args: { request: { headers: Record<string, string>; body: string } }) => {
      sent = { headers: { ...args.request.headers }, body: String(args.request.body) };
      return next(args);
    }) as never,
    { step: 'finalizeRequest', priority: 'low' } as never,
  );
  await client.send(new ListStreamsCommand({}));
  assert.ok(sent);
  const forwarded = upstream.captured.length;
  // the same signed bytes to instance B (as a balancer in front of both would pass them on)
  const replayed = await request(onB, { method: 'POST', headers: sent.headers, body: sent.body });
  const answer = (await replayed.body.json()) as { __type: string; message: string };
  assert.equal(answer.__type, 'InvalidSignatureException');
  assert.match(answer.message, /replay/);
  assert.equal(upstream.captured.length, forwarded);
  assert.ok(readAudit(spoolB).some((r) => r.event === 'operation' && /replay/.test(r.message) && r.subject === 'ops'));
  // a fresh request with the same key works on B
  await kinesisClient(onB, aws).send(new ListStreamsCommand({}));
});
