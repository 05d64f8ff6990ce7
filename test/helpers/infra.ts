import { after } from 'node:test';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { Admin, Consumer } from '@platformatic/kafka';
import { startKafka } from '../../src/dev/kafka.ts';
import { startIdp, type RunningIdp } from '../../src/dev/idp.ts';
import type { Config } from '../../src/config/schema.ts';
import { createLogger } from '../../src/log.ts';
import { Gateway } from '../../src/gateway.ts';
import type { AuditRow } from '../../src/audit/row.ts';
import { listSegments } from '../../src/audit/spool.ts';

/**
 * The real services the integration tests use. `npm test` starts them once in
 * test/setup.ts and passes their addresses in the environment; a test file run on its
 * own starts its own.
 */
export interface Infra {
  kafka: string;
  idp: RunningIdp;
}

let infra: Promise<Infra> | undefined;

// Registered when this module loads, i.e. at the top level of the test file: hooks
// registered later (inside before/test) would run at the end of that hook, not the file.
const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

export function getInfra(): Promise<Infra> {
  infra ??= (async () => {
    const idp = await startIdp({ port: 0 });
    cleanups.push(() => idp.stop());
    let kafka = process.env.STREAMGATE_TEST_KAFKA;
    if (!kafka) {
      const broker = await startKafka();
      cleanups.push(() => broker.stop());
      kafka = broker.bootstrap;
    }
    return { kafka, idp };
  })();
  return infra;
}

/** A port that was free a moment ago on 127.0.0.1 (for services that must be told their port up front). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

export async function createTopics(bootstrap: string, topics: string[], partitions = 1): Promise<void> {
  const admin = new Admin({ clientId: 'streamgate-test', bootstrapBrokers: [bootstrap] });
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t));
    if (missing.length > 0) await admin.createTopics({ topics: missing, partitions, replicas: 1 });
  } finally {
    await admin.close();
  }
}

export interface BrokerRecord {
  key: string | null;
  value: string | null;
  partition: number;
  offset: bigint;
  headers: Record<string, string>;
}

/**
 * Reads a topic straight from the broker (not through the gateway) until `count` records or
 * timeout, or, with `until`, until it holds for what was read (a topic that may hold retried
 * duplicates has more records than acknowledged writes).
 */
export async function readTopic(bootstrap: string, topic: string, count: number, timeoutMs = 15_000, until?: (read: BrokerRecord[]) => boolean): Promise<BrokerRecord[]> {
  const consumer = new Consumer({
    clientId: 'streamgate-test-reader',
    groupId: `test-reader-${topic}-${Date.now()}-${Math.random()}`,
    bootstrapBrokers: [bootstrap],
  });
  const out: BrokerRecord[] = [];
  try {
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false, maxWaitTime: 200 });
    const deadline = setTimeout(() => void stream.close(), timeoutMs);
    try {
      for await (const m of stream) {
        const headers: Record<string, string> = {};
        for (const [k, v] of m.headers) headers[String(k)] = Buffer.from(v as Buffer).toString();
        out.push({
          key: m.key && (m.key as Buffer).length > 0 ? (m.key as Buffer).toString() : null,
          value: m.value ? (m.value as Buffer).toString() : null,
          partition: m.partition,
          offset: m.offset,
          headers,
        });
        if (until ? until(out) : out.length >= count) break;
      }
    } finally {
      clearTimeout(deadline);
    }
  } finally {
    await consumer.close(true);
  }
  return out;
}

export async function startGateway(config: Config): Promise<Gateway> {
  const gateway = await Gateway.start(config, createLogger('silent'));
  cleanups.push(() => gateway.close());
  return gateway;
}

export function readAudit(dir: string): AuditRow[] {
  const rows: AuditRow[] = [];
  for (const file of listSegments(dir)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) if (line) rows.push(JSON.parse(line) as AuditRow);
  }
  return rows;
}
