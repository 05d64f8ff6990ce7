import { after } from 'node:test';
import { ensureRedis, type RunningRedis } from '../../src/dev/redis.ts';

let redis: Promise<RunningRedis> | undefined;
// registered at load time (a hook registered inside before/test would run at the end of that hook)
after(async () => {
  if (redis) await (await redis).stop();
});

/** The test Redis URL (npm test's setup already made sure it runs; a file run on its own starts one if needed). */
export function redisUrl(): Promise<string> {
  redis ??= ensureRedis();
  return redis.then((r) => r.url);
}
