import type { StateConfig } from './schema.ts';
import { MemoryStore, type StateStore } from './store.ts';
import { RedisStore } from './redis.ts';

/** The store the config names; one per gateway, shared by JIT credentials and approvals. */
export function openStateStore(config: StateConfig): StateStore {
  return config.kind === 'redis' ? new RedisStore({ url: config.url, prefix: config.prefix }) : new MemoryStore();
}
