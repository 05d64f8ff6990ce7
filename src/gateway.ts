import { hostname } from 'node:os';
import { v7 as uuidv7 } from 'uuid';
import type { Config } from './config/schema.ts';
import type { Logger } from './log.ts';
import { AuditSpool } from './audit/spool.ts';
import { Audit } from './controls/audit.ts';
import { Authenticate } from './controls/authenticate.ts';
import { Authorize } from './controls/authorize.ts';
import { Inspect } from './controls/inspect.ts';
import { OidcVerifier } from './identity/oidc.ts';
import { Inspector } from './inspect/inspector.ts';
import { RuleBook } from './inspect/rules.ts';
import { composeChain, GatewayError, type Action, type ClientInfo, type Control, type Next, type Operation, type Protocol, type Resource, type Session, type Upstream, type UpstreamResult } from './operation.ts';
import { Policy } from './policy/policy.ts';
import { HttpListener } from './protocols/http/listener.ts';
import { AckUpstream } from './upstream/ack.ts';
import { KafkaUpstream } from './upstream/kafka.ts';

/** What a protocol listener needs from the gateway: make operations and run them. */
export interface Dispatcher {
  newSession(protocol: Protocol, client: ClientInfo): Session;
  newOperation(session: Session, action: Action, resource: Resource): Operation;
  /** the full controls chain, then the upstream */
  run(op: Operation): Promise<UpstreamResult>;
  /**
   * For requests the listener could not decode: authenticate (an unauthenticated client
   * learns nothing about its request) and audit, then reject with `error`.
   */
  refuse(op: Operation, error: unknown): Promise<never>;
}

export interface Addresses {
  http?: { host: string; port: number };
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
  readonly #inspector: Inspector;
  readonly #upstream: Upstream;
  readonly #chain: Next;
  readonly #refuseChain: (op: Operation, error: unknown) => Promise<UpstreamResult>;
  #http: HttpListener | undefined;

  private constructor(config: Config, log: Logger) {
    this.config = config;
    this.log = log;
    this.#instance = config.instance ?? hostname();
    this.#policy = new Policy(config.policy);
    this.#rules = new RuleBook(config.inspection);
    this.#verifier = new OidcVerifier(config.identity.issuers);
    this.#spool = new AuditSpool(config.audit.spool);
    this.#inspector = new Inspector(config.inspection);
    this.#upstream = 'kafka' in config.upstream ? new KafkaUpstream(config.upstream.kafka) : new AckUpstream();

    const policy = () => this.#policy;
    const audit = new Audit(this.#spool, () => ({ instance: this.#instance, policyVersion: this.#policy.version }), log);
    const authenticate = new Authenticate(this.#verifier, policy);
    const controls: Control[] = [
      audit,
      authenticate,
      new Authorize(policy),
      new Inspect(this.#inspector, () => this.#rules, () => this.config.inspection.limits),
    ];
    this.#chain = composeChain(controls, this.#upstream);
    this.#refuseChain = (op, error) =>
      audit.handle(op, (o) => authenticate.handle(o, () => Promise.reject(error)));
  }

  static async start(config: Config, log: Logger): Promise<Gateway> {
    const gateway = new Gateway(config, log);
    try {
      await gateway.#inspector.warmUp();
      // an issuer that cannot be reached yet is retried on the first token; say so, do not die
      await gateway.#verifier.warmUp().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'identity provider not reachable yet'));
      if (config.listeners.http) {
        gateway.#http = new HttpListener(config.listeners.http, gateway, log);
        gateway.addresses.http = await gateway.#http.listen();
        log.info({ ...gateway.addresses.http, policy: gateway.#policy.version }, 'HTTP listener ready');
      }
    } catch (err) {
      await gateway.close();
      throw err;
    }
    return gateway;
  }

  newSession(protocol: Protocol, client: ClientInfo): Session {
    return { id: uuidv7(), protocol, client, startedAt: Date.now() };
  }

  newOperation(session: Session, action: Action, resource: Resource): Operation {
    return { id: uuidv7(), receivedAt: Date.now(), startedAt: performance.now(), session, protocol: session.protocol, action, resource, meta: {} };
  }

  run(op: Operation): Promise<UpstreamResult> {
    return this.#chain(op);
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
    await this.#inspector.close().catch(() => {});
    await this.#upstream.close().catch(() => {});
    await this.#spool.close();
  }
}
