import { randomBytes } from 'node:crypto';
import type { StateStore } from '../state/store.ts';
import { AccessKeys } from './access-keys.ts';

const KEY = 'jit:access-key-secret';

/**
 * The SigV4 key-derivation secret every instance must share: the configured one, or one the
 * first instance to start generates and stores (setIfAbsent: concurrent starts agree on one).
 */
export async function loadAccessKeys(store: StateStore, configured: string | undefined): Promise<AccessKeys> {
  if (configured !== undefined) return new AccessKeys(Buffer.from(configured, 'utf8'));
  await store.setIfAbsent(KEY, randomBytes(32).toString('base64url'));
  const shared = await store.get(KEY);
  if (!shared) throw new Error('the state store lost the access key secret just written');
  return new AccessKeys(Buffer.from(shared, 'base64url'));
}
