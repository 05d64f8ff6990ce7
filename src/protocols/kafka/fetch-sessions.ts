// Incremental fetch sessions (KIP-227), bound to the client connection that opened them.
//
// A broker keeps fetch sessions in one cache keyed by a 32-bit id and serves a session to
// whoever names it: a Fetch that names a session and no topic returns every partition of
// that session. Behind a gateway every client shares the gateway's broker principal, so an
// id seen (or guessed) by another client would read someone else's session unauthorized.
// The gateway therefore remembers which sessions the broker opened on each client
// connection, and which topic partitions each serves: a request naming any other session
// is answered with FETCH_SESSION_ID_NOT_FOUND (the client starts a new session, as after a
// broker restart), and every partition a session serves is authorized again for each
// request before it leaves. The alternative (rewriting every Fetch as a sessionless full
// fetch) would send every partition on every request and lose KIP-227's savings.

export const FETCH_SESSION_ID_NOT_FOUND = 70;
export const INVALID_FETCH_SESSION_EPOCH = 71;

/** How a Fetch request relates to this connection's sessions. */
export type SessionPlan =
  /** no session involved (Fetch before v7, or epoch -1 without an id) */
  | { kind: 'sessionless'; forwardId: 0 }
  /** a full fetch that asks the broker for a new session (epoch 0); `closes` a session of this connection it names */
  | { kind: 'new'; forwardId: number; closes?: number }
  /** closes `closes` (this connection's) and fetches without a session (epoch -1) */
  | { kind: 'close'; forwardId: number; closes: number }
  /** an incremental fetch in a session this connection opened */
  | { kind: 'incremental'; forwardId: number; id: number }
  /** names a session this connection did not open: refused, never forwarded */
  | { kind: 'foreign'; id: number };

export interface SessionPartitions {
  topic: string;
  partitions: number[];
}

/** This connection's fetch sessions: id -> topic -> partitions. */
export class FetchSessions {
  readonly #sessions = new Map<number, Map<string, Set<number>>>();
  readonly #max: number;

  /** `max`: sessions remembered per connection (a client normally has one per broker connection) */
  constructor(max = 8) {
    this.#max = max;
  }

  get size(): number {
    return this.#sessions.size;
  }

  has(id: number): boolean {
    return this.#sessions.has(id);
  }

  plan(sessionId: number | undefined, epoch: number | undefined): SessionPlan {
    const id = sessionId ?? 0;
    const e = epoch ?? -1;
    if (id === 0) return e === 0 ? { kind: 'new', forwardId: 0 } : { kind: 'sessionless', forwardId: 0 };
    const ours = this.#sessions.has(id);
    if (e > 0) return ours ? { kind: 'incremental', forwardId: id, id } : { kind: 'foreign', id };
    // a full fetch naming a session closes it at the broker: only this connection's own;
    // another's id is dropped from the forwarded request (it must not close Bob's session)
    if (!ours) return e === 0 ? { kind: 'new', forwardId: 0 } : { kind: 'sessionless', forwardId: 0 };
    return e === 0 ? { kind: 'new', forwardId: id, closes: id } : { kind: 'close', forwardId: id, closes: id };
  }

  /** The topics an incremental request's session serves (named in this request or earlier). */
  topics(plan: SessionPlan): string[] {
    if (plan.kind !== 'incremental') return [];
    return [...(this.#sessions.get(plan.id)?.keys() ?? [])];
  }

  /** The partitions of `topic` in the session, for answering a refusal per partition. */
  partitions(plan: SessionPlan, topic: string): number[] {
    if (plan.kind !== 'incremental') return [];
    return [...(this.#sessions.get(plan.id)?.get(topic) ?? [])];
  }

  /**
   * After the broker answered: `forwarded` are the partitions the forwarded request named
   * (refused topics were removed from it), `forgotten` those it asked the broker to drop.
   */
  settle(plan: SessionPlan, forwarded: SessionPartitions[], forgotten: SessionPartitions[], errorCode: number, responseSessionId: number): void {
    if (plan.kind === 'foreign' || plan.kind === 'sessionless') return;
    if (plan.kind === 'close' || (plan.kind === 'new' && plan.closes !== undefined)) this.#sessions.delete(plan.closes!);
    if (plan.kind === 'close') return;
    if (plan.kind === 'new') {
      if (errorCode !== 0 || responseSessionId === 0) return;
      const parts = new Map<string, Set<number>>();
      add(parts, forwarded);
      this.#sessions.delete(responseSessionId);
      this.#sessions.set(responseSessionId, parts);
      // the oldest is forgotten: its next use is answered FETCH_SESSION_ID_NOT_FOUND and the client starts afresh
      while (this.#sessions.size > this.#max) this.#sessions.delete(this.#sessions.keys().next().value!);
      return;
    }
    const parts = this.#sessions.get(plan.id);
    if (!parts) return;
    if (errorCode === FETCH_SESSION_ID_NOT_FOUND || errorCode === INVALID_FETCH_SESSION_EPOCH) {
      this.#sessions.delete(plan.id);
      return;
    }
    add(parts, forwarded);
    for (const f of forgotten) {
      const set = parts.get(f.topic);
      if (!set) continue;
      for (const p of f.partitions) set.delete(p);
      if (set.size === 0) parts.delete(f.topic);
    }
  }

  /** Drops a session (its partitions are no longer all allowed, or the broker lost it). */
  forget(id: number): void {
    this.#sessions.delete(id);
  }
}

function add(parts: Map<string, Set<number>>, list: SessionPartitions[]): void {
  for (const t of list) {
    let set = parts.get(t.topic);
    if (!set) parts.set(t.topic, (set = new Set()));
    for (const p of t.partitions) set.add(p);
  }
}
