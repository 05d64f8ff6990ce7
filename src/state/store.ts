/**
 * Shared state for just-in-time credentials and approvals: revocations, issued-credential
 * metadata, approval requests and grants. One instance keeps it in memory (the default);
 * several instances share it through Redis (src/state/redis.ts). Values are strings (JSON
 * by convention); every change other instances must react to is also published on a channel.
 */
export interface StateStore {
  get(key: string): Promise<string | undefined>;
  /** `ttlMs` makes the key expire by itself (grants, pending requests, revocations of short-lived credentials) */
  set(key: string, value: string, ttlMs?: number): Promise<void>;
  /** sets only when the key does not exist; true when it was set (one approval request per operation, first decision wins) */
  setIfAbsent(key: string, value: string, ttlMs?: number): Promise<boolean>;
  delete(key: string): Promise<void>;
  /** adds `by` to the integer at `key` (0 when absent), atomically across instances; the new value */
  incrementBy(key: string, by: number): Promise<number>;
  /** every live key under `prefix`, with its value */
  list(prefix: string): Promise<Array<[string, string]>>;
  publish(channel: string, message: string): Promise<void>;
  /** resolves once the subscription is active; the returned function unsubscribes */
  subscribe(channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** The store cannot be reached (Redis down or not answering): callers fail closed with "try again". */
export class StoreUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailable';
  }
}

interface Entry {
  value: string;
  expiresAt: number;
}

/** Single-instance store: a Map with lazy expiry and in-process channels. */
export class MemoryStore implements StateStore {
  readonly #entries = new Map<string, Entry>();
  readonly #channels = new Map<string, Set<(message: string) => void>>();

  #live(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry && entry.expiresAt <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  get(key: string): Promise<string | undefined> {
    return Promise.resolve(this.#live(key)?.value);
  }

  set(key: string, value: string, ttlMs?: number): Promise<void> {
    this.#entries.set(key, { value, expiresAt: ttlMs === undefined ? Infinity : Date.now() + ttlMs });
    return Promise.resolve();
  }

  setIfAbsent(key: string, value: string, ttlMs?: number): Promise<boolean> {
    if (this.#live(key)) return Promise.resolve(false);
    this.#entries.set(key, { value, expiresAt: ttlMs === undefined ? Infinity : Date.now() + ttlMs });
    return Promise.resolve(true);
  }

  delete(key: string): Promise<void> {
    this.#entries.delete(key);
    return Promise.resolve();
  }

  incrementBy(key: string, by: number): Promise<number> {
    const entry = this.#live(key);
    const next = (entry ? Number(entry.value) : 0) + by;
    this.#entries.set(key, { value: String(next), expiresAt: entry?.expiresAt ?? Infinity });
    return Promise.resolve(next);
  }

  list(prefix: string): Promise<Array<[string, string]>> {
    const out: Array<[string, string]> = [];
    for (const key of this.#entries.keys()) {
      if (!key.startsWith(prefix)) continue;
      const entry = this.#live(key);
      if (entry) out.push([key, entry.value]);
    }
    return Promise.resolve(out);
  }

  publish(channel: string, message: string): Promise<void> {
    // delivered asynchronously, as Redis would: a publisher never runs subscribers inside its own call
    for (const handler of this.#channels.get(channel) ?? []) queueMicrotask(() => handler(message));
    return Promise.resolve();
  }

  subscribe(channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>> {
    let handlers = this.#channels.get(channel);
    if (!handlers) this.#channels.set(channel, (handlers = new Set()));
    handlers.add(onMessage);
    return Promise.resolve(() => {
      handlers.delete(onMessage);
      return Promise.resolve();
    });
  }

  close(): Promise<void> {
    this.#channels.clear();
    return Promise.resolve();
  }
}
