import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { CreateStreamCommand, GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand, PutRecordsCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { getInfra, readAudit, startGateway } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { bearerClient, startCapturedKinesis, waitActive, withKinesis, type CapturedKinesis } from './helpers/kinesis.ts';
import type { Gateway } from '../src/gateway.ts';
import type { RunningIdp } from '../src/dev/idp.ts';
import { luhnValid } from '../src/protect/preserve.ts';

// Reversible protection on the Kinesis API (issue 22): PutRecords stores ciphertexts in
// kinesalite, GetRecords reveals them to the fraud analyst only, with the reveal facts audited.

const STREAM = `cards.kin-${randomUUID().slice(0, 8)}`;
let gateway: Gateway;
let spoolDir: string;
let upstream: CapturedKinesis;
let idp: RunningIdp;
let endpoint: string;

before(async () => {
  const infra = await getInfra();
  idp = infra.idp;
  upstream = await startCapturedKinesis();
  const t = testConfig(infra, (c) => withKinesis(c, upstream.endpoint));
  spoolDir = t.spoolDir;
  gateway = await startGateway(t.config);
  endpoint = `http://127.0.0.1:${gateway.addresses.kinesis!.port}`;
});

const as = async (who: string): Promise<KinesisClient> => bearerClient(endpoint, await idp.token(who));

async function readAll(client: KinesisClient): Promise<string[]> {
  const out: string[] = [];
  for (const shard of (await client.send(new ListShardsCommand({ StreamName: STREAM }))).Shards ?? []) {
    let it = (await client.send(new GetShardIteratorCommand({ StreamName: STREAM, ShardId: shard.ShardId!, ShardIteratorType: 'TRIM_HORIZON' }))).ShardIterator;
    for (let polls = 0; it && polls < 20; polls++) {
      const r = await client.send(new GetRecordsCommand({ ShardIterator: it, Limit: 1000 }));
      for (const rec of r.Records ?? []) out.push(Buffer.from(rec.Data!).toString());
      if ((r.Records ?? []).length === 0) break;
      it = r.NextShardIterator;
    }
  }
  return out.sort();
}

test('PutRecords stores encrypted cards and SSNs; GetRecords reveals them to the fraud analyst and not to an analyst', async () => {
  const ops = await as('ops');
  await ops.send(new CreateStreamCommand({ StreamName: STREAM, ShardCount: 1 }));
  await waitActive(ops, STREAM);
  const values = Array.from({ length: 20 }, (_, i) => JSON.stringify({ i: 100 + i, card: '5500-0000-0000-0004', ssn: `123-45-${6700 + i}` }));
  const put = await (await as('alice')).send(new PutRecordsCommand({ StreamName: STREAM, Records: values.map((v, i) => ({ Data: Buffer.from(v), PartitionKey: `p${i}` })) }));
  assert.equal(put.FailedRecordCount, 0);

  // ops has no consume entry for cards.*: it reads what kinesalite stores
  const stored = (await readAll(ops)).map((v) => JSON.parse(v) as { card: string; ssn: string });
  assert.equal(stored.length, 20);
  for (const d of stored) {
    assert.match(d.card, /^5500-00\d\d-\d{4}-\d{4}$/);
    assert.ok(luhnValid([...d.card.replaceAll('-', '')].map(Number)));
    assert.match(d.ssn, /^sge1\.1\./);
  }
  assert.deepEqual(await readAll(await as('fran')), [...values].sort());
  const bob = (await readAll(await as('bob'))).map((v) => JSON.parse(v) as { card: string; ssn: string });
  assert.ok(bob.every((d) => /^\*{4}-\*{4}-\*{4}-\d{4}$/.test(d.card) && d.ssn.startsWith('sge1.1.')));

  const rows = readAudit(spoolDir).filter((r) => r.resource === STREAM && r.protocol === 'kinesis');
  const sum = (subject: string, key: string) => rows.filter((r) => r.subject === subject).reduce((n, r) => n + (r.masking[key] ?? 0), 0);
  assert.equal(sum('alice', 'pci.card-encrypt@v1'), 20);
  assert.equal(sum('fran', 'pci.card-reveal@v1'), 20);
  assert.equal(sum('fran', 'pii.ssn-reveal@v1'), 20);
  assert.equal(sum('bob', 'pii.ssn-reveal@v1'), 0);
});
