// The schema-registry wire formats around a record value (issue 21): which schema a value was
// written with, and where its encoded body starts. A layer below the record containers of
// index.ts: these are the bytes of one value (or key). Written against the formats'
// documentation, not a client library: the gateway reads them from untrusted producers.
//
//   confluent   magic 0x00, schema id as a 4-byte big-endian int; Protobuf values then carry
//               the message indexes (a zigzag varint count, then zigzag varint indexes; a
//               single 0x00 means [0], the first message of the file)
//   apicurio    magic 0x00, global id as an 8-byte big-endian int (Apicurio serdes 2.x default)
//   (ids carried in a record header, Apicurio's `apicurio.value.globalId`, are read by the
//   caller from the header and need no framing here)

export type Framing = 'confluent' | 'apicurio';
/** Where a topic's values name their schema: a prefix of the value, or (Apicurio serdes 2.x's default) a record header. */
export type ValueFraming = Framing | 'apicurio-header';

/** The headers Apicurio's serializers put a value's (key's) global id in (8 bytes, big-endian) when headers are enabled. */
export const APICURIO_VALUE_GLOBAL_ID = 'apicurio.value.globalId';
export const APICURIO_KEY_GLOBAL_ID = 'apicurio.key.globalId';

/** The global id of an `apicurio.value.globalId` header value; FramingError when it is not one. */
export function readGlobalIdHeader(bytes: Uint8Array): number {
  if (bytes.length !== 8) throw new FramingError('invalid-id', `the ${APICURIO_VALUE_GLOBAL_ID} header holds ${bytes.length} bytes, not an 8-byte id`);
  const id = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigInt64(0);
  if (id < 0n || id > BigInt(Number.MAX_SAFE_INTEGER)) throw new FramingError('invalid-id', `the ${APICURIO_VALUE_GLOBAL_ID} header names ${id}, which no registry assigns`);
  return Number(id);
}

/** The header value for a global id. */
export function globalIdHeader(id: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigInt64(0, BigInt(id));
  return out;
}

export interface FramedValue {
  /** the schema id (confluent) or global id (apicurio) */
  schemaId: number;
  /** Protobuf only: the path of message indexes to the value's message type in the schema */
  messageIndexes?: number[];
  /** where the encoded body starts */
  bodyOffset: number;
}

export type FramingProblem =
  /** too short to hold the framing */
  | 'truncated'
  /** the first byte is not the magic byte 0 */
  | 'not-framed'
  /** an id that no registry assigns (negative, or past 2^53 for 8-byte ids) */
  | 'invalid-id'
  /** Protobuf message indexes that do not parse (bad varint, negative, too many) */
  | 'invalid-message-indexes';

/** A value whose framing cannot be read: a stable `problem`, for the topic's fail-closed rule and the audit row. */
export class FramingError extends Error {
  readonly problem: FramingProblem;

  constructor(problem: FramingProblem, message: string) {
    super(message);
    this.name = 'FramingError';
    this.problem = problem;
  }
}

const MAGIC = 0x00;
/** deeper nesting than any real .proto file; bounds what a hostile value can make the gateway allocate */
const MAX_MESSAGE_INDEXES = 32;

/** Reads the framing of `value`; `protobuf` says whether message indexes follow the id. */
export function readFraming(value: Uint8Array, framing: Framing, protobuf: boolean): FramedValue {
  const idBytes = framing === 'confluent' ? 4 : 8;
  if (value.length < 1 + idBytes) throw new FramingError('truncated', `a ${framing}-framed value needs at least ${1 + idBytes} bytes, this one has ${value.length}`);
  if (value[0] !== MAGIC) throw new FramingError('not-framed', `a ${framing}-framed value starts with the magic byte 0, this one with ${value[0]}`);
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  let schemaId: number;
  if (framing === 'confluent') {
    schemaId = view.getInt32(1);
  } else {
    const id = view.getBigInt64(1);
    schemaId = id < 0n || id > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(id);
  }
  if (schemaId < 0) throw new FramingError('invalid-id', `the value names schema id ${framing === 'confluent' ? schemaId : view.getBigInt64(1)}, which no registry assigns`);
  let at = 1 + idBytes;
  if (!protobuf) return { schemaId, bodyOffset: at };
  const count = readZigzag(value, at);
  at = count.next;
  if (count.value === 0) return { schemaId, messageIndexes: [0], bodyOffset: at };
  if (count.value < 0 || count.value > MAX_MESSAGE_INDEXES) throw new FramingError('invalid-message-indexes', `the value lists ${count.value} message indexes (at most ${MAX_MESSAGE_INDEXES})`);
  const messageIndexes: number[] = [];
  for (let i = 0; i < count.value; i++) {
    const index = readZigzag(value, at);
    if (index.value < 0) throw new FramingError('invalid-message-indexes', `message index ${index.value} is negative`);
    messageIndexes.push(index.value);
    at = index.next;
  }
  return { schemaId, messageIndexes, bodyOffset: at };
}

/** The framing bytes for `schemaId` (and Protobuf message indexes), to put before an encoded body. */
export function writeFraming(framing: Framing, schemaId: number, messageIndexes?: readonly number[]): Uint8Array {
  if (!Number.isInteger(schemaId) || schemaId < 0 || (framing === 'confluent' ? schemaId > 0x7fffffff : schemaId > Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`${schemaId} is not a ${framing} schema id`);
  }
  const head = new Uint8Array(framing === 'confluent' ? 5 : 9);
  const view = new DataView(head.buffer);
  if (framing === 'confluent') view.setInt32(1, schemaId);
  else view.setBigInt64(1, BigInt(schemaId));
  if (messageIndexes === undefined) return head;
  // the first message of the file has a one-byte shorthand
  const indexes = messageIndexes.length === 1 && messageIndexes[0] === 0 ? [] : [messageIndexes.length, ...messageIndexes];
  const tail: number[] = indexes.length === 0 ? [0] : indexes.flatMap(zigzagBytes);
  const out = new Uint8Array(head.length + tail.length);
  out.set(head);
  out.set(tail, head.length);
  return out;
}

/** A zigzag varint (32-bit, as Protobuf's sint32) at `at`. */
function readZigzag(bytes: Uint8Array, at: number): { value: number; next: number } {
  let raw = 0;
  for (let shift = 0, i = at; shift < 35; shift += 7, i++) {
    if (i >= bytes.length) throw new FramingError('invalid-message-indexes', 'the message indexes end inside a varint');
    const b = bytes[i]!;
    raw += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) {
      if (raw > 0xffffffff) break;
      return { value: raw % 2 === 0 ? raw / 2 : -(raw + 1) / 2, next: i + 1 };
    }
  }
  throw new FramingError('invalid-message-indexes', 'a message index is not a 32-bit varint');
}

function zigzagBytes(n: number): number[] {
  if (!Number.isInteger(n) || n < 0 || n > 0x3fffffff) throw new RangeError(`${n} is not a message index`);
  let raw = n * 2;
  const out: number[] = [];
  while (raw >= 0x80) {
    out.push((raw & 0x7f) | 0x80);
    raw = Math.floor(raw / 128);
  }
  out.push(raw);
  return out;
}
