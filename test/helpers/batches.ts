import { createRecordsBatch } from '../../node_modules/@platformatic/kafka/dist/protocol/records.js';

export type Codec = 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';

/**
 * A v2 record batch as a real client encodes it (@platformatic/kafka's encoder, not ours):
 * `n` JSON records with a card number, keys, one header each; transactional (producer
 * id/epoch set) unless `transactional: false`.
 */
export function clientBatch(codec: Codec, n: number, base = 0, opts: { transactional?: boolean } = {}): Buffer {
  const messages = Array.from({ length: n }, (_, i) => ({
    topic: 't',
    partition: 0,
    key: Buffer.from(`k${base + i}`),
    value: Buffer.from(`{"card":"4111 1111 1111 1111","i":${base + i}}`),
    headers: new Map([[Buffer.from('h'), Buffer.from(`v${i}`)]]),
    timestamp: 1_700_000_000_000n + BigInt(i * 3),
  }));
  const producer = opts.transactional === false ? {} : { producerId: 4242n, producerEpoch: 7, transactionalId: 'tx' };
  return createRecordsBatch(messages as never, { compression: codec, ...producer } as never).buffer;
}
