import { spawn } from 'node:child_process';
import { ensureKafkaJars, findJava } from './kafka.ts';

/**
 * `npm run kafka -- <tool> [args]`: Apache Kafka's own command-line tools from the cached
 * jars, with the terminal attached; e.g. read what really reached the broker with
 * `npm run kafka -- console-consumer --bootstrap-server 127.0.0.1:9092 --topic payments.cards --from-beginning`.
 */
const TOOLS: Record<string, string> = {
  'console-consumer': 'org.apache.kafka.tools.consumer.ConsoleConsumer',
  'console-producer': 'org.apache.kafka.tools.ConsoleProducer',
  topics: 'org.apache.kafka.tools.TopicCommand',
  'consumer-groups': 'org.apache.kafka.tools.consumer.group.ConsumerGroupCommand',
  'producer-perf-test': 'org.apache.kafka.tools.ProducerPerformance',
  'consumer-perf-test': 'org.apache.kafka.tools.ConsumerPerformance',
  'get-offsets': 'org.apache.kafka.tools.GetOffsetShell',
};

const [tool, ...args] = process.argv.slice(2);
const mainClass = tool === undefined ? undefined : TOOLS[tool];
if (!mainClass) {
  console.error(`usage: npm run kafka -- <tool> [args]\ntools: ${Object.keys(TOOLS).join(', ')}`);
  process.exit(2);
}
const [java, classpath] = await Promise.all([findJava(), ensureKafkaJars()]);
const child = spawn(java, ['-Xmx256m', '-cp', classpath, mainClass, ...args], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
