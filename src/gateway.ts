import { hostname } from 'node:os';
import { v7 as uuidv7 } from 'uuid';
import type { Config } from './config/schema.ts';
import type { Logger } from './log.ts';
import { AuditSpool } from './audit/spool.ts';
import { loadSigner } from './audit/chain.ts';
import { eventRow, sessionRow, type AuditEvent, type AuditRow, type RowContext } from './audit/row.ts';
import { ClickHouseShipper } from './audit/shipper.ts';
import { Audit } from './controls/audit.ts';
import { Authenticate } from './controls/authenticate.ts';
import { Authorize } from './controls/authorize.ts';
import { Inspect } from './controls/inspect.ts';
import { OidcVerifier } from './identity/oidc.ts';
import { Inspector } from './inspect/inspector.ts';
import { RuleBook } from './inspect/rules.ts';
import { composeChain, GatewayError, type Action, type ClientInfo, type Control, type Identity, type Next, type Operation, type Protocol, type Resource, type Session, type Upstream, type UpstreamResult } from './operation.ts';
import { Policy } from './policy/policy.ts';
import { HttpListener } from './protocols/http/listener.ts';
import { KafkaListener } from './protocols/kafka/listener.ts';
import { AckUpstream } from './upstream/ack.ts';
import { KafkaUpstream } from './upstream/kafka.ts';

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
  /** The client's connection closed: audits the session's end (its start is audited by newSession). */
  endSession(session: Session): void;
  /**
   * Audit + authenticate only, for a login (Kafka SASL): resolves with the identity the
   * credential proves, or rejects after the failed attempt is audited.
   */
  login(op: Operation): Promise<Identity>;
  /** The policy's answer without an operation, for filtering listings (Kafka Metadata, ListGroups). */
  permits(identity: Identity, action: Action, resource: Resource): boolean;
}

export interface Addresses {
  http?: { host: string; port: number };
  /** the Kafka listener's bootstrap address */
  kafka?: { host: string; port: number };
}

/** Wires config -> controls -> upstream -> listeners. The order of `controls` is the data flow. */
export class Gateway implements Dispatcher {
  readonly config: Config;
  readonly log: Logger;
  readonly addresses: Addresses = {};
  readonly #instance: string;
  readonly #policy: Policy;
  readonly #rules: RuleBook;
  readonly #verifier: OidcVerifier;
  readonly #spool: AuditSpool;
  readonly #shipper: ClickHouseShipper | undefined;
  readonly #rowContext: () => RowContext;
  readonly #inspector: Inspector;
  readonly #upstream: Upstream;
  readonly #chain: Next;
  readonly #refuseChain: (op: Operation, error: unknown) => Promise<UpstreamResult>;
  #http: HttpListener | undefined;
  #kafka: KafkaListener | undefined;
  readonly #login: (op: Operation) => Promise<UpstreamResult>;
  /** per-operation terminal for listeners that forward the request themselves (Kafka); default: the configured upstream */
  readonly #forwards = new WeakMap<Operation, Next>();

  private constructor(config: Config, log: Logger) {
    this.config = config;
    this.log = log;
    this.#instance = config.instance ?? hostname();
    this.#policy = new Policy(config.policy);
    this.#rules = new RuleBook(config.inspection);
    this.#verifier = new OidcVerifier(config.identity.issuers);
    this.#rowContext = () => ({ instance: this.#instance, policyVersion: this.#policy.version });
    this.#spool = new AuditSpool(config.audit.spool, { signer: loadSigner(config.audit.spool.signingKey), context: this.#rowContext, log, shipping: config.audit.clickhouse !== undefined });
    this.#shipper = config.audit.clickhouse ? new ClickHouseShipper(this.#spool, config.audit.clickhouse, log) : undefined;
    this.#inspector = new Inspector(config.inspection, this.#rules.program);
    this.#upstream = 'kafka' in config.upstream ? new KafkaUpstream(config.upstream.kafka) : new AckUpstream();

    const policy = () => this.#policy;
    const audit = new Audit(this.#spool, this.#rowContext, log);
    const authenticate = new Authenticate(this.#verifier, policy);
    const controls: Control[] = [
      audit,
      authenticate,
      new Authorize(policy),
      new Inspect(this.#inspector, () => this.#rules, () => this.config.inspection.limits),
    ];
    const upstream = this.#upstream;
    const forwards = this.#forwards;
    this.#chain = composeChain(controls, {
      execute: (op) => (forwards.get(op) ?? ((o: Operation) => upstream.execute(o)))(op),
      ready: () => upstream.ready(),
      close: () => upstream.close(),
    });
    this.#login = (op) => audit.handle(op, (o) => authenticate.handle(o, () => Promise.resolve({})));
    this.#refuseChain = (op, error) =>
      audit.handle(op, (o) => authenticate.handle(o, () => Promise.reject(error)));
  }

  static async start(config: Config, log: Logger): Promise<Gateway> {
    const gateway = new Gateway(config, log);
    try {
      // ships what earlier runs left in the spool too; never waits for ClickHouse
      gateway.#shipper?.start();
      await gateway.#inspector.warmUp();
      // an issuer that cannot be reached yet is retried on the first token; say so, do not die
      await gateway.#verifier.warmUp().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'identity provider not reachable yet'));
      if (config.listeners.http) {
        gateway.#http = new HttpListener(config.listeners.http, gateway, log);
        gateway.addresses.http = await gateway.#http.listen();
        log.info({ ...gateway.addresses.http, policy: gateway.#policy.version }, 'HTTP listener ready');
      }
      if (config.listeners.kafka && !('kafka' in config.upstream)) {
        // the ack upstream (benchmarks) has no broker to speak the Kafka protocol to
        log.warn('listeners.kafka is ignored: the Kafka listener needs upstream.kafka, not the ack upstream');
      } else if (config.listeners.kafka && 'kafka' in config.upstream) {
        gateway.#kafka = new KafkaListener(config.listeners.kafka, config.upstream.kafka, gateway, log);
        gateway.addresses.kafka = await gateway.#kafka.listen();
        log.info({ ...gateway.addresses.kafka }, 'Kafka listener ready');
      }
    } catch (err) {
      await gateway.close();
      throw err;
    }
    return gateway;
  }

  newSession(protocol: Protocol, client: ClientInfo): Session {
    const session = { id: uuidv7(), protocol, client, startedAt: Date.now() };
    this.#auditSession(session, 'session-start');
    return session;
  }

  endSession(session: Session): void {
    this.#auditSession(session, 'session-end');
  }

  #auditSession(session: Session, event: 'session-start' | 'session-end'): void {
    // nothing waits on a session row; a failed write already fails the operations around it
    this.#spool.append(sessionRow(this.#rowContext(), session, event)).catch((err: unknown) => this.log.error({ err, session: session.id }, `audit ${event} row not written`));
  }

  /** the ClickHouse shipper, when audit.clickhouse is configured */
  get auditShipper(): ClickHouseShipper | undefined {
    return this.#shipper;
  }

  get auditSpool(): AuditSpool {
    return this.#spool;
  }

  /** Audits an event that is not an operation (approval requests and decisions); resolves once durable. */
  recordEvent(event: Exclude<AuditEvent, 'operation' | 'session-start' | 'session-end'>, fields: Partial<AuditRow>): Promise<void> {
    return this.#spool.append(eventRow(this.#rowContext(), event, fields));
  }

  newOperation(session: Session, action: Action, resource: Resource): Operation {
    return { id: uuidv7(), receivedAt: Date.now(), startedAt: performance.now(), session, protocol: session.protocol, action, resource, meta: {} };
  }

  run(op: Operation, forward?: Next): Promise<UpstreamResult> {
    if (forward) this.#forwards.set(op, forward);
    return this.#chain(op);
  }

  async login(op: Operation): Promise<Identity> {
    await this.#login(op);
    if (!op.identity) throw new GatewayError('unauthenticated', 'no identity after authentication');
    return op.identity;
  }

  permits(identity: Identity, action: Action, resource: Resource): boolean {
    return this.#policy.decide(identity, action, resource.name, resource.kind).allowed;
  }

  async refuse(op: Operation, error: unknown): Promise<never> {
    await this.#refuseChain(op, error);
    throw new GatewayError('internal', 'refused operation was not refused'); // unreachable: the chain always rejects
  }

  async upstreamReady(): Promise<boolean> {
    return this.#upstream.ready();
  }

  async close(): Promise<void> {
    await this.#http?.close().catch(() => {});
    await this.#kafka?.close().catch(() => {});
    await this.#inspector.close().catch(() => {});
    await this.#upstream.close().catch(() => {});
    await this.#shipper?.stop().catch(() => {});
    await this.#spool.close();
  }
}
