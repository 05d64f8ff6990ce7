import { GatewayError, type FailureKind } from '../../operation.ts';
import { KinesisError } from '../../upstream/kinesis.ts';

/**
 * Kinesis error answers: `{"__type": "<Type>", "message": "..."}` with the HTTP status AWS
 * uses, so SDK retry logic behaves as against Kinesis (400s are not retried except
 * throughput/throttling ones, 500/503 are). A GatewayError whose cause is a KinesisError
 * (from the upstream, or a specific type the listener chose) is answered with that type.
 */
const BY_KIND: Record<FailureKind, { type: string; status: number }> = {
  unauthenticated: { type: 'UnrecognizedClientException', status: 400 },
  forbidden: { type: 'AccessDeniedException', status: 400 },
  // Kinesis has no "blocked": a record its policy refuses is an argument it cannot accept
  blocked: { type: 'InvalidArgumentException', status: 400 },
  'too-large': { type: 'InvalidArgumentException', status: 400 },
  invalid: { type: 'ValidationException', status: 400 },
  'not-found': { type: 'ResourceNotFoundException', status: 400 },
  throttled: { type: 'ProvisionedThroughputExceededException', status: 400 },
  'upstream-unavailable': { type: 'ServiceUnavailable', status: 503 },
  'upstream-error': { type: 'InternalFailure', status: 500 },
  internal: { type: 'InternalFailure', status: 500 },
};

export interface KinesisErrorAnswer {
  status: number;
  type: string;
  message: string;
}

export function kinesisErrorFor(err: unknown): KinesisErrorAnswer {
  if (err instanceof GatewayError) {
    if (err.cause instanceof KinesisError) return { status: err.cause.status, type: err.cause.type, message: err.cause.message || err.message };
    if (err.kind === 'unauthenticated' && err.expired) {
      return { status: 400, type: 'ExpiredTokenException', message: `The security token included in the request is expired (${err.message})` };
    }
    const { type, status } = BY_KIND[err.kind];
    return { status, type, message: err.message };
  }
  if (err instanceof KinesisError) return { status: err.status, type: err.type, message: err.message };
  return { status: 500, type: 'InternalFailure', message: 'internal error' };
}

/** A refusal with an exact Kinesis error type (the audit row keeps `kind`). */
export function kinesisRefusal(kind: FailureKind, type: string, message: string, status = 400): GatewayError {
  return new GatewayError(kind, message, { cause: new KinesisError(type, message, status) });
}
