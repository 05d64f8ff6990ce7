// What a protocol listener needs from the gateway: make operations, run them through the
// controls chain, ask the policy. Its own leaf module so listeners depend on this interface
// and not on the gateway that wires them (which imports the listeners).

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LimitsConfig } from './config/schema.ts';
import type { SchemaRef } from './schemas/serializer.ts';
import type { Action, ClientInfo, Identity, Intent, Next, Operation, Protocol, RecordNeeds, Resource, Session, UpstreamResult } from './operation.ts';

/** What a protocol listener needs from the gateway: make operations and run them. */
export interface Dispatcher {
  newSession(protocol: Protocol, client: ClientInfo): Session;
  newOperation(session: Session, action: Action, resource: Resource): Operation;
  /** the full controls chain, then the upstream */
  run(op: Operation, forward?: Next): Promise<UpstreamResult>;
  /**
   * For requests the listener could not decode: authenticate (an unauthenticated client
   * learns nothing about its request) and audit, then reject with `error`.
   */
  refuse(op: Operation, error: unknown): Promise<never>;
  /**
   * The authenticate control's verification alone, with no audit row: sets `op.identity` from
   * `op.credential`, or rejects with the reason. For listeners that check the credential in the
   * headers before reading a body; on failure they answer through `refuse` (which audits), and
   * on success `run` does not verify again.
   */
  authenticate(op: Operation): Promise<Identity>;
  /** The client's connection closed: audits the session's end (its start is audited by newSession). */
  endSession(session: Session): void;
  /**
   * Audit + authenticate only, for a login (Kafka SASL): resolves with the identity the
   * credential proves, or rejects after the failed attempt is audited.
   */
  login(op: Operation): Promise<Identity>;
  /** The policy's answer without an operation, for filtering listings (Kafka Metadata, ListGroups). */
  permits(identity: Identity, action: Action, resource: Resource): boolean;
  /**
   * Whether the identity may take `action` on every resource of `kind`, whatever its name
   * (a grant for `*` and no deny for the action); for requests whose resources the broker
   * picks (a Kafka regex subscription). Optional for test doubles (then: never).
   */
  permitsEvery?(identity: Identity, action: Action, kind: Resource['kind']): boolean;
  /**
   * What the controls will need of such an operation's records (none, encoded or decoded) and
   * whether they would let it go or hold it, asked once before the listener prepares them: a
   * listener decodes records only when a control will read them. Each control answers for
   * itself (Control.needs).
   */
  needs(intent: Intent): RecordNeeds;
  /** Connection counts, timeouts and rates (config `limits`), read when used so a reload applies. Optional for test doubles. */
  limits?(): LimitsConfig;
  /**
   * The SigV4 secret access key of a just-in-time credential's access key id (Kinesis), or
   * undefined when the id is not one this gateway issues or credentials are not configured.
   */
  sigv4Secret?(accessKeyId: string): string | undefined;
  /**
   * A key or value sent as JSON data with a schema reference, serialized with the schema and
   * framed for `topic` (HTTP produce); rejects with a GatewayError saying why. Absent when no
   * schema registry or catalog is configured.
   */
  serializeWithSchema?(topic: string, ref: SchemaRef, data: unknown, part: 'key' | 'value'): Promise<{ bytes: Uint8Array; format: string; header?: [string, Uint8Array] }>;
  /** The gateway's own endpoints on the HTTP data port (token exchange, JWKS); resolves false when `path` is none of them. */
  serveHttp?(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean>;
}
