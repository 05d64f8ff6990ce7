import type { Command } from 'commander';
import { request } from 'undici';
import { loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { GCM_RANDOM_NONCE_LIMIT, InvocationBudget } from '../protect/envelope.ts';
import { createKeyring, describeKeyring, retireKeyVersion, rotateKeyring } from '../protect/keyring-file.ts';
import { openStateStore } from '../state/open.ts';

/**
 * `streamgate keys init|rotate|retire|status`: the protection keyring of the encrypt and
 * decrypt actions. init/rotate/retire edit a keyring file (`inspection.protection.keyring`);
 * a running gateway watches its config and reloads on SIGHUP, so send it one after a change
 * (or let the file watch do it). status reads how many AES-GCM invocations each version has
 * used from the state store every instance counts in.
 */
export function registerKeysCommands(program: Command): void {
  const keys = program.command('keys').description('the protection keyring of the encrypt and decrypt actions: create, rotate, retire, status');

  keys
    .command('init')
    .description('create a keyring file with version 1 (its secret wrapped by the key-encryption key)')
    .requiredOption('--keyring <file>', 'the keyring file to create')
    .option('--kek-env <name>', 'environment variable holding the key-encryption key', 'STREAMGATE_KEK')
    .action((opts: { keyring: string; kekEnv: string }) => {
      const kek = process.env[opts.kekEnv];
      if (!kek) throw new Error(`$${opts.kekEnv} is not set: it holds the key-encryption key (openssl rand -base64 32)`);
      createKeyring(opts.keyring, kek);
      console.log(`${opts.keyring}: created with key version 1 (active); point inspection.protection.keyring at it`);
    });

  keys
    .command('rotate')
    .description('add a key version with a fresh secret and make it active (envelopes written before stay readable)')
    .requiredOption('-c, --config <file>', 'configuration file whose inspection.protection.keyring is the keyring')
    .action((opts: { config: string }) => {
      const ring = keyringOf(loadConfig(opts.config));
      const version = rotateKeyring(ring.file, ring.kek);
      console.log(`${ring.file}: key version ${version} is active; the gateway reloads it on SIGHUP or when it sees the config change`);
      console.log('format-preserving (FF1) rules name their key version: move them when you want new values under the new version');
    });

  keys
    .command('retire')
    .description('remove a key version for good: every value it encrypted becomes unreadable')
    .requiredOption('-c, --config <file>', 'configuration file whose inspection.protection.keyring is the keyring')
    .requiredOption('--version <n>', 'the version to remove')
    .action((opts: { config: string; version: string }) => {
      const config = loadConfig(opts.config);
      const ring = keyringOf(config);
      const version = Number(opts.version);
      const pinned = config.inspection.rules.filter((r) => r.action.type === 'encrypt' && r.action.format === 'preserve' && r.action.keyVersion === version).map((r) => r.id);
      if (pinned.length > 0) throw new Error(`rules ${pinned.join(', ')} encrypt with version ${version}: move them to another version first`);
      retireKeyVersion(ring.file, version);
      console.log(`${ring.file}: key version ${version} retired; what it encrypted can no longer be revealed`);
    });

  keys
    .command('erase-subject')
    .description('crypto-shredding: erase one data subject\'s key on the running gateways, making every value encrypted for it unreadable (audited)')
    .argument('<subject>', 'the data subject\'s value, as in the field the rule names (e.g. a customer id)')
    .option('--reason <text>', 'why (audited), e.g. the erasure request\'s reference')
    .option('--token <jwt>', 'your identity-provider access token, admin on the cluster (default: $STREAMGATE_TOKEN)')
    .option('--admin-url <url>', 'the gateway\'s admin listener', process.env.STREAMGATE_ADMIN_URL ?? 'http://127.0.0.1:9644')
    .action(async (subject: string, opts: { reason?: string; token?: string; adminUrl: string }) => {
      const token = opts.token ?? process.env.STREAMGATE_TOKEN;
      if (!token) throw new Error('an identity-provider token is needed: --token or $STREAMGATE_TOKEN');
      const res = await request(new URL('/v1/data-subjects/erase', opts.adminUrl), {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ subject, reason: opts.reason ?? '' }),
      });
      const body = (await res.body.json()) as { erased?: boolean; subjectId?: string; message?: string };
      if (res.statusCode !== 200) throw new Error(`erasure refused: HTTP ${res.statusCode}: ${body.message ?? ''}`);
      console.log(body.erased ? `subject ${body.subjectId} erased: its values can no longer be revealed` : `subject ${body.subjectId} had no key (nothing was encrypted for it)`);
    });

  keys
    .command('status')
    .description('key versions, the active one, and how much of each version\'s AES-GCM invocation limit is used')
    .requiredOption('-c, --config <file>', 'configuration file')
    .option('--json', 'print JSON')
    .action(async (opts: { config: string; json?: boolean }) => {
      const config = loadConfig(opts.config);
      const p = config.inspection.protection;
      if (!p) throw new Error(`${opts.config} has no inspection.protection`);
      const active = p.active ?? Math.max(...p.keys.map((k) => k.version));
      const created = p.keyring ? new Map(describeKeyring(p.keyring.file).keys.map((k) => [k.version, k.created])) : new Map<number, string>();
      const store = openStateStore(config.state);
      try {
        const budget = new InvocationBudget(store);
        const versions = await Promise.all(
          p.keys.map(async (k) => {
            const used = await budget.used(k.version);
            const share = used / GCM_RANDOM_NONCE_LIMIT;
            const rules = config.inspection.rules
              // rules with a data subject encrypt under the subjects' own keys, not a keyring version
              .filter((r) => r.action.type === 'encrypt' && !r.action.subject && (r.action.format === 'preserve' ? r.action.keyVersion === k.version : k.version === active))
              .map((r) => r.id);
            const advice = share >= 1 ? 'exhausted: rotate now' : k.version === active && share >= p.rotateAt ? 'rotate' : 'ok';
            return { version: k.version, active: k.version === active, created: created.get(k.version) ?? null, invocationsReserved: used, limit: GCM_RANDOM_NONCE_LIMIT, share, rules, advice };
          }),
        );
        if (opts.json) return void console.log(JSON.stringify({ active, rotateAt: p.rotateAt, state: config.state.kind, versions }, null, 2));
        if (config.state.kind === 'memory') console.log('note: state.kind is memory, so the counts are this process\'s only (0): use redis to see what every instance used');
        for (const v of versions) {
          console.log(`v${v.version}${v.active ? ' (active)' : ''}${v.created ? ` created ${v.created}` : ''}: ${v.invocationsReserved} of ${v.limit} envelope encryptions reserved (${(v.share * 100).toFixed(4)}%), ${v.advice}; encrypt rules: ${v.rules.join(', ') || 'none'}`);
        }
      } finally {
        await store.close();
      }
    });
}

function keyringOf(config: Config): { file: string; kek: string } {
  const ring = config.inspection.protection?.keyring;
  if (!ring) throw new Error('the config has no inspection.protection.keyring: keys listed in the config are rotated by editing it (add a version, make it active)');
  return ring;
}
