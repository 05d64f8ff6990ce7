import type { Command } from 'commander';
import { request } from 'undici';
import type { CredentialMetadata } from '../jit/credentials.ts';

interface Common {
  token?: string;
  adminUrl: string;
  json?: boolean;
}

/**
 * `streamgate credentials issue|list|revoke`: token exchange on the HTTP listener, listing
 * and revocation on the admin listener, each with the caller's identity-provider token.
 */
export function registerCredentialsCommands(program: Command): void {
  const credentials = program.command('credentials').description('just-in-time credentials: get one, list them, revoke them (needs an identity-provider token)');
  const tokenOption = (c: Command) => c.option('--token <jwt>', 'your identity-provider access token (default: $STREAMGATE_TOKEN)');
  const common = (c: Command) =>
    tokenOption(c)
      .option('--admin-url <url>', 'the gateway\'s admin listener', process.env.STREAMGATE_ADMIN_URL ?? 'http://127.0.0.1:9644')
      .option('--json', 'print the API\'s JSON');

  tokenOption(credentials.command('issue').description('exchange your token for a short-lived credential (prints the token response JSON)'))
    .requiredOption('--scope <items>', 'what the credential may do, e.g. "produce:orders consume:payments.*"')
    .option('--expires-in <seconds>', 'lifetime (bounded by credentials.maxLifetimeSeconds)')
    .option('--url <url>', 'the gateway\'s HTTP listener', process.env.STREAMGATE_URL ?? 'http://127.0.0.1:8080')
    .action(async (opts: { token?: string; scope: string; expiresIn?: string; url: string }) => {
      const form = new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: requireToken(opts.token),
        subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
        scope: opts.scope,
        ...(opts.expiresIn ? { expires_in: opts.expiresIn } : {}),
      });
      const res = await request(new URL('/v1/token', opts.url), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`token exchange refused: HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
      console.log(JSON.stringify(JSON.parse(text), null, 2));
    });

  common(credentials.command('list').description('live credentials (admins: all, or --subject; others: their own)'))
    .option('--subject <sub>', 'only this subject\'s')
    .action(async (opts: Common & { subject?: string }) => {
      const query = opts.subject ? `?subject=${encodeURIComponent(opts.subject)}` : '';
      const { credentials: list } = (await call(opts, 'GET', `/v1/credentials${query}`)) as { credentials: CredentialMetadata[] };
      if (opts.json) return console.log(JSON.stringify(list, null, 2));
      if (list.length === 0) return console.log('no live credentials');
      for (const c of list) console.log(`${c.id}  ${c.subject} (${c.via})  "${c.scope}"  expires ${new Date(c.expiresAt * 1000).toISOString()}`);
    });

  common(credentials.command('revoke').description('revoke one credential, or every credential of a subject, on every instance sharing the state store'))
    .argument('[id]', 'credential id (the jti; the Kafka PLAIN user name)')
    .option('--subject <sub>', 'revoke every credential this subject holds now')
    .option('--reason <text>', 'why (audited)')
    .action(async (id: string | undefined, opts: Common & { subject?: string; reason?: string }) => {
      if ((id === undefined) === (opts.subject === undefined)) throw new Error('name either a credential id or --subject <sub>');
      const path = id !== undefined ? `/v1/credentials/${encodeURIComponent(id)}/revoke` : `/v1/subjects/${encodeURIComponent(opts.subject!)}/credentials/revoke`;
      const result = await call(opts, 'POST', path, { reason: opts.reason ?? '' });
      if (opts.json) return console.log(JSON.stringify(result, null, 2));
      console.log(id !== undefined ? `revoked credential ${id}` : `revoked every credential ${opts.subject} held`);
    });
}

function requireToken(token: string | undefined): string {
  const t = token ?? process.env.STREAMGATE_TOKEN;
  if (!t) throw new Error('an identity-provider token is required: --token <jwt> or STREAMGATE_TOKEN');
  return t;
}

async function call(opts: Common, method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
  const res = await request(new URL(path, opts.adminUrl), {
    method,
    headers: { authorization: `Bearer ${requireToken(opts.token)}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  let json: { error?: string; message?: string } = {};
  try {
    json = JSON.parse(text) as typeof json;
  } catch {
    // reported below
  }
  if (res.statusCode >= 300) throw new Error(`${method} ${path}: HTTP ${res.statusCode}: ${json.message ?? json.error ?? text.slice(0, 200)}`);
  return json;
}
