import type { InspectionConfig } from '../config/schema.ts';
import { InvocationBudget, SharedAllowance } from '../protect/envelope.ts';
import { Keyring, type KeyringTransfer } from '../protect/keyring.ts';
import { Protector, type ProtectRule } from '../protect/protector.ts';
import type { StateStore } from '../state/store.ts';

/** invocations of the active key each instance keeps reserved for envelope encryption (refilled below half) */
const ALLOWANCE_BLOCK = 65_536;

/** What a pool worker needs to apply the same encrypt and decrypt rules (null: the rules have none). */
export type WorkerProtection = { rules: ReadonlyArray<ProtectRule | null>; keyring: KeyringTransfer; allowance: SharedArrayBuffer | null } | null;

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

  /** `rules`: by program rule index (RuleBook.protectRules) */
  constructor(config: InspectionConfig, rules: ReadonlyArray<ProtectRule | null>, store: Pick<StateStore, 'incrementBy'>) {
    const keys = config.protection;
    if (!keys || !rules.some((r) => r !== null)) return;
    const budget = new InvocationBudget(store, { block: ALLOWANCE_BLOCK, rotateAt: keys.rotateAt });
    const keyring = Keyring.fromSecrets(keys.keys, keys.active, budget);
    const shared = rules.some((r) => r?.mode === 'encrypt' && r.format === 'envelope') ? new SharedAllowance() : null;
    if (shared) this.#allowance = { shared, budget, version: keyring.active };
    this.protector = new Protector(rules, keyring, shared);
    this.worker = { rules, keyring: keyring.transfer, allowance: shared?.buffer ?? null };
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
