import type { InspectionConfig } from '../config/schema.ts';
import { InvocationBudget, SharedAllowance } from '../protect/envelope.ts';
import { Keyring, type KeyringTransfer } from '../protect/keyring.ts';
import { Protector, type ProtectRule } from '../protect/protector.ts';
import type { StateStore } from '../state/store.ts';
import { SubjectIds, SubjectKeyCache, SubjectKeyStore, type SubjectKeyEntry, type SubjectKeyNeed } from '../protect/subjects.ts';

/** the channel every instance hears erasures on (its subject-key caches drop them at once) */
const ERASED_CHANNEL = 'protect:subject-erased';

/** invocations of the active key each instance keeps reserved for envelope encryption (refilled below half) */
const ALLOWANCE_BLOCK = 65_536;

/** What a pool worker needs to apply the same encrypt and decrypt rules (null: the rules have none). */
export type WorkerProtection = {
  rules: ReadonlyArray<ProtectRule | null>;
  keyring: KeyringTransfer;
  allowance: SharedArrayBuffer | null;
  /** data subjects: the secret (subject ids) and the instance's erasure epoch */
  subjects: { secret: string; epoch: SharedArrayBuffer } | null;
} | null;

/**
 * The encrypt and decrypt rules of one compiled program with their keyring, for the engine on
 * this thread and the pool's: the protector every engine applies, and the envelope key's
 * invocations, reserved from the budget every instance shares (`keyuse:<version>` in the state
 * store) into an allowance every thread of this instance takes from.
 */
export class Protection {
  readonly protector: Protector | null = null;
  readonly worker: WorkerProtection = null;
  readonly #allowance: { shared: SharedAllowance; budget: InvocationBudget; version: number } | null = null;

  readonly #subjects: { store: SubjectKeyStore; cache: SubjectKeyCache; state: Pick<StateStore, 'publish' | 'subscribe'> } | null = null;
  #unsubscribe: Promise<() => Promise<void>> | null = null;

  /** `rules`: by program rule index (RuleBook.protectRules) */
  constructor(config: InspectionConfig, rules: ReadonlyArray<ProtectRule | null>, store: Pick<StateStore, 'incrementBy' | 'get' | 'setIfAbsent' | 'delete' | 'publish' | 'subscribe'>) {
    const keys = config.protection;
    if (!keys || !rules.some((r) => r !== null)) return;
    const budget = new InvocationBudget(store, { block: ALLOWANCE_BLOCK, rotateAt: keys.rotateAt });
    const keyring = Keyring.fromSecrets(keys.keys, keys.active, budget);
    const shared = rules.some((r) => r?.mode === 'encrypt' && r.format === 'envelope' && !r.subject) ? new SharedAllowance() : null;
    if (shared) this.#allowance = { shared, budget, version: keyring.active };
    const secret = rules.some((r) => r?.subject) ? keys.subjects?.secret : undefined;
    let subjects: { ids: SubjectIds; cache: SubjectKeyCache } | null = null;
    if (secret) {
      const cache = new SubjectKeyCache();
      this.#subjects = { store: new SubjectKeyStore(secret, store), cache, state: store };
      subjects = { ids: this.#subjects.store.ids, cache };
      // an erasure on another instance: every thread here drops its keys now, not after their TTL
      this.#unsubscribe = store.subscribe(ERASED_CHANNEL, () => cache.bumpEpoch());
      this.#unsubscribe.catch(() => {});
    }
    this.protector = new Protector(rules, keyring, shared, subjects);
    this.worker = { rules, keyring: keyring.transfer, allowance: shared?.buffer ?? null, subjects: secret ? { secret, epoch: subjects!.cache.epochBuffer } : null };
  }

  /** The keys of data subjects a thread asked for (created where it encrypts for a new subject); this thread keeps them too. */
  async resolveSubjects(needs: readonly SubjectKeyNeed[]): Promise<SubjectKeyEntry[]> {
    const s = this.#subjects;
    if (!s) throw new Error('no rule names a data subject');
    const entries = await s.store.resolve(needs);
    s.cache.put(entries);
    return entries;
  }

  /**
   * Erases data subject `subject`: its key is deleted from the shared store, this instance's
   * threads drop it at once and the others when they hear of it (or within the cache TTL).
   * Null when no rule names a data subject.
   */
  async eraseSubject(subject: string): Promise<{ sid: string; existed: boolean } | null> {
    const s = this.#subjects;
    if (!s) return null;
    const sid = s.store.ids.of(subject);
    const existed = await s.store.erase(sid);
    s.cache.bumpEpoch();
    await s.state.publish(ERASED_CHANNEL, sid).catch(() => {});
    return { sid, existed };
  }

  async close(): Promise<void> {
    const unsubscribe = await this.#unsubscribe?.catch(() => null);
    await unsubscribe?.().catch(() => {});
  }

  /**
   * Keeps invocations of the active key reserved for envelope encryption; waits only when
   * fewer than the batch's `records` are left (undefined: nothing to wait for).
   */
  reserve(records: number): Promise<void> | undefined {
    const a = this.#allowance;
    return a?.shared.ensure(a.budget, a.version, ALLOWANCE_BLOCK / 2, records);
  }

  /** The envelope key's use as this instance sees it; null without envelope encryption. */
  get keyUse(): { version: number; budget: InvocationBudget; reserved: number; exhausted: boolean } | null {
    const a = this.#allowance;
    return a ? { version: a.version, budget: a.budget, reserved: a.shared.left, exhausted: a.shared.exhausted } : null;
  }
}
