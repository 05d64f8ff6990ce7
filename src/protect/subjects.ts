// Crypto-shredding (issue 22): an envelope rule with `subject` encrypts each value under a key of
// its record's data subject (a field such as customer_id), a random AES-256 key created the
// first time the subject is seen and kept in the state store every instance shares, wrapped by
// a key derived from `protection.subjects.secret`. Erasing the subject deletes that key: every
// value encrypted for the subject, in every copy of the log, becomes unreadable at once, while
// other subjects' values stay readable. The right-to-erasure answer for an immutable log.
//
// Subjects are named by an id (`sid`): HMAC-SHA256 of the subject value under a key derived from
// the same secret, 128 bits in base64url. The envelope carries the sid, never the subject.
//
// The inspection threads take keys synchronously from a SubjectKeyCache (the engine call is
// synchronous); what a thread lacks is fetched (or created) by the accept thread and the task
// runs again with it (NeedSubjectKeys), like the schemas of schema-registry values.

import { createCipheriv, createDecipheriv, createHmac, createSecretKey, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import type { StateStore } from '../state/store.ts';

export const SUBJECT_PREFIX = 'sgs1.';
const STORE_PREFIX = 'subjectkey:';
/** how long a thread trusts a key (or its absence) it was given: an erasure elsewhere takes effect within this */
export const SUBJECT_KEY_TTL_MS = 30_000;
const CACHE_MAX = 100_000;

function derive(secret: string, use: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'streamgate/subjects/v1', use, 32));
}

/** The subject ids of one `protection.subjects.secret`. */
export class SubjectIds {
  readonly #key: Buffer;

  constructor(secret: string) {
    this.#key = derive(secret, 'sid');
  }

  /** the id of subject value `subject` (22 base64url characters) */
  of(subject: string): string {
    return createHmac('sha256', this.#key).update(subject, 'utf8').digest().subarray(0, 16).toString('base64url');
  }
}

/** A subject key a thread needs: `create` for encryption (a subject seen the first time gets one). */
export interface SubjectKeyNeed {
  sid: string;
  create: boolean;
}

/** Thrown out of an engine call whose values need subject keys the thread does not have yet. */
export class NeedSubjectKeys extends Error {
  override name = 'NeedSubjectKeys';
  readonly needs: SubjectKeyNeed[];
  constructor(needs: SubjectKeyNeed[]) {
    super(`${needs.length} subject keys are needed`);
    this.needs = needs;
  }
}

/**
 * What a thread is given: the subject's current key and its id (a subject written again after an
 * erasure gets a new key: the id tells its envelopes from the erased key's), or null when the
 * subject has no key (erased, or never written).
 */
export type SubjectKeyEntry = [sid: string, key: { kid: string; key: Uint8Array } | null];

/** A subject key as a thread uses it. */
export interface SubjectKey {
  kid: string;
  key: KeyObject;
}

/**
 * A thread's subject keys, trusted for SUBJECT_KEY_TTL_MS, and forgotten at once when the
 * instance's erasure epoch (a SharedArrayBuffer counter every thread reads) moves.
 */
export class SubjectKeyCache {
  readonly #entries = new Map<string, { key: SubjectKey | null; until: number }>();
  readonly #epoch: Int32Array;
  #seen = 0;

  constructor(epoch: SharedArrayBuffer = new SharedArrayBuffer(4)) {
    this.#epoch = new Int32Array(epoch);
  }

  get epochBuffer(): SharedArrayBuffer {
    return this.#epoch.buffer as SharedArrayBuffer;
  }

  /** A subject was erased on this instance (or another said so): every thread drops what it holds. */
  bumpEpoch(): void {
    Atomics.add(this.#epoch, 0, 1);
  }

  /** the key, null when erased, undefined when this thread does not know (ask) */
  get(sid: string): SubjectKey | null | undefined {
    const epoch = Atomics.load(this.#epoch, 0);
    if (epoch !== this.#seen) {
      this.#seen = epoch;
      this.#entries.clear();
    }
    const e = this.#entries.get(sid);
    if (!e) return undefined;
    if (e.until < Date.now()) {
      this.#entries.delete(sid);
      return undefined;
    }
    return e.key;
  }

  put(entries: readonly SubjectKeyEntry[]): void {
    if (this.#entries.size + entries.length > CACHE_MAX) this.#entries.clear();
    const until = Date.now() + SUBJECT_KEY_TTL_MS;
    for (const [sid, key] of entries) this.#entries.set(sid, { key: key ? { kid: key.kid, key: createSecretKey(key.key) } : null, until });
  }

  forget(sid: string): void {
    this.#entries.delete(sid);
  }

  clear(): void {
    this.#entries.clear();
  }
}

/** The subject keys in the state store (accept thread): fetched, created once across instances, erased. */
export class SubjectKeyStore {
  readonly #store: Pick<StateStore, 'get' | 'setIfAbsent' | 'delete'>;
  readonly #wrap: Buffer;
  readonly ids: SubjectIds;

  constructor(secret: string, store: Pick<StateStore, 'get' | 'setIfAbsent' | 'delete'>) {
    this.#store = store;
    this.#wrap = derive(secret, 'wrap');
    this.ids = new SubjectIds(secret);
  }

  /** The keys of `needs`; a missing one is created where asked (the first instance to store it wins). */
  async resolve(needs: readonly SubjectKeyNeed[]): Promise<SubjectKeyEntry[]> {
    const unique = new Map<string, boolean>();
    for (const n of needs) unique.set(n.sid, (unique.get(n.sid) ?? false) || n.create);
    return Promise.all(
      [...unique].map(async ([sid, create]): Promise<SubjectKeyEntry> => {
        let stored = await this.#store.get(STORE_PREFIX + sid);
        if (stored === undefined && create) {
          const kid = randomBytes(6).toString('base64url');
          await this.#store.setIfAbsent(STORE_PREFIX + sid, `${kid}.${this.#seal(sid, kid, randomBytes(32))}`);
          stored = await this.#store.get(STORE_PREFIX + sid);
        }
        if (stored === undefined) return [sid, null];
        const [kid = '', wrapped = ''] = stored.split('.');
        return [sid, { kid, key: this.#open(sid, kid, wrapped) }];
      }),
    );
  }

  /** Deletes the subject's key: whether there was one. */
  async erase(sid: string): Promise<boolean> {
    const had = (await this.#store.get(STORE_PREFIX + sid)) !== undefined;
    await this.#store.delete(STORE_PREFIX + sid);
    return had;
  }

  #seal(sid: string, kid: string, key: Uint8Array): string {
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.#wrap, nonce).setAAD(Buffer.from(`${sid}.${kid}`));
    return Buffer.concat([nonce, c.update(key), c.final(), c.getAuthTag()]).toString('base64url');
  }

  #open(sid: string, kid: string, stored: string): Uint8Array {
    const body = Buffer.from(stored, 'base64url');
    const d = createDecipheriv('aes-256-gcm', this.#wrap, body.subarray(0, 12)).setAAD(Buffer.from(`${sid}.${kid}`));
    d.setAuthTag(body.subarray(body.length - 16));
    try {
      return Buffer.concat([d.update(body.subarray(12, body.length - 16)), d.final()]);
    } catch {
      throw new Error(`the stored key of subject ${sid} does not unwrap: protection.subjects.secret changed, or the store was written by someone else`);
    }
  }
}
