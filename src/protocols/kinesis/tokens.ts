import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Shard iterators and ListShards page tokens name no stream on the wire (GetRecords carries
 * only the iterator), yet every GetRecords must be authorized for its stream. So the gateway
 * hands out its own tokens: the upstream token with the stream and shard it belongs to,
 * bound by an HMAC so a client cannot move an iterator to another stream.
 *   sg1.<base64url stream>.<shard>.<base64url mac>.<upstream token>
 */
const PREFIX = 'sg1';

export interface Bound {
  stream: string;
  /** the shard id ('' for ListShards page tokens) */
  shard: string;
  upstream: string;
}

export class TokenBinder {
  readonly #key: Buffer;

  constructor(secret?: string) {
    this.#key = secret ? Buffer.from(secret, 'utf8') : randomBytes(32);
  }

  wrap(stream: string, shard: string, upstream: string): string {
    return [PREFIX, Buffer.from(stream).toString('base64url'), shard, this.#mac(stream, shard, upstream).toString('base64url'), upstream].join('.');
  }

  /** the bound token, or undefined when it is not one this gateway (key) issued */
  unwrap(token: string): Bound | undefined {
    const parts = token.split('.');
    if (parts.length < 5 || parts[0] !== PREFIX) return undefined;
    const stream = Buffer.from(parts[1]!, 'base64url').toString();
    const shard = parts[2]!;
    const mac = Buffer.from(parts[3]!, 'base64url');
    const upstream = parts.slice(4).join('.');
    const expected = this.#mac(stream, shard, upstream);
    if (mac.byteLength !== expected.byteLength || !timingSafeEqual(mac, expected)) return undefined;
    return { stream, shard, upstream };
  }

  #mac(stream: string, shard: string, upstream: string): Buffer {
    return createHmac('sha256', this.#key).update(stream).update('\0').update(shard).update('\0').update(upstream).digest().subarray(0, 16);
  }
}
