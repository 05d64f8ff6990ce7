import { readFileSync } from 'node:fs';
import { compatibilityPartitioner, findErrorBy, NetworkError, Producer, stringSerializer, TimeoutError, type GenericError } from '@platformatic/kafka';
import type { KafkaUpstreamConfig } from '../config/schema.ts';
import { GatewayError, keptRecords, type Operation, type RecordOutcome, type StreamRecord, type Upstream, type UpstreamResult } from '../operation.ts';

const COMPRESSION = { none: 'none', gzip: 'gzip', snappy: 'snappy', lz4: 'lz4', zstd: 'zstd' } as const;

/**
 * Executes operations against a Kafka cluster with @platformatic/kafka. The gateway picks
 * each record's partition itself (Java-compatible murmur2 for keyed records, round-robin
 * otherwise) so it can report every record's partition and offset: a single send puts
 * the records of one partition into one batch, so offsets are base + position.
 */
export class KafkaUpstream implements Upstream {
  readonly #producer: Producer<Buffer, Buffer, string, Buffer>;
  readonly #config: KafkaUpstreamConfig;
  readonly #roundRobin = new Map<string, number>();

  constructor(config: KafkaUpstreamConfig) {
    this.#config = config;
    this.#producer = new Producer({
      clientId: config.clientId,
      bootstrapBrokers: config.bootstrap,
      timeout: config.timeoutMs,
      retries: 2,
      retryDelay: 100,
      acks: config.acks,
      compression: COMPRESSION[config.compression],
      autocreateTopics: false,
      strict: false,
      // header names are strings; without a serializer the client sends them as they are and fails
      serializers: { headerKey: stringSerializer },
      // the gateway's own credentials and TLS to the brokers (client credentials never reach them)
      ...(config.security?.sasl ? { sasl: { ...config.security.sasl } } : {}),
      ...(config.security?.tls ? { tls: { servername: config.security.tls.serverName, ...(config.security.tls.ca ? { ca: readFileSync(config.security.tls.ca) } : {}) } } : {}),
    });
  }

  async execute(op: Operation): Promise<UpstreamResult> {
    if (op.action !== 'produce' || op.resource.kind !== 'topic') {
      throw new GatewayError('invalid', `the Kafka upstream does not execute ${op.action} on a ${op.resource.kind}`);
    }
    const topic = op.resource.name;
    const records = op.records ?? [];
    try {
      const metadata = await this.#producer.metadata({ topics: [topic] });
      const partitions = metadata.topics.get(topic)?.partitionsCount ?? 0;
      if (partitions === 0) throw new GatewayError('not-found', `topic "${topic}" does not exist`);

      // a record refused alone (op.refusals) is not sent, and has no position
      const kept = keptRecords(op, records.length);
      const assigned = kept.map((i) => {
        const r = records[i]!;
        if (r.partition !== undefined) {
          if (r.partition < 0 || r.partition >= partitions) {
            throw new GatewayError('not-found', `partition ${r.partition} of topic "${topic}" does not exist (it has ${partitions})`);
          }
          return r.partition;
        }
        if (r.key) return compatibilityPartitioner(undefined as never, Buffer.from(r.key.buffer, r.key.byteOffset, r.key.byteLength)) % partitions;
        const next = this.#roundRobin.get(topic) ?? 0;
        this.#roundRobin.set(topic, next + 1);
        return next % partitions;
      });

      const result = await this.#producer.send({
        messages: kept.map((k, i) => ({
          topic,
          partition: assigned[i]!,
          ...message(records[k]!),
        })),
      });

      const base = new Map<number, bigint>();
      for (const o of result.offsets ?? []) if (o.topic === topic) base.set(o.partition, o.offset);
      const seen = new Map<number, number>();
      const now = Date.now();
      const outcomes: RecordOutcome[] = records.map((r) => ({ partition: -1, offset: '', timestamp: r.timestamp ?? now }));
      kept.forEach((k, i) => {
        const partition = assigned[i]!;
        const position = seen.get(partition) ?? 0;
        seen.set(partition, position + 1);
        const offset = base.get(partition);
        outcomes[k] = { partition, offset: offset === undefined ? '-1' : String(offset + BigInt(position)), timestamp: records[k]!.timestamp ?? now };
      });
      return { records: outcomes };
    } catch (err) {
      throw toGatewayError(err, topic);
    }
  }

  async ready(): Promise<boolean> {
    try {
      await this.#producer.metadata({ topics: [], forceUpdate: true });
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.#producer.close(true);
  }
}

function message(r: StreamRecord): { key?: Buffer; value?: Buffer; headers?: Map<string, Buffer>; timestamp?: bigint } {
  return {
    key: r.key ? asBuffer(r.key) : undefined,
    value: r.value ? asBuffer(r.value) : undefined,
    headers: r.headers.length > 0 ? new Map(r.headers.map(([k, v]) => [k, asBuffer(v)])) : undefined,
    timestamp: r.timestamp === undefined ? undefined : BigInt(r.timestamp),
  };
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function toGatewayError(err: unknown, topic: string): GatewayError {
  if (err instanceof GatewayError) return err;
  const e = err as GenericError;
  // the client reports UNKNOWN_TOPIC_OR_PARTITION from Metadata as a UserError with this text
  const userError = findErrorBy(e, 'code', 'PLT_KFK_USER');
  if (findErrorBy(e, 'apiId', 'UNKNOWN_TOPIC_OR_PARTITION') || (userError && /^Unknown topic /.test(userError.message))) return new GatewayError('not-found', `topic "${topic}" does not exist`);
  if (findErrorBy(e, 'apiId', 'MESSAGE_TOO_LARGE') || findErrorBy(e, 'apiId', 'RECORD_LIST_TOO_LARGE')) {
    return new GatewayError('too-large', `the broker refused the records of topic "${topic}" as too large`);
  }
  if (findErrorBy(e, 'code', NetworkError.code) || findErrorBy(e, 'code', TimeoutError.code)) {
    return new GatewayError('upstream-unavailable', 'the Kafka cluster is not reachable', { cause: err });
  }
  const protocol = findErrorBy(e, 'code', 'PLT_KFK_PROTOCOL');
  if (protocol) return new GatewayError('upstream-error', `the broker answered ${String(protocol.apiId)}`, { cause: err });
  // the client's message can quote what it was given (keys, serialization input): its code says enough
  const code = (err as { code?: unknown } | null)?.code;
  return new GatewayError('upstream-error', `the Kafka produce failed (${typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'unexpected error'})`, { cause: err });
}
