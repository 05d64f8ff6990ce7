import { ensureKafkaJars, startKafka, type RunningKafka } from '../src/dev/kafka.ts';
import { ensureRegistryBuild } from '../src/dev/registry.ts';
import { ensureSerdesJars } from './helpers/java-serdes.ts';
import { ensureClickHouseInstalled } from '../src/dev/clickhouse.ts';
import { ensureRedis, type RunningRedis } from '../src/dev/redis.ts';

/**
 * Global setup of `npm test`: one real Kafka broker for every test file (starting a
 * JVM per file would dominate the suite's time). Test files find it through the
 * environment; see test/helpers/infra.ts.
 */
let kafka: RunningKafka | undefined;
let redis: RunningRedis | undefined;

export async function globalSetup(): Promise<void> {
  // ClickHouse servers are per file (tests stop and restart theirs); install the package once, here
  const clickhouse = ensureClickHouseInstalled().then(() => undefined, (err: unknown) => err);
  // shared-state tests expect Redis at 127.0.0.1:6379: the running one, or one started here
  redis = await ensureRedis();
  // the schema registry is built by Maven once (cached in .cache/): after the Kafka jars, while the broker starts
  // and the Java clients' registry serializers (test/java/pom.xml)
  const registry = ensureKafkaJars().then(() => ensureRegistryBuild()).then(() => ensureSerdesJars()).then(() => undefined, (err: unknown) => err);
  kafka = await startKafka();
  process.env.STREAMGATE_TEST_KAFKA = kafka.bootstrap;
  const failed = (await clickhouse) ?? (await registry);
  if (failed) throw failed;
}

export async function globalTeardown(): Promise<void> {
  await kafka?.stop();
  await redis?.stop();
}
