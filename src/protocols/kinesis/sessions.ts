import { createHash } from 'node:crypto';
import type { Dispatcher } from '../../dispatcher.ts';
import type { ClientInfo, Session } from '../../operation.ts';

interface Entry {
  session: Session;
  lastUsed: number;
  /** epoch ms when the credential expires, once an operation proved it */
  expiresAt: number | undefined;
}

/**
 * Kinesis sessions follow the credential, not the connection: the AWS SDK v3 Kinesis client
 * opens a fresh HTTP/2 connection for every call (disableConcurrentStreams), so a session per
 * connection would be a session per call. A session is keyed by the access key id (SigV4) or
 * the token's hash (bearer) and ends when its credential expires or after `idleMs` without a
 * call, whichever is first (audited as session-start / session-end like every protocol).
 */
export class KinesisSessions {
  readonly #dispatcher: Dispatcher;
  readonly #idleMs: number;
  readonly #max: number;
  readonly #entries = new Map<string, Entry>();
  readonly #bySession = new WeakMap<Session, Entry>();
  readonly #sweep: NodeJS.Timeout;

  constructor(dispatcher: Dispatcher, options: { idleMs?: number; max?: number } = {}) {
    this.#dispatcher = dispatcher;
    this.#idleMs = options.idleMs ?? 300_000;
    this.#max = options.max ?? 100_000;
    this.#sweep = setInterval(() => this.#endDue(Date.now()), Math.min(30_000, this.#idleMs)).unref();
  }

  /** The session of a credential: `key` is the access key id, the bearer token, or '' (none). */
  for(key: string, client: ClientInfo): Session {
    const id = key === '' ? `anonymous:${client.address}` : key.startsWith('SGJ') || key.length < 64 ? key : createHash('sha256').update(key).digest('base64url');
    const now = Date.now();
    const found = this.#entries.get(id);
    if (found && (found.expiresAt === undefined || found.expiresAt > now)) {
      found.lastUsed = now;
      // most recently used last: the first entries are the ones to evict
      this.#entries.delete(id);
      this.#entries.set(id, found);
      return found.session;
    }
    if (found) this.#end(id, found);
    const session = this.#dispatcher.newSession('kinesis', client);
    const entry: Entry = { session, lastUsed: now, expiresAt: undefined };
    this.#entries.set(id, entry);
    this.#bySession.set(session, entry);
    if (this.#entries.size > this.#max) {
      const [oldest, entry] = this.#entries.entries().next().value!;
      this.#end(oldest, entry);
    }
    return session;
  }

  /** The credential of `session` expires at `expiresAt` (epoch seconds): the session ends then. */
  expires(session: Session, expiresAt: number | undefined): void {
    const entry = this.#bySession.get(session);
    if (entry && expiresAt !== undefined) entry.expiresAt = expiresAt * 1000;
  }

  close(): void {
    clearInterval(this.#sweep);
    for (const [id, entry] of this.#entries) this.#end(id, entry);
  }

  #endDue(now: number): void {
    for (const [id, entry] of this.#entries) {
      if (now - entry.lastUsed > this.#idleMs || (entry.expiresAt !== undefined && entry.expiresAt <= now)) this.#end(id, entry);
    }
  }

  #end(id: string, entry: Entry): void {
    this.#entries.delete(id);
    this.#dispatcher.endSession(entry.session);
  }
}
