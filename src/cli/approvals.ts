import type { Command } from 'commander';
import { request } from 'undici';
import type { ApprovalRequest } from '../approvals/service.ts';

interface Common {
  token?: string;
  adminUrl: string;
  json?: boolean;
}

type Listed = ApprovalRequest & { url: string; canDecide: boolean };

/** `streamgate approvals list|show|approve|deny`: the approvals API of a gateway's admin listener, with the approver's token. */
export function registerApprovalsCommands(program: Command): void {
  const approvals = program.command('approvals').description('list, approve and deny requests held for a human approval (needs an approver\'s OIDC token)');
  const common = (c: Command) =>
    c
      .option('--token <jwt>', 'the approver\'s OIDC access token (default: $STREAMGATE_TOKEN)')
      .option('--admin-url <url>', 'the gateway\'s admin listener', process.env.STREAMGATE_ADMIN_URL ?? 'http://127.0.0.1:9644')
      .option('--json', 'print the API\'s JSON');

  common(approvals.command('list').description('requests you may decide or made (default: pending)'))
    .option('--status <status>', 'pending | approved | denied | expired | all', 'pending')
    .action(cleanErrors(async (opts: Common & { status: string }) => {
      const query = opts.status === 'all' ? '' : `?status=${encodeURIComponent(opts.status)}`;
      const { approvals: list } = (await call(opts, 'GET', `/v1/approvals${query}`)) as { approvals: Listed[] };
      if (opts.json) return console.log(JSON.stringify(list, null, 2));
      if (list.length === 0) return console.log(`no ${opts.status === 'all' ? '' : `${opts.status} `}approval requests`);
      for (const a of list) console.log(line(a));
    }));

  common(approvals.command('show').description('one request').argument('<id>', 'approval id')).action(cleanErrors(async (id: string, opts: Common) => {
    const a = (await call(opts, 'GET', `/v1/approvals/${encodeURIComponent(id)}`)) as Listed;
    console.log(opts.json ? JSON.stringify(a, null, 2) : line(a));
  }));

  for (const verb of ['approve', 'deny'] as const) {
    common(approvals.command(verb).description(verb === 'approve' ? 'approve a pending request: the requester gets a time-boxed grant' : 'deny a pending request (final for that request)').argument('<id>', 'approval id'))
      .option('--reason <text>', verb === 'approve' ? 'why (audited)' : 'why (required, audited, shown to the requester)')
      .action(cleanErrors(async (id: string, opts: Common & { reason?: string }) => {
        const a = (await call(opts, 'POST', `/v1/approvals/${encodeURIComponent(id)}/${verb}`, { reason: opts.reason ?? '' })) as Listed;
        if (opts.json) return console.log(JSON.stringify(a, null, 2));
        console.log(verb === 'approve' ? `approved ${a.id}: ${a.subject} may ${a.action} ${a.resource.name} until ${new Date(a.grantExpiresAt!).toISOString()}` : `denied ${a.id}`);
      }));
  }
}

/** A refusal (403, 409, ...) or an unreachable gateway is one line on stderr and exit code 1, not a stack trace. */
function cleanErrors<A extends unknown[]>(action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args) => {
    try {
      await action(...args);
    } catch (err) {
      console.error(`streamgate approvals: ${(err as Error).message}`);
      process.exitCode = 1;
    }
  };
}

function line(a: Listed): string {
  const why = a.justification ? ` "${a.justification}"` : '';
  return `${a.id}  ${a.status.padEnd(8)} ${a.subject} ${a.action} ${a.resource.kind}:${a.resource.name} (rule ${a.rule}, ${a.records} records)${why}  expires ${new Date(a.expiresAt).toISOString()}`;
}

async function call(opts: Common, method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
  const token = opts.token ?? process.env.STREAMGATE_TOKEN;
  if (!token) throw new Error('an approver token is required: --token <jwt> or STREAMGATE_TOKEN');
  const res = await request(new URL(path, opts.adminUrl), {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  let json: { error?: string } = {};
  try {
    json = JSON.parse(text) as typeof json;
  } catch {
    // reported below
  }
  if (res.statusCode >= 300) throw new Error(`${method} ${path}: HTTP ${res.statusCode}: ${json.error ?? text.slice(0, 200)}`);
  return json;
}
