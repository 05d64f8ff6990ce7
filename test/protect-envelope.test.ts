// Envelope field encryption (src/protect/envelope.ts): AES-256-GCM bound to its field,
// key versions, and the invocation budget that refuses an exhausted key, shared through the
// real state stores (memory, and Redis for several instances).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { EnvelopeCipher, EnvelopeError, InvocationBudget } from '../src/protect/envelope.ts';
import { MemoryStore } from '../src/state/store.ts';
import { RedisStore } from '../src/state/redis.ts';
import { fuzzRuns } from './helpers/fuzz.ts';

const k1 = { version: 1, key: randomBytes(32) };
const k2 = { version: 2, key: randomBytes(32) };
const aad = Buffer.from('rule:pii.email|$.email');

test('round trip, bound to its field; versions are kept readable; tampering, other fields and retired keys are refused with a code', async () => {
  const cipher = new EnvelopeCipher([k1, k2], 1, new InvocationBudget(new MemoryStore()));
  const e = await cipher.encrypt(Buffer.from('ann@example.com'), aad);
  assert.match(e, /^sge1\.1\.[A-Za-z0-9_-]+$/);
  assert.notEqual(await cipher.encrypt(Buffer.from('ann@example.com'), aad), e, 'random nonces: equal values give different envelopes');
  assert.equal(cipher.decrypt(e, aad).toString(), 'ann@example.com');
  const code = (f: () => unknown) => {
    try {
      f();
    } catch (err) {
      return (err as EnvelopeError).code;
    }
    return 'none';
  };
  assert.equal(code(() => cipher.decrypt(e, Buffer.from('rule:pii.email|$.other'))), 'AUTHENTICATION_FAILED');
  const body = Buffer.from(e.split('.')[2]!, 'base64url');
  body[20]! ^= 1;
  assert.equal(code(() => cipher.decrypt(`sge1.1.${body.toString('base64url')}`, aad)), 'AUTHENTICATION_FAILED');
  assert.equal(code(() => cipher.decrypt('sge1.1.!!', aad)), 'MALFORMED');
  assert.equal(code(() => cipher.decrypt('sge1.9.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', aad)), 'UNKNOWN_KEY');
  // rotation: version 2 active, version 1 still readable; retiring version 1 makes its envelopes unreadable
  const rotated = new EnvelopeCipher([k1, k2], 2, new InvocationBudget(new MemoryStore()));
  assert.match(await rotated.encrypt(Buffer.from('x'), aad), /^sge1\.2\./);
  assert.equal(rotated.decrypt(e, aad).toString(), 'ann@example.com');
  const retired = new EnvelopeCipher([k2], 2, new InvocationBudget(new MemoryStore()));
  assert.equal(code(() => retired.decrypt(e, aad)), 'UNKNOWN_KEY');
});

test('property: any bytes round-trip', async () => {
  const cipher = new EnvelopeCipher([k1], 1, new InvocationBudget(new MemoryStore()));
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 2000 }), fc.uint8Array({ maxLength: 64 }), async (plain, ad) => {
      assert.deepEqual(new Uint8Array(cipher.decrypt(await cipher.encrypt(plain, ad), ad)), plain);
    }),
    { numRuns: fuzzRuns(200) },
  );
});

test('the invocation budget: an exhausted key refuses to encrypt, the limit is shared by every instance (Redis), rotation is signalled', async () => {
  const prefix = `sg-test-${randomUUID()}:`;
  const a = new RedisStore({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', prefix });
  const b = new RedisStore({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', prefix });
  after(() => Promise.all([a.close(), b.close()]));
  // two instances, a limit of 100 invocations, reserved 16 at a time
  const one = new EnvelopeCipher([k1], 1, new InvocationBudget(a, { limit: 100, block: 16, rotateAt: 0.5 }));
  const two = new EnvelopeCipher([k1], 1, new InvocationBudget(b, { limit: 100, block: 16, rotateAt: 0.5 }));
  let done = 0;
  let refused = 0;
  await Promise.all(
    Array.from({ length: 160 }, async (_, i) => {
      try {
        await (i % 2 ? one : two).encrypt(Buffer.from('v'), aad);
        done++;
      } catch (err) {
        assert.equal((err as EnvelopeError).code, 'KEY_EXHAUSTED');
        refused++;
      }
    }),
  );
  assert.ok(done <= 100, `${done} encryptions under a limit of 100`);
  assert.ok(done >= 100 - 2 * 16, `${done}: at most one unused block per instance is lost`);
  assert.equal(done + refused, 160);
  assert.ok(one.shouldRotate() || two.shouldRotate(), 'past half the limit, rotation is due');
  await assert.rejects(one.encrypt(Buffer.from('v'), aad), /make a new key version active/);
});
