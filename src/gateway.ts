import { hostname } from 'node:os';
import { v7 as uuidv7 } from 'uuid';
import type { Config, LimitsConfig } from './config/schema.ts';
import { setLogLevel, type Logger } from './log.ts';
import { AuditSpool } from './audit/spool.ts';
import { loadSigner } from './audit/chain.ts';
import { eventRow, sessionRow, type AuditEvent, type AuditRow, type RowContext } from './audit/row.ts';
import { ClickHouseShipper } from './audit/shipper.ts';
import { Audit } from './controls/audit.ts';
import { Authenticate } from './controls/authenticate.ts';
import { Authorize } from './controls/authorize.ts';
import { Approve } from './controls/approve.ts';
import { ApprovalRules } from './approvals/rules.ts';
import { ApprovalService } from './approvals/service.ts';
import { approvalRoutes } from './approvals/api.ts';
import { Inspect } from './controls/inspect.ts';
import { Metrics } from './controls/metrics.ts';
import { Quota } from './controls/quota.ts';
import { Recording } from './controls/record.ts';
import { Recorder } from './recording/recorder.ts';
import { sessionRoutes } from './recording/api.ts';
import { registerRecordingMetrics } from './recording/metrics.ts';
import { AdminListener, withTimeout, type Check } from './ops/admin.ts';
import { GatewayMetrics } from './ops/metrics.ts';
import { OidcVerifier } from './identity/oidc.ts';
import { Inspector } from './inspect/inspector.ts';
import { RuleBook } from './inspect/rules.ts';
import { composeChain, GatewayError, type Action, type ClientInfo, type Control, type Identity, type Next, type Operation, type Protocol, type Resource, type Session, type Upstream, type UpstreamResult } from './operation.ts';
import { Policy } from './policy/policy.ts';
import { HttpListener } from './protocols/http/listener.ts';
import { KafkaListener } from './protocols/kafka/listener.ts';
import { AckUpstream } from './upstream/ack.ts';
import { KafkaUpstream } from './upstream/kafka.ts';
import { NoUpstream } from './upstream/none.ts';
import { KinesisListener } from './protocols/kinesis/listener.ts';
import { openStateStore } from './state/open.ts';
import type { StateStore } from './state/store.ts';
import type { AccessKeys } from './jit/access-keys.ts';
import { loadAccessKeys } from './jit/access-secret.ts';
import { JitCredentials, revocationMatches } from './jit/credentials.ts';
import { CredentialEndpoints } from './jit/endpoints.ts';
import { SamlVerifier } from './jit/saml.ts';
import { scopeRefusal } from './jit/scope.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from './dispatcher.ts';

export type { Dispatcher } from './dispatcher.ts';

export interface Addresses {
  http?: { host: string; port: number };
  /** the Kafka listener's bootstrap address */
  kafka?: { host: string; port: number };
  /** the Kinesis API listener (HTTP/1.1 and cleartext HTTP/2) */
  kinesis?: { host: string; port: number };
  /** metrics, liveness, readiness */
  admin?: { host: string; port: number };
}

/** What a reload changed; `restartNeeded` names sections whose changes wait for a restart. */
export interface ReloadResult {
  applied: string[];
  restartNeeded: string[];
  policyVersion: string;
}

/** Sections bound to sockets, connections or files opened at start: changing them needs a restart. */
const RESTART_SECTIONS = ['instance', 'listeners', 'upstream', 'identity', 'audit', 'metrics', 'state', 'credentials', 'recording'] as const;
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Wires config -> controls -> upstream -> listeners. The order of `controls` is the data flow. */
export class Gateway implements Dispatcher {
  #config: Config;
  readonly log: Logger;
  readonly addresses: Addresses = {};
  readonly metrics: GatewayMetrics;
  /** shared state (config `state`): one store per gateway, used by JIT credentials and approvals */
  readonly state: StateStore;
  /** approval requests, decisions and grants (in `state`, so shared by every instance on it) */
  readonly approvals: ApprovalService;
  /** policy.approvals compiled; swapped with the policy on reload */
  #approvalRules: ApprovalRules;
  #accessKeys: AccessKeys | undefined;
  /** just-in-time credentials (config `credentials`), made at start once the shared secrets are loaded */
  #jit: JitCredentials | undefined;
  #credentialEndpoints: CredentialEndpoints | undefined;
  readonly #instance: string;
  // policy, rules and inspector are swapped whole by reload(); the chain reads them per operation
  #policy: Policy;
  #rules: RuleBook;
  readonly #verifier: OidcVerifier;
  readonly #spool: AuditSpool;
  readonly #shipper: ClickHouseShipper | undefined;
  /** session recording, when the config has a recording section */
  readonly #recorder: Recorder | undefined;
  readonly #rowContext: () => RowContext;
  #inspector: Inspector;
  /** inspectors replaced by a reload, closed once their in-flight batches are done */
  readonly #retired = new Set<Inspector>();
  #wasmReady = false;
  #admin: AdminListener | undefined;
  #adminRoutesPort: number | undefined;
  readonly #upstream: Upstream;
  readonly #quota = new Quota(() => this.#config.limits);
  readonly #chain: Next;
  readonly #refuseChain: (op: Operation, error: unknown) => Promise<UpstreamResult>;
  #http: HttpListener | undefined;
  #kafka: KafkaListener | undefined;
  #kinesis: KinesisListener | undefined;
  readonly #login: (op: Operation) => Promise<UpstreamResult>;
  readonly #authenticateOnly: (op: Operation) => Promise<UpstreamResult>;
  /** per-operation terminal for listeners that forward the request themselves (Kafka); default: the configured upstream */
  readonly #forwards = new WeakMap<Operation, Next>();

  private constructor(config: Config, log: Logger) {
    this.#config = config;
    this.log = log;
    this.#instance = config.instance ?? hostname();
    this.state = openStateStore(config.state);
    this.#approvalRules = new ApprovalRules(config.policy.approvals ?? []);
    this.approvals = new ApprovalService({
      store: this.state,
      rules: () => this.#approvalRules,
      config: () => this.#config.approvals,
      baseUrl: () => this.#config.approvals.publicUrl ?? (this.addresses.admin ? `http://${this.addresses.admin.host.includes(':') ? `[${this.addresses.admin.host}]` : this.addresses.admin.host}:${this.addresses.admin.port}` : ''),
      instance: this.#instance,
      record: (event, fields) => this.recordEvent(event, fields),
      log,
    });
    this.#policy = new Policy(config.policy);
    this.#rules = new RuleBook(config.inspection);
    this.#verifier = new OidcVerifier(config.identity.issuers);
    this.#rowContext = () => ({ instance: this.#instance, policyVersion: this.#policy.version });
    this.#spool = new AuditSpool(config.audit.spool, { signer: loadSigner(config.audit.spool.signingKey), context: this.#rowContext, log, shipping: config.audit.clickhouse !== undefined });
    this.#shipper = config.audit.clickhouse ? new ClickHouseShipper(this.#spool, config.audit.clickhouse, log) : undefined;
    this.#recorder = config.recording
      ? new Recorder(config.recording, { instance: this.#instance, log, clickhouse: config.audit.clickhouse, note: (fields) => void this.recordEvent('spool-gap', fields).catch((err: unknown) => log.error({ err }, 'recording note not audited')) })
      : undefined;
    this.#inspector = new Inspector(config.inspection, this.#rules.program);
    this.#upstream = 'kafka' in config.upstream ? new KafkaUpstream(config.upstream.kafka) : 'kind' in config.upstream ? new AckUpstream() : new NoUpstream();

    this.metrics = new GatewayMetrics(config.metrics, {
      poolQueueSize: () => this.#inspector.poolQueueSize,
      policyVersion: () => this.#policy.version,
      audit: () => ({
        healthy: this.#spool.healthy,
        unshippedBytes: this.#spool.unshippedBytes,
        rowsWritten: this.#spool.rowsWritten,
        rowsDropped: this.#spool.rowsDropped,
        shipper: this.#shipper?.stats,
      }),
    });

    const recorder = this.#recorder;
    if (recorder) registerRecordingMetrics(this.metrics.registry, () => recorder.stats);
    const policy = () => this.#policy;
    const metrics = new Metrics(this.metrics, log);
    const audit = new Audit(this.#spool, this.#rowContext, log);
    const authenticate = new Authenticate(this.#verifier, policy, () => this.#jit);
    const controls: Control[] = [
      metrics,
      audit,
      authenticate,
      this.#quota,
      new Authorize(policy, (op) => this.#approvalRules.match(op.identity!, op.action, op.resource) !== undefined),
      new Approve(() => this.#approvalRules, this.approvals),
      new Recording(() => this.#recorder),
      new Inspect(
        { inspect: (values, ruleset) => this.#inspector.inspect(values, ruleset), inspectEncoded: (task, bytes) => this.#inspector.inspectEncoded(task, bytes) },
        () => this.#rules,
        () => this.#config.inspection.limits,
      ),
    ];
    const upstream = this.#upstream;
    const forwards = this.#forwards;
    const meter = this.metrics;
    this.#chain = composeChain(controls, {
      // timed here, around the upstream call itself: the rest of the chain is the gateway's own time
      execute: (op) => meter.timeUpstream(op, () => (forwards.get(op) ?? ((o: Operation) => upstream.execute(o)))(op)),
      ready: () => upstream.ready(),
      close: () => upstream.close(),
    });
    const quota = this.#quota;
    this.#login = (op) =>
      metrics.handle(op, (m) =>
        audit.handle(m, (o) =>
          authenticate.handle(o, (a) => {
            quota.admitSession(a);
            return Promise.resolve({});
          }),
        ),
      );
    this.#authenticateOnly = (op) => authenticate.handle(op, () => Promise.resolve({}));
    this.#refuseChain = (op, error) =>
      metrics.handle(op, (m) => audit.handle(m, (o) => authenticate.handle(o, () => Promise.reject(error))));
  }

  get config(): Config {
    return this.#config;
  }

  /** A cluster worker's loopback port for the admin routes (approvals, credentials, sessions), which the primary forwards to. */
  get adminRoutesPort(): number | undefined {
    return this.#adminRoutesPort;
  }

  /**
   * `admin: false` leaves the admin listener to someone else (the cluster primary serves
   * it for all workers with their metrics aggregated); `admin: 'routes'` (cluster workers)
   * serves the admin routes on a loopback port the primary forwards to.
   */
  static async start(config: Config, log: Logger, options: { admin?: boolean | 'routes' } = {}): Promise<Gateway> {
    const gateway = new Gateway(config, log);
    try {
      // ships what earlier runs left in the spool too; never waits for ClickHouse
      gateway.#shipper?.start();
      await gateway.#recorder?.warmUp();
      if (config.credentials) await gateway.#startCredentials(config.credentials);
      await gateway.#inspector.warmUp();
      gateway.#wasmReady = true;
      await gateway.approvals.start(gateway.metrics.registry);
      if (config.listeners.admin && options.admin !== false) {
        // a cluster worker serves the control-plane routes on a loopback port of its own; the primary forwards to it
        const routesOnly = options.admin === 'routes';
        gateway.#admin = new AdminListener(routesOnly ? { host: '127.0.0.1', port: 0 } : config.listeners.admin, {
          metrics: async () => ({ contentType: gateway.metrics.registry.contentType, body: await gateway.metrics.render() }),
          readiness: () => gateway.readiness(),
          routes: [approvalRoutes(gateway.approvals, (token) => gateway.identify(token), log), ...(gateway.#credentialEndpoints ? [gateway.#credentialEndpoints.adminRoute()] : []), ...(gateway.#recorder ? [gateway.#sessionRoutes(gateway.#recorder.dir)] : [])],
        }, log);
        const address = await gateway.#admin.listen();
        if (routesOnly) {
          gateway.#adminRoutesPort = address.port;
          log.info(address, 'worker admin routes ready (the primary forwards to them)');
        } else {
          gateway.addresses.admin = address;
          log.info({ ...gateway.addresses.admin }, 'admin listener ready (/metrics, /livez, /readyz)');
        }
      }
      // an issuer that cannot be reached yet is retried on the first token; say so, do not die
      await gateway.#verifier.warmUp().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'identity provider not reachable yet'));
      if (config.listeners.http) {
        gateway.#http = new HttpListener(config.listeners.http, gateway, log, {
          opened: (l) => gateway.metrics.connectionOpened(l),
          closed: (l) => gateway.metrics.connectionClosed(l),
        });
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
      if (config.listeners.kinesis && !config.upstream.kinesis) {
        log.warn('listeners.kinesis is ignored: the Kinesis listener needs upstream.kinesis');
      } else if (config.listeners.kinesis && config.upstream.kinesis) {
        gateway.#kinesis = new KinesisListener(
          config.listeners.kinesis,
          config.upstream.kinesis,
          gateway,
          log,
          { opened: (l) => gateway.metrics.connectionOpened(l), closed: (l) => gateway.metrics.connectionClosed(l) },
          // several instances: the SigV4 replay cache lives in the shared state
          config.state.kind === 'redis' ? gateway.state : undefined,
        );
        gateway.addresses.kinesis = await gateway.#kinesis.listen();
        log.info({ ...gateway.addresses.kinesis }, 'Kinesis listener ready');
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
    this.metrics.sessionOpened(protocol);
    return session;
  }

  endSession(session: Session): void {
    this.#quota.sessionEnded(session.id);
    this.#recorder?.endSession(session);
    this.#auditSession(session, 'session-end');
    this.metrics.sessionClosed(session.protocol);
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

  async authenticate(op: Operation): Promise<Identity> {
    await this.#authenticateOnly(op);
    if (!op.identity) throw new GatewayError('unauthenticated', 'no identity after authentication');
    return op.identity;
  }

  inspects(topic: string, side: 'produce' | 'consume', roles: readonly string[]): boolean {
    return this.#rules.rulesFor(topic, side, roles) !== null;
  }

  async #startCredentials(config: NonNullable<Config['credentials']>): Promise<void> {
    if (config.issuer && this.#config.identity.issuers.some((i) => i.issuer === config.issuer)) {
      throw new Error(`credentials.issuer "${config.issuer}" must differ from every identity.issuers entry`);
    }
    this.#accessKeys = await loadAccessKeys(this.state, config.accessKeySecret);
    const jit = new JitCredentials({
      config,
      store: this.state,
      policy: () => this.#policy,
      accessKeys: this.#accessKeys,
      record: (event, fields) => this.recordEvent(event, fields),
      log: this.log,
      // approved grants widen what may be issued, like they widen what may be done
      activeGrant: (identity, action, resource) => this.approvals.activeGrant(identity, action, resource),
    });
    // a revocation from any instance closes this instance's matching Kafka connections at once
    jit.onRevoked((revocation) => {
      const reason = revocation.kind === 'credential' ? `credential ${revocation.credentialId} was revoked` : `the credentials of ${revocation.subject} were revoked`;
      const closed = this.#kafka?.closeSessions((identity) => revocationMatches(revocation, identity), reason) ?? 0;
      this.log.info({ revocation: { ...revocation, reason: undefined }, closed }, 'credential revocation applied');
    });
    await jit.start();
    this.#jit = jit;
    this.#credentialEndpoints = new CredentialEndpoints({
      jit,
      oidc: this.#verifier,
      saml: config.saml ? new SamlVerifier(config.saml, this.state) : undefined,
      policy: () => this.#policy,
      record: (event, fields) => this.recordEvent(event, fields),
      log: this.log,
    });
  }

  /** just-in-time credentials, when configured */
  get credentials(): JitCredentials | undefined {
    return this.#jit;
  }

  serveHttp(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    return this.#credentialEndpoints?.serveData(req, res, path) ?? Promise.resolve(false);
  }

  sigv4Secret(accessKeyId: string): string | undefined {
    return this.#accessKeys?.secretFor(accessKeyId);
  }

  /** GET /v1/sessions[/{id}/records] on the admin listener (src/recording/api.ts) */
  #sessionRoutes(dir: string): (req: IncomingMessage, res: ServerResponse) => boolean {
    return sessionRoutes({
      dir,
      identify: (token) => this.identify(token),
      permits: (identity, action, resource) => this.permits(identity, action, resource),
      newSession: (protocol, client) => this.newSession(protocol, client),
      newOperation: (session, action, resource) => this.newOperation(session, action, resource),
      run: (op, forward) => this.run(op, forward),
      endSession: (session) => this.endSession(session),
    }, this.log);
  }

  records(topic: string, side: 'produce' | 'consume', identity: Identity): boolean {
    return this.#recorder?.applies(topic, side, identity) ?? false;
  }

  /** session recording, when configured */
  get recorder(): Recorder | undefined {
    return this.#recorder;
  }

  approvable(identity: Identity, action: Action, resource: Resource): boolean {
    return this.#approvalRules.match(identity, action, resource) !== undefined;
  }

  /** The identity an OIDC bearer token proves, with the policy's roles (approvers on the admin listener). */
  async identify(token: string): Promise<Identity> {
    const t = await this.#verifier.verify(token);
    return { subject: t.subject, issuer: t.issuer, groups: t.groups, roles: this.#policy.rolesFor(t), expiresAt: t.expiresAt, claims: t.claims };
  }

  limits(): LimitsConfig {
    return this.#config.limits;
  }

  permits(identity: Identity, action: Action, resource: Resource): boolean {
    if (scopeRefusal(identity, action, resource)) return false;
    return this.#policy.decide(identity, action, resource.name, resource.kind).allowed;
  }

  permitsEvery(identity: Identity, action: Action, kind: Resource['kind']): boolean {
    // a just-in-time credential is scoped to the names it was issued for
    if (identity.credentialScope) return false;
    return this.#policy.unrestricted(identity, action, kind);
  }

  async refuse(op: Operation, error: unknown): Promise<never> {
    await this.#refuseChain(op, error);
    throw new GatewayError('internal', 'refused operation was not refused'); // unreachable: the chain always rejects
  }

  async upstreamReady(): Promise<boolean> {
    return this.#upstream.ready();
  }

  get policyVersion(): string {
    return this.#policy.version;
  }

  /** Named readiness checks: upstream reachable, WASM engine loaded, audit spool writable, identity keys fetched. */
  async readiness(): Promise<Record<string, Check>> {
    // an issuer that was down at start is retried here, so readiness recovers without a token
    if (!this.#verifier.ready) this.#verifier.warmUp().catch(() => {});
    const upstream = await withTimeout(
      this.#upstream.ready().then((ok): Check => (ok ? { ok } : { ok, detail: 'the upstream does not answer' })),
      3000,
      'the upstream',
    );
    const kinesis = this.#kinesis;
    return {
      upstream,
      ...(kinesis ? { kinesis: await withTimeout(kinesis.ready().then((ok): Check => (ok ? { ok } : { ok, detail: 'the Kinesis endpoint does not answer' })), 3000, 'the Kinesis endpoint') } : {}),
      wasm: this.#wasmReady ? { ok: true } : { ok: false, detail: 'the inspection engine is not loaded yet' },
      spool: this.#spool.healthy ? { ok: true } : { ok: false, detail: this.#spool.problem ?? 'spool error' },
      identity: this.#verifier.ready ? { ok: true } : { ok: false, detail: 'the key sets of the identity providers are not fetched yet' },
    };
  }

  /**
   * Applies a new configuration without dropping connections: policy, inspection rules
   * and log level take effect from the next operation. Changes to listeners, upstream,
   * identity, audit, instance or metrics are not applied (they are bound to sockets and
   * files opened at start) and are returned in `restartNeeded`. Throws, changing nothing,
   * when the new inspection rules cannot be loaded.
   */
  async reload(next: Config): Promise<ReloadResult> {
    const current = this.#config;
    // which sessions are recorded is policy: it reloads; the rest of `recording` (files, keys) needs a restart
    const recordingSessions = current.recording && next.recording && !same(current.recording.sessions, next.recording.sessions) && same({ ...current.recording, sessions: null }, { ...next.recording, sessions: null }) ? next.recording.sessions : undefined;
    const restartNeeded: string[] = RESTART_SECTIONS.filter((k) => !same(current[k], next[k]) && !(k === 'recording' && recordingSessions));
    let rules: RuleBook | undefined;
    let inspector: Inspector | undefined;
    if (!same(current.inspection, next.inspection)) {
      rules = new RuleBook(next.inspection);
      inspector = new Inspector(next.inspection, rules.program);
      try {
        await inspector.warmUp();
      } catch (err) {
        await inspector.close().catch(() => {});
        throw err;
      }
    }
    const policy = same(current.policy, next.policy) ? undefined : new Policy(next.policy);
    // everything below is synchronous: an operation sees the old set or the new one, never a mix
    const applied: string[] = [];
    if (policy) {
      this.#policy = policy;
      this.#approvalRules = new ApprovalRules(next.policy.approvals ?? []);
      applied.push('policy');
    }
    if (rules && inspector) {
      const old = this.#inspector;
      this.#rules = rules;
      this.#inspector = inspector;
      this.#retired.add(old);
      // batches already handed to the old pool finish there
      setTimeout(() => {
        this.#retired.delete(old);
        old.close().catch(() => {});
      }, 30_000).unref();
      applied.push('inspection');
    }
    if (!same(current.limits, next.limits)) applied.push('limits'); // read per use by the quota control and listeners
    if (recordingSessions) {
      this.#recorder?.setSessions(recordingSessions);
      applied.push('recording.sessions');
    }
    if (current.log.level !== next.log.level) {
      setLogLevel(this.log, next.log.level);
      applied.push('log.level');
    }
    const kept = Object.fromEntries(RESTART_SECTIONS.map((k) => [k, current[k]]));
    if (recordingSessions) kept.recording = { ...current.recording!, sessions: recordingSessions };
    this.#config = { ...next, ...kept } as Config;
    this.metrics.reloaded('applied');
    return { applied, restartNeeded, policyVersion: this.#policy.version };
  }

  async close(): Promise<void> {
    await this.#jit?.close().catch(() => {});
    await this.#admin?.close().catch(() => {});
    for (const old of this.#retired) await old.close().catch(() => {});
    await this.#http?.close().catch(() => {});
    await this.#kafka?.close().catch(() => {});
    await this.#kinesis?.close().catch(() => {});
    await this.#inspector.close().catch(() => {});
    await this.#upstream.close().catch(() => {});
    await this.#shipper?.stop().catch(() => {});
    await this.#recorder?.close().catch((err: unknown) => this.log.error({ err }, 'closing the recording failed'));
    await this.approvals.close().catch(() => {});
    await this.#spool.close();
    await this.state.close().catch(() => {});
  }
}
