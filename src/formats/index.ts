// The record formats the inspection engine can open without knowing the protocol they came
// in: a part (a Kafka partition's record batches, ...) is opened into records, and rebuilt
// from them when a record changed. A listener names the format in `Operation.encoded`; a new
// container format is one entry here. (Formats of the values inside records, such as the
// schema-registry framing of Avro or Protobuf, are a layer below this one.)

import type { RecordFormat, StreamRecord } from '../operation.ts';
import { BatchFormatError, decodeRecords, encodeRecords, streamRecords } from './kafka-batch.ts';

export { BatchFormatError } from './kafka-batch.ts';

export interface RecordContainer<Opened> {
  /** opens one part; throws BatchFormatError when the bytes are not this format (or would decompress past the bound) */
  open(part: Uint8Array): Opened;
  /** the part's records, in order (values and keys are views, not copies) */
  records(opened: Opened): StreamRecord[];
  /** the part rebuilt from `records` starting at `at` (as many as `open` found) */
  rebuild(opened: Opened, records: readonly StreamRecord[], at: number): Uint8Array;
  /** the part must be rebuilt whenever it is forwarded changed at all (it holds bytes that are not records) */
  partial(opened: Opened): boolean;
}

const kafkaBatches: RecordContainer<ReturnType<typeof decodeRecords>> = {
  open: (part) => decodeRecords(part),
  records: (opened) => streamRecords(opened, 0),
  rebuild: (opened, records, at) => encodeRecords(opened, records, at).blob,
  // a partial batch at the end of a Fetch answer
  partial: (opened) => opened.truncated > 0,
};

const FORMATS: Record<RecordFormat, RecordContainer<unknown>> = {
  kafka: kafkaBatches as RecordContainer<unknown>,
};

export function recordContainer(format: RecordFormat): RecordContainer<unknown> {
  const container = FORMATS[format];
  if (!container) throw new BatchFormatError(`unknown record format ${String(format)}`);
  return container;
}
