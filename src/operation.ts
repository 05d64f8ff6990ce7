/**
 * The one interface between protocols and controls. A listener decodes its wire format
 * into an Operation, the controls chain acts on it, an upstream adapter executes it, and
 * the listener encodes the result (or the GatewayError) back into its own protocol.
 */

export type Protocol = 'http' | 'kafka' | 'kinesis';
export type Action = 'produce' | 'consume' | 'describe' | 'admin';
export type ResourceKind = 'topic' | 'stream' | 'group' | 'transactional-id' | 'cluster';
/** Wire formats of records that controls can inspect without the listener decoding them. */
export type RecordFormat = 'kafka';

export interface Resource {
  kind: ResourceKind;
  name: string;
  partition?: number;
}

export interface ClientInfo {
  address: string;
  /** user agent, Kafka client.id + software name/version, SDK id */
  software?: string;
  /** the client's own id where the protocol has one (Kafka client.id); audited as client_id */
  clientId?: string;
}

/** A client connection (Kafka), keep-alive connection (HTTP) or key lifetime (Kinesis). */
export interface Session {
  id: string;
  protocol: Protocol;
  client: ClientInfo;
  startedAt: number;
  /**
   * Set by listeners whose protocol can slow a client down instead of refusing it (Kafka,
   * KIP-219): the quota control calls it with the delay the client owes.
   */
  throttle?: (ms: number) => void;
}

export interface Identity {
  subject: string;
  issuer: string;
  /** roles the policy derived from the claims; these are what decisions cite */
  roles: string[];
  /** group-like claims as presented, kept for the audit row */
  groups: string[];
  /** epoch seconds; sessions are closed or re-authenticated after it */
  expiresAt?: number;
  claims: Record<string, unknown>;
  /** set when the credential is one the gateway issued (just-in-time, src/jit): its id, for revocation and audit */
  credentialId?: string;
  /** a just-in-time credential's scope: operations outside it are refused even where the policy allows them */
  credentialScope?: ScopeItem[];
}

/** One item of a just-in-time credential's scope: an action on names of one kind (a glob). */
export interface ScopeItem {
  action: Action;
  kind: 'topic' | 'group' | 'transactional-id' | 'cluster';
  pattern: string;
}

/** How the client proved who it is; consumed by the authenticate control, never logged. */
export type Credential =
  /**
   * `username`: the SASL PLAIN user name, which must be the credential id for a just-in-time
   * credential. `accessKeyId`: the SigV4 access key the request was signed with (the token
   * rode as its session token), which must be the one derived from that credential.
   */
  | { scheme: 'bearer'; token: string; username?: string; accessKeyId?: string }
  /** a client certificate the TLS layer already verified against the configured CA (mTLS) */
  | { scheme: 'certificate'; subject: string; issuer: string; groups: string[]; expiresAt: number };

/** A protocol-neutral record. Bytes are views, never copies, until a control rewrites them. */
export interface StreamRecord {
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: Array<[string, Uint8Array]>;
  partition?: number;
  timestamp?: number;
  /** where the upstream stored it, when known: Kafka offset or Kinesis sequence number (consume side, recording) */
  offset?: string;
}

/** What the inspect control learned about the records, for the audit row. */
export interface Inspection {
  /** SHA-256 hex of each original value (empty string for a null value) */
  hashes: string[];
  /** SHA-256 hex of each value as forwarded, only where it differs from the original */
  maskedHashes: Array<string | null>;
  /** rule id -> number of matches masked across the batch */
  masking: Record<string, number>;
  /** where the batch was inspected: inline on the accept thread or in the pool */
  where: 'inline' | 'pool' | 'none';
  /** facts worth auditing, e.g. `json-fallback:3` (records scanned as bytes because their JSON was malformed) */
  notes: string[];
  /** per record, 1 where a decrypt rule revealed a value in clear (session recording never keeps such a value in clear) */
  revealed?: Uint8Array;
}

export interface EncodedRecords {
  /** the wire format (src/inspect/encoded.ts knows how to open it) */
  format: RecordFormat;
  /** one blob per partition */
  parts: Uint8Array[];
  /** the partition of each part */
  partitions: number[];
  /** about how many bytes the parts decode to (chooses inline or pool inspection) */
  decodedBytes: number;
  /** after inspection: which parts were re-encoded, and how many records each holds */
  changed?: boolean[];
  counts?: number[];
}

export interface BatchSummary {
  records: number;
  bytes: number;
  /** SHA-256 hex over the record bytes as they crossed the gateway */
  hash: string;
}

export interface RecordOutcome {
  partition: number;
  offset: string;
  timestamp: number;
}

export interface UpstreamResult {
  records?: RecordOutcome[];
}

export interface Operation {
  id: string;
  /** epoch ms, for the audit trail */
  receivedAt: number;
  /** performance.now() when decoded, for latency */
  startedAt: number;
  session: Session;
  protocol: Protocol;
  action: Action;
  resource: Resource;
  records?: StreamRecord[];
  credential?: Credential;
  identity?: Identity;
  inspection?: Inspection;
  /**
   * Records forwarded as opaque wire batches (Kafka passthrough): counted from the batch
   * headers and hashed as bytes, never decoded. The seam for record-level Kafka inspection
   * is `records`: a control that needs them decodes the batch and fills it.
   */
  batch?: BatchSummary;
  /**
   * Records still in their wire encoding, for the inspect control to hand to the engine as
   * they are (decoded, masked and re-encoded in one task, off the accept thread when large).
   * A listener sets it instead of `records` when no control needs the decoded records; the
   * inspect control replaces the parts whose records changed.
   */
  encoded?: EncodedRecords;
  /**
   * Per-record refusals, set (empty) by a listener whose protocol answers each record on its
   * own (Kinesis PutRecords, the REST batch). A control that refuses one record (blocked by
   * inspection, over the record size limit) refuses it here instead of refusing the whole
   * operation; when no record is left the operation is refused with the first refusal. The
   * upstream forwards only the records not refused, and answers each refused one with no
   * position (partition -1).
   */
  refusals?: Refusals<number>;
  /**
   * How long the client waits for the answer, where its protocol says so: a Kafka produce's
   * timeout less a margin; 0 when it must be answered at once (HTTP `Prefer: respond-async`,
   * a Kafka request without a timeout). Bounds how long an approval may hold the operation;
   * undefined: the approval rule's maxWait alone.
   */
  answerWithinMs?: number;
  /**
   * Set by authorize: the grants refuse this operation by default but an approval rule covers
   * it, so the approve control must hold it for a decision (or refuse it).
   */
  beyondGrants?: boolean;
  /** protocol-specific facts worth auditing (api key, request path, ...) */
  meta: Record<string, string | number>;
  /** aborts when the client is gone (its connection closed): a control that waits (approve) stops and drops the operation */
  signal?: AbortSignal;
}

/**
 * What a refusal is about, as typed fields: listeners render them in their protocol's terms
 * (a Kafka per-record error, Retry-After, the approval URL, ExpiredTokenException) and never
 * read them back out of the message.
 */
export interface FailureDetails {
  /** the policy or inspection rule that decided, when one did */
  rule?: string;
  /** the refused record: its index in the operation's records (`records`, or `encoded` parts in order) */
  record?: number;
  /** when the client may try again (throttled) */
  retryAfterMs?: number;
  /** the approval request the operation was held for */
  approval?: { id: string; url: string; status: string };
  /** the credential was genuine but has expired (a client should renew it, not give up) */
  expired?: boolean;
  cause?: unknown;
}

/** Why an operation was refused or failed; listeners map `kind` and the details to their own errors. */
export type FailureKind =
  | 'unauthenticated'
  | 'forbidden'
  | 'blocked'
  | 'too-large'
  /** over a rate limit (limits.rate); the message says when to retry */
  | 'throttled'
  | 'invalid'
  | 'not-found'
  | 'upstream-unavailable'
  | 'upstream-error'
  | 'internal';

export class GatewayError extends Error {
  readonly kind: FailureKind;
  /** the policy or inspection rule that decided, when one did */
  readonly rule: string | undefined;
  readonly record: number | undefined;
  readonly retryAfterMs: number | undefined;
  readonly approval: FailureDetails['approval'];
  readonly expired: boolean;

  constructor(kind: FailureKind, message: string, details?: FailureDetails) {
    super(message, details?.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'GatewayError';
    this.kind = kind;
    this.rule = details?.rule;
    this.record = details?.record;
    this.retryAfterMs = details?.retryAfterMs;
    this.approval = details?.approval;
    this.expired = details?.expired === true;
  }
}

/**
 * The elements of a request refused so far, and why: the records of one operation (see
 * `Operation.refusals`) or the operations of one request (a Kafka request naming several
 * topics, groups or configs, each its own operation and audit row). The one model of partial
 * refusal: controls refuse elements, what is left is forwarded, and each protocol renders the
 * refusals in its own terms (Kafka per-topic and per-partition error codes with KIP-467
 * record errors, Kinesis per-record ErrorCode, the REST batch's 207 failures). An element's
 * first refusal is the one reported.
 */
export class Refusals<E> implements Iterable<[E, GatewayError]> {
  readonly #byElement = new Map<E, GatewayError>();

  refuse(element: E, error: GatewayError): void {
    if (!this.#byElement.has(element)) this.#byElement.set(element, error);
  }

  get(element: E): GatewayError | undefined {
    return this.#byElement.get(element);
  }

  has(element: E): boolean {
    return this.#byElement.has(element);
  }

  get size(): number {
    return this.#byElement.size;
  }

  /** the earliest refusal, the one a request refused as a whole reports */
  first(): [E, GatewayError] | undefined {
    for (const entry of this.#byElement) return entry;
    return undefined;
  }

  [Symbol.iterator](): Iterator<[E, GatewayError]> {
    return this.#byElement[Symbol.iterator]();
  }
}

/** The indexes of `records` an upstream forwards: those `op.refusals` does not refuse. */
export function keptRecords(op: Operation, count: number): number[] {
  const kept: number[] = [];
  for (let i = 0; i < count; i++) if (!op.refusals?.has(i)) kept.push(i);
  return kept;
}

export type Next = (op: Operation) => Promise<UpstreamResult>;

/**
 * A control wraps the rest of the chain (onion style, like undici interceptors): it may
 * refuse by throwing a GatewayError, rewrite the operation before calling next, or act
 * on the result after it. Each control is one concern.
 */
export interface Control {
  readonly name: string;
  handle(op: Operation, next: Next): Promise<UpstreamResult>;
  /**
   * What this control will need of such an operation's records, and whether it would let it
   * go or hold it, answered before the listener prepares them (see RecordNeeds). Only
   * controls that read records or decide add to `needs`; the rest leave it as it is.
   */
  needs?(intent: Intent, needs: RecordNeeds): void;
}

/** Who asks to do what on which resource: what a control's `needs` may look at. */
export type Intent = Pick<Operation, 'protocol' | 'action' | 'resource'> & { identity: Identity };

/**
 * What the controls chain will need of an operation, asked once by a listener before it
 * prepares the operation's records, so the hot path decodes nothing the chain will not read
 * (and the controls keep their own logic: the listener only reads the answer).
 */
export interface RecordNeeds {
  /**
   * 'none': the records are counted and hashed as bytes; 'encoded': a control reads the values
   * in their wire encoding (`Operation.encoded`); 'decoded': a control needs every record as a
   * StreamRecord with its position (`Operation.records`).
   */
  records: 'none' | 'encoded' | 'decoded';
  /** the chain would let it go as things stand: authorized, or an approval may allow it */
  mayGo: boolean;
  /** an approval rule covers it: it may be held until someone decides */
  mayHold: boolean;
}

export interface Upstream {
  execute(op: Operation): Promise<UpstreamResult>;
  /** true when the upstream currently answers; used by readiness */
  ready(): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * The controls composed around a terminal: controls[0] is outermost. `terminal` is where an
 * allowed operation ends (the listener's own forwarding, e.g. a Kafka request it writes to
 * the broker itself; default: the upstream); `through` runs only the first controls (a login
 * runs the outer ones up to authenticate, then its own terminal).
 */
export type Chain = (op: Operation, terminal?: Next, through?: number) => Promise<UpstreamResult>;

export function composeChain(controls: readonly Control[], upstream: Upstream): Chain {
  const execute: Next = (op) => upstream.execute(op);
  return (op, terminal = execute, through = controls.length) => {
    // each step is made when the control before it calls next: a refused operation makes no more
    const step = (i: number): Next => (i >= through ? terminal : (o) => controls[i]!.handle(o, step(i + 1)));
    return step(0)(op);
  };
}
