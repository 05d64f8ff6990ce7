import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryStore, type StateStore } from '../src/state/store.ts';
import { RedisStore } from '../src/state/redis.ts';
import { redisUrl } from './helpers/redis.ts';

/** One contract, run against every StateStore: instances must not care which one they got. */
function contract(name: string, open: () => StateStore | Promise<StateStore>): void {
  describe(name, () => {
    let store: StateStore;
    before(async () => {
      store = await open();
    });
    // leave nothing behind in the shared Redis
    after(async () => {
      for (const [key] of await store.list('')) await store.delete(key);
      await store.close();
    });

    test('get/set/delete round trip; a missing key is undefined', async () => {
      assert.equal(await store.get('a'), undefined);
      await store.set('a', 'one');
      assert.equal(await store.get('a'), 'one');
      await store.set('a', 'two');
      assert.equal(await store.get('a'), 'two');
      await store.delete('a');
      assert.equal(await store.get('a'), undefined);
    });

    test('a key with a ttl expires by itself', async () => {
      await store.set('short', 'x', 150);
      assert.equal(await store.get('short'), 'x');
      await sleep(400);
      assert.equal(await store.get('short'), undefined);
      assert.deepEqual(await store.list('short'), []);
    });

    test('setIfAbsent: the first writer wins, again after delete or expiry', async () => {
      assert.equal(await store.setIfAbsent('once', 'first'), true);
      assert.equal(await store.setIfAbsent('once', 'second'), false);
      assert.equal(await store.get('once'), 'first');
      await store.delete('once');
      assert.equal(await store.setIfAbsent('once', 'third', 150), true);
      await sleep(400);
      assert.equal(await store.setIfAbsent('once', 'fourth'), true);
      assert.equal(await store.get('once'), 'fourth');
    });

    test('list returns the live keys under a prefix, taking glob characters literally', async () => {
      await store.set('grant:1', 'g1');
      await store.set('grant:2', 'g2');
      await store.set('grantee:3', 'no');
      await store.set('g*x:1', 'star');
      await store.set('gAx:1', 'not-star');
      const grants = (await store.list('grant:')).sort();
      assert.deepEqual(grants, [['grant:1', 'g1'], ['grant:2', 'g2']]);
      assert.deepEqual(await store.list('g*x:'), [['g*x:1', 'star']]);
      assert.deepEqual(await store.list('nothing-here:'), []);
    });

    test('publish reaches every subscriber of the channel, not after unsubscribe', async () => {
      const got: string[] = [];
      const other: string[] = [];
      const unsubscribe = await store.subscribe('events', (m) => got.push(m));
      const unsubscribeOther = await store.subscribe('other', (m) => other.push(m));
      await store.publish('events', 'hello');
      for (let i = 0; i < 50 && got.length === 0; i++) await sleep(20);
      assert.deepEqual(got, ['hello']);
      await unsubscribe();
      await store.publish('events', 'after');
      await store.publish('other', 'marker');
      for (let i = 0; i < 50 && other.length === 0; i++) await sleep(20);
      assert.deepEqual(other, ['marker']);
      assert.deepEqual(got, ['hello']);
      await unsubscribeOther();
    });
  });
}

contract('MemoryStore', () => new MemoryStore());
const redisPrefix = `sg-test-${randomUUID()}:`;
contract('RedisStore', async () => new RedisStore({ url: await redisUrl(), prefix: redisPrefix }));

test('two RedisStores with the same prefix share keys and channels; another prefix is isolated', async () => {
  const prefix = `sg-test-${randomUUID()}:`;
  const url = await redisUrl();
  const a = new RedisStore({ url, prefix });
  const b = new RedisStore({ url, prefix });
  const elsewhere = new RedisStore({ url, prefix: `${prefix}other:` });
  try {
    const seen: string[] = [];
    const isolated: string[] = [];
    await b.subscribe('revocations', (m) => seen.push(m));
    await elsewhere.subscribe('revocations', (m) => isolated.push(m));
    await a.set('k', 'v');
    assert.equal(await b.get('k'), 'v');
    assert.equal(await elsewhere.get('k'), undefined);
    await a.publish('revocations', 'cred-1');
    for (let i = 0; i < 50 && seen.length === 0; i++) await sleep(20);
    assert.deepEqual(seen, ['cred-1']);
    assert.deepEqual(isolated, []);
  } finally {
    await a.delete('k');
    await Promise.all([a.close(), b.close(), elsewhere.close()]);
  }
});
