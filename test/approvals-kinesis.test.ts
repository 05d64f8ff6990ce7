import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { CreateStreamCommand, DescribeStreamSummaryCommand, PutRecordCommand } from '@aws-sdk/client-kinesis';
import { getInfra, readAudit, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { bearerClient, startCapturedKinesis, withKinesis, type CapturedKinesis } from './helpers/kinesis.ts';
import { api, rule, sleep } from './helpers/approvals.ts';
import type { Gateway } from '../src/gateway.ts';

// Approvals through the Kinesis listener (real AWS SDK v3 over HTTP/2, kinesalite behind): a
// PutRecord beyond alice's grants is held, refused as AccessDeniedException naming the approval,
// and goes through once an approver approves.

const STREAM = `kin-appr-${randomUUID().slice(0, 8)}`;
let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let upstream: CapturedKinesis;
let endpoint: string;
let adminUrl: string;

before(async () => {
  infra = await getInfra();
  upstream = await startCapturedKinesis();
  const made = testConfig(infra, (c) => withKinesis(c, upstream.endpoint));
  spoolDir = made.spoolDir;
  made.config.policy.approvals = [rule('stream-writes', ['kin-appr-*'], { maxWait: 1000 })];
  gateway = await startGateway(made.config);
  endpoint = `http://127.0.0.1:${gateway.addresses.kinesis!.port}`;
  adminUrl = `http://127.0.0.1:${gateway.addresses.admin!.port}`;
  const ops = bearerClient(endpoint, await infra.idp.token('ops'));
  await ops.send(new CreateStreamCommand({ StreamName: STREAM, ShardCount: 1 }));
  for (let i = 0; i < 100; i++) {
    const s = await ops.send(new DescribeStreamSummaryCommand({ StreamName: STREAM }));
    if (s.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
    await sleep(50);
  }
});

test('Kinesis: a PutRecord beyond the grants gets AccessDeniedException naming the approval; approved, it goes through', async () => {
  const alice = bearerClient(endpoint, await infra.idp.token('alice'));
  const put = () => alice.send(new PutRecordCommand({ StreamName: STREAM, PartitionKey: 'k', Data: Buffer.from('{"payout":7}') }));
  const err = await put().then(
    () => assert.fail('expected AccessDeniedException'),
    (e: Error) => e,
  );
  assert.equal(err.name, 'AccessDeniedException', err.message);
  const m = /approval ([0-9a-f-]{36}) is pending at (\S+);/.exec(err.message);
  assert.ok(m, err.message);
  assert.equal(m[2], `${adminUrl}/v1/approvals/${m[1]}`);
  assert.ok(!upstream.captured.some((c) => c.target.endsWith('PutRecord') && c.body.includes(STREAM)), 'nothing reached Kinesis');

  const decided = await api(adminUrl, await infra.idp.token('carol'), 'POST', `/v1/approvals/${m[1]}/approve`, { reason: 'ok' });
  assert.equal(decided.status, 200);
  const ok = await put();
  assert.match(ok.SequenceNumber ?? '', /^\d+$/);
  const rows = readAudit(spoolDir).filter((r) => r.event === 'operation' && r.resource === STREAM && r.action === 'produce');
  assert.ok(rows.some((r) => r.protocol === 'kinesis' && r.decision === 'deny' && r.approval_id === m[1] && r.meta.approval_outcome === 'pending'));
  assert.ok(rows.some((r) => r.protocol === 'kinesis' && r.decision === 'allow' && r.approval_id === m[1] && r.rule === 'approval:stream-writes'));
});
