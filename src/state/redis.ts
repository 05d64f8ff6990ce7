import { Redis } from 'ioredis';
import { StoreUnavailable, type StateStore } from './store.ts';

/**
 * How long a command may wait, queued while Redis reconnects or unanswered: past it the
 * caller gets StoreUnavailable (fail closed, fast) instead of hanging its client.
 */
const COMMAND_TIMEOUT_MS = 2000;

export interface RedisStoreOptions {
  /** redis://host:port/db */
  url: string;
  /** prepended to every key and channel, so deployments (and tests) sharing one Redis stay apart */
  prefix: string;
}

/** Escapes the glob characters of SCAN MATCH so a prefix is taken literally. */
function globLiteral(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * Shared state for several gateway instances. Commands go over one connection; pub/sub
 * needs a connection of its own (a subscribed Redis connection accepts no other commands),
 * opened on the first subscribe. ioredis reconnects both and re-subscribes by itself.
 */
export class RedisStore implements StateStore {
  readonly #prefix: string;
  readonly #url: string;
  readonly #commands: Redis;
  #subscriber: Redis | undefined;
  readonly #handlers = new Map<string, Set<(message: string) => void>>();

  constructor(options: RedisStoreOptions) {
    this.#url = options.url;
    this.#prefix = options.prefix;
    this.#commands = RedisStore.#connect(options.url);
  }

  static #connect(url: string): Redis {
    // commands wait (queued) through a short reconnect, at most COMMAND_TIMEOUT_MS; lazyConnect off so errors surface early
    const redis = new Redis(url, { maxRetriesPerRequest: 3, enableAutoPipelining: true, commandTimeout: COMMAND_TIMEOUT_MS });
    // without a listener ioredis prints every reconnect error; callers see failures on their commands
    redis.on('error', () => {});
    return redis;
  }

  /** resolves once the command connection answers (start-up check) */
  async ping(): Promise<void> {
    await this.#commands.ping();
  }

  get(key: string): Promise<string | undefined> {
    return this.#unavailable(() => this.#get(key));
  }

  async #get(key: string): Promise<string | undefined> {
    return (await this.#commands.get(this.#prefix + key)) ?? undefined;
  }

  set(key: string, value: string, ttlMs?: number): Promise<void> {
    return this.#unavailable(() => this.#set(key, value, ttlMs));
  }

  async #set(key: string, value: string, ttlMs?: number): Promise<void> {
    if (ttlMs === undefined) await this.#commands.set(this.#prefix + key, value);
    else await this.#commands.set(this.#prefix + key, value, 'PX', Math.max(1, Math.ceil(ttlMs)));
  }

  setIfAbsent(key: string, value: string, ttlMs?: number): Promise<boolean> {
    return this.#unavailable(() => this.#setIfAbsent(key, value, ttlMs));
  }

  async #setIfAbsent(key: string, value: string, ttlMs?: number): Promise<boolean> {
    const reply = ttlMs === undefined
      ? await this.#commands.set(this.#prefix + key, value, 'NX')
      : await this.#commands.set(this.#prefix + key, value, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX');
    return reply === 'OK';
  }

  incrementBy(key: string, by: number): Promise<number> {
    return this.#unavailable(() => this.#commands.incrby(this.#prefix + key, by));
  }

  delete(key: string): Promise<void> {
    return this.#unavailable(() => this.#delete(key));
  }

  async #delete(key: string): Promise<void> {
    await this.#commands.del(this.#prefix + key);
  }

  list(prefix: string): Promise<Array<[string, string]>> {
    return this.#unavailable(() => this.#list(prefix));
  }

  async #list(prefix: string): Promise<Array<[string, string]>> {
    const full = this.#prefix + prefix;
    const keys = new Set<string>();
    let cursor = '0';
    do {
      const [next, batch] = await this.#commands.scan(cursor, 'MATCH', `${globLiteral(full)}*`, 'COUNT', 500);
      for (const k of batch) keys.add(k);
      cursor = next;
    } while (cursor !== '0');
    if (keys.size === 0) return [];
    const names = [...keys];
    const values = await this.#commands.mget(...names);
    const out: Array<[string, string]> = [];
    // a key may expire between SCAN and MGET: it is simply not live any more
    names.forEach((name, i) => {
      const value = values[i];
      if (value !== null && value !== undefined) out.push([name.slice(this.#prefix.length), value]);
    });
    return out;
  }

  publish(channel: string, message: string): Promise<void> {
    return this.#unavailable(() => this.#publish(channel, message));
  }

  async #publish(channel: string, message: string): Promise<void> {
    await this.#commands.publish(this.#prefix + channel, message);
  }

  async subscribe(channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>> {
    const subscriber = this.#subscriber ??= this.#openSubscriber();
    const full = this.#prefix + channel;
    let handlers = this.#handlers.get(full);
    if (!handlers) {
      this.#handlers.set(full, (handlers = new Set()));
      await subscriber.subscribe(full);
    }
    handlers.add(onMessage);
    const set = handlers;
    return async () => {
      set.delete(onMessage);
      if (set.size === 0 && this.#handlers.get(full) === set) {
        this.#handlers.delete(full);
        await subscriber.unsubscribe(full).catch(() => {});
      }
    };
  }

  #openSubscriber(): Redis {
    const subscriber = RedisStore.#connect(this.#url);
    subscriber.on('message', (channel: string, message: string) => {
      for (const handler of this.#handlers.get(channel) ?? []) {
        try {
          handler(message);
        } catch {
          // one failing handler must not starve the others; handlers log their own errors
        }
      }
    });
    return subscriber;
  }

  /** Any failure of a command means the store is not usable right now. */
  async #unavailable<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (err) {
      throw new StoreUnavailable(`the shared state store (Redis) is unavailable: ${(err as Error).message}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    this.#handlers.clear();
    const subscriber = this.#subscriber;
    this.#subscriber = undefined;
    await Promise.all([
      this.#commands.quit().catch(() => this.#commands.disconnect()),
      subscriber?.quit().catch(() => subscriber.disconnect()),
    ]);
  }
}
