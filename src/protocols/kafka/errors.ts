// The one place Kafka's error codes are chosen for the gateway's failures (GatewayError kind
// and typed details), and where a refused record is named in a Produce answer.

import { GatewayError, type Operation } from '../../operation.ts';
import { ERR } from './apis.ts';
import type { Struct } from './codec.ts';

export function kafkaErrorFor(err: GatewayError | undefined): number {
  switch (err?.kind) {
    case 'forbidden':
      return ERR.TOPIC_AUTHORIZATION_FAILED;
    case 'unauthenticated':
      return ERR.SASL_AUTHENTICATION_FAILED;
    case 'too-large':
      return ERR.MESSAGE_TOO_LARGE;
    case 'blocked':
      return ERR.POLICY_VIOLATION;
    case 'invalid':
      // a record batch the gateway could not open: what the broker answers for one; a value
      // that does not satisfy the topic's schema rules: the broker's answer to a record it refuses
      if (err.rule === 'records.format') return ERR.CORRUPT_MESSAGE;
      return err.rule?.startsWith('schema.') ? ERR.INVALID_RECORD : ERR.INVALID_REQUEST;
    case 'upstream-unavailable':
      return ERR.REQUEST_TIMED_OUT;
    case 'throttled':
      return ERR.THROTTLING_QUOTA_EXCEEDED;
    default:
      return ERR.UNKNOWN_SERVER_ERROR;
  }
}

/**
 * Produce v8+ (KIP-467): a batch refused by inspection names its offending record, so the
 * Java client reports that record's error and the rest as "part of a batch with an
 * invalid record". The inspect control names the record by its index in the operation.
 */
export function recordErrors(res: Struct, refused: Array<[Operation, GatewayError]>): void {
  for (const [op, err] of refused) {
    const named = err.kind === 'blocked' || err.kind === 'too-large' || (err.kind === 'invalid' && err.rule?.startsWith('schema.') === true);
    const at = err.record !== undefined && named ? recordPosition(op, err.record) : undefined;
    if (!at) continue;
    for (const tr of res.Responses as Struct[]) {
      if (tr.Name !== op.resource.name) continue;
      for (const p of tr.PartitionResponses as Struct[]) {
        if (p.Index === at.partition && 'RecordErrors' in p) p.RecordErrors = [{ BatchIndex: at.index, BatchIndexErrorMessage: err.message }];
      }
    }
  }
}

/** The partition of the operation's i-th record, and its index within that partition's records. */
function recordPosition(op: Operation, i: number): { partition: number; index: number } | undefined {
  if (op.records) {
    const rec = op.records[i];
    if (rec?.partition === undefined) return undefined;
    let index = 0;
    for (let k = 0; k < i; k++) if (op.records[k]!.partition === rec.partition) index++;
    return { partition: rec.partition, index };
  }
  const counts = op.encoded?.counts;
  if (!counts) return undefined;
  let index = i;
  for (let k = 0; k < counts.length; k++) {
    if (index < counts[k]!) return { partition: op.encoded!.partitions[k]!, index };
    index -= counts[k]!;
  }
  return undefined;
}
