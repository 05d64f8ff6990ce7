import { readFileSync } from 'node:fs';
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { createClient } from '@clickhouse/client';
import { clickhouseSchema } from '../src/audit/schema.ts';
import { connect } from '../src/audit/migrate.ts';
import { recordingSchema } from '../src/recording/schema.ts';
import { readSession } from '../src/recording/store.ts';
import { createTopics, getInfra, readAudit, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { startTestClickHouse } from './helpers/clickhouse.ts';
import type { RunningClickHouse } from '../src/dev/clickhouse.ts';

// With audit.clickhouse configured, recorded records are also copied into the
// `recordings` table of a real clickhouse-server (whatever version is installed: Debian's
// 18.16 gets the legacy table, 22.3+ the modern one with codecs and TTL).

const run = `${Date.now().toString(36)}`;
const TOPIC = `payments.rec-ch-${run}`;
const DB = `sg_rec_${run}`;
let infra: Infra;
let ch: RunningClickHouse;

before(async () => {
  infra = await getInfra();
  ch = await startTestClickHouse();
  await createTopics(infra.kafka, [TOPIC], 1);
});

test('recorded records reach the ClickHouse recordings table with the same hashes and offsets as the local segments', async () => {
  const { config, spoolDir } = testConfig(infra);
  config.audit.clickhouse = clickhouseSchema.parse({ url: ch.url, database: DB, autoMigrate: true, flushIntervalMs: 100 });
  const recDir = mkdtempSync(join(tmpdir(), 'sg-rec-ch-'));
  config.recording = recordingSchema.parse({ dir: recDir, sessions: [{ topics: ['payments.rec-ch-*'] }] });
  const gateway = await startGateway(config);
  const token = await infra.idp.token('alice');
  const res = await request(`http://127.0.0.1:${gateway.addresses.http!.port}/v3/clusters/local/topics/${TOPIC}/records:batch`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ entries: Array.from({ length: 5 }, (_, i) => ({ id: String(i), key: { type: 'STRING', data: `k${i}` }, value: { type: 'JSON', data: { i, card: '4111 1111 1111 1111' } }, headers: [{ name: 'h', value: Buffer.from(`v${i}`).toString('base64') }] })) }),
  });
  assert.equal(res.statusCode, 207, await res.body.text());
  await res.body.dump();
  const session = readAudit(spoolDir).find((r) => r.resource === TOPIC && r.event === 'operation')!.session_id;
  const client = connect(clickhouseSchema.parse({ url: ch.url, database: DB }));
  try {
    let rows: Array<{ seq: string | number; offset: string; hash: string; value: string; masked: number }> = [];
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      try {
        const rs = await client.query({ query: `SELECT seq, offset, hash, value, masked FROM ${DB}.recordings WHERE session_id = '${session}' ORDER BY seq`, format: 'JSONEachRow' });
        rows = await rs.json();
        if (rows.length === 5) break;
      } catch {
        // the table is created with the first batch
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    const local = readSession(recDir, session);
    assert.equal(local.length, 5);
    assert.equal(rows.length, 5, 'all five rows in ClickHouse');
    assert.deepEqual(rows.map((r) => r.hash), local.map((r) => r.hash));
    assert.deepEqual(rows.map((r) => r.offset), ['0', '1', '2', '3', '4']);
    assert.deepEqual(rows.map((r) => Number(r.masked)), [1, 1, 1, 1, 1]);
    assert.ok(rows.every((r) => Buffer.from(r.value, 'base64').toString().includes('**** **** **** 1111')));
    // the recordings queries of docs/analysts.md run as documented on this server
    const md = readFileSync(new URL('../docs/analysts.md', import.meta.url), 'utf8');
    const documented = [...md.matchAll(/```sql\n([\s\S]*?)```/g)]
      .flatMap((m) => m[1]!.split(/;\s*\n/))
      .map((q) => q.trim().replace(/;$/, ''))
      .filter((q) => /\bFROM recordings\b/.test(q));
    assert.ok(documented.length >= 2, `${documented.length} documented recordings queries`);
    const analyst = createClient({ url: ch.url, database: DB });
    try {
      for (const q of documented) {
        const rs = await analyst.query({ query: q.replaceAll('<session id>', session), format: 'JSONEachRow' });
        const out = await rs.json<Record<string, unknown>>();
        if (q.includes('<session id>')) assert.equal(out.length, 5, `joined to their audit rows: ${q.split('\n')[0]}`);
      }
    } finally {
      await analyst.close();
    }
  } finally {
    await client.close();
  }
});
