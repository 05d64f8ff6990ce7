import { request } from 'undici';
import { runProcess, type ProcessResult } from './process.ts';
import type { ApprovalRule } from '../../src/approvals/schema.ts';
import type { ApprovalRequest } from '../../src/approvals/service.ts';

export type Listed = ApprovalRequest & { url: string; canDecide: boolean };

/** An approval rule for tests: short waits unless overridden. */
export function rule(id: string, topics: string[], over: Partial<ApprovalRule> = {}): ApprovalRule {
  return { id, actions: ['produce'], topics, approvers: ['approver'], grantTtl: 3_600_000, grantScope: 'resource', maxWait: 20_000, expiresAfter: 3_600_000, ...over };
}

/** The approvals API of an admin listener with a bearer token. */
export async function api(adminUrl: string, token: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await request(new URL(path, adminUrl), {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

/** Polls the API until a pending request for `resource` shows up (the operation that opens it runs concurrently). */
export async function pendingFor(adminUrl: string, token: string, resource: string, timeoutMs = 15_000): Promise<Listed> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { json } = await api(adminUrl, token, 'GET', '/v1/approvals?status=pending');
    const found = (json.approvals as Listed[]).find((a) => a.resource.name === resource);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no pending approval for ${resource} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `streamgate <args>` as a child process (the real CLI entry point). */
export function cli(args: string[], timeoutMs = 30_000): Promise<ProcessResult> {
  return runProcess(process.execPath, [new URL('../../src/cli/main.ts', import.meta.url).pathname, ...args], { timeoutMs });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
