import { after } from 'node:test';
import { ensureClickHouseInstalled, startClickHouse, type ClickHouseOptions, type RunningClickHouse } from '../../src/dev/clickhouse.ts';

/**
 * A private ClickHouse server for one test file (files run in parallel processes, and
 * some stop and restart theirs). test/setup.ts installs the package once beforehand.
 */
const servers: RunningClickHouse[] = [];
after(async () => {
  for (const s of servers.reverse()) await s.stop().catch(() => {});
});

export async function startTestClickHouse(options: ClickHouseOptions = {}): Promise<RunningClickHouse> {
  await ensureClickHouseInstalled();
  const server = await startClickHouse(options);
  servers.push(server);
  return server;
}
