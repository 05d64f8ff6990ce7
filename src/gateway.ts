import { randomUUID } from 'node:crypto';
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
import { Inspector, type SchemaSourceRef } from './inspect/inspector.ts';
import { SchemaCatalog } from './schemas/catalog.ts';
import { RegistryClient } from './schemas/registry.ts';
import { SchemaSerializer, type SchemaRef } from './schemas/serializer.ts';
import { SchemaError } from './schemas/source.ts';
import { compileValueCodec, ValueCodecError } from './formats/values/index.ts';
import { typeProblem } from './inspect/values.ts';
import { RuleBook } from './inspect/rules.ts';
import { composeChain, GatewayError, type Chain, type Action, type ClientInfo, type Control, type Identity, type Intent, type Next, type Operation, type RecordNeeds, type Protocol, type Resource, type Session, type Upstream, type UpstreamResult } from './operation.ts';
import { Policy } from './policy/policy.ts';
import { HttpListener } from './protocols/http/listener.ts';
import { KafkaListener } from './protocols/kafka/listener.ts';
import { AckUpstream } from './upstream/ack.ts';
import { KafkaUpstream } from './upstream/kafka.ts';
import { NoUpstream } from './upstream/none.ts';
import { KinesisListener } from './protocols/kinesis/listener.ts';
import { KinesisUpstream } from './upstream/kinesis.ts';
import { openStateStore } from './state/open.ts';
import { Protection } from './inspect/protection.ts';
import { dataSubjectRoutes } from './ops/data-subjects.ts';
import type { StateStore } from './state/store.ts';
import type { AccessKeys } from './jit/access-keys.ts';
import { loadAccessKeys } from './jit/access-secret.ts';
import { JitCredentials, revocationMatches } from './jit/credentials.ts';
import { CredentialEndpoints } from './jit/endpoints.ts';
import { SamlVerifier } from './jit/saml.ts';
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
const RESTART_SECTIONS = ['instance', 'listeners', 'upstream', 'identity', 'audit', 'metrics', 'state', 'credentials', 'recording', 'schemas'] as const;
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** What a reload replaces. */
interface Live {
  policy: Policy;
  /** policy.approvals compiled */
  approvalRules: ApprovalRules;
  rules: RuleBook;
  /** the inspection engine loaded with `rules`' program */
  inspector: Inspector;
}

/** Something the gateway started and closes, in reverse order, on the way down. */
interface Service {
  name: string;
  close(): Promise<void>;
}

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
  #accessKeys: AccessKeys | undefined;
  /** just-in-time credentials (config `credentials`), made at start once the shared secrets are loaded */
  #jit: JitCredentials | undefined;
  #credentialEndpoints: CredentialEndpoints | undefined;
  readonly #instance: string;
  /** what a reload replaces, swapped whole: each read sees one consistent snapshot (policy with its approval rules, rules with their engine) */
  #live: Live;
  readonly #verifier: OidcVerifier;
  readonly #spool: AuditSpool;
  readonly #shipper: ClickHouseShipper | undefined;
  /** session recording, when the config has a recording section */
  readonly #recorder: Recorder | undefined;
  readonly #rowContext: () => RowContext;
  /** inspectors replaced by a reload, closed once their in-flight batches are done */
  readonly #retired = new Set<Inspector>();
  /** what was started, in order; closed in reverse */
  readonly #services: Service[] = [];
  #wasmReady = false;
  #admin: AdminListener | undefined;
  #adminRoutesPort: number | undefined;
  readonly #upstream: Upstream;
  /** schemas of schema-registry values, when the config names a registry or catalog */
  readonly #schemas: SchemaSourceRef | undefined;
  /** JSON data with a schema reference (HTTP produce) -> framed values */
  readonly #serializer: SchemaSerializer | undefined;
  readonly #quota = new Quota(() => this.#config.limits);
  readonly #chain: Chain;
  readonly #authorize: Authorize;
  /** the controls that say what they need of an operation's records (Control.needs) */
  readonly #asked: Control[];
  /** how many controls a login or a refusal runs: the outer ones, up to and including authenticate */
  readonly #throughAuthenticate: number;
  #http: HttpListener | undefined;
  #kafka: KafkaListener | undefined;
  #kinesis: KinesisListener | undefined;
  #kinesisUpstream: KinesisUpstream | undefined;
  readonly #authenticateOnly: (op: Operation) => Promise<UpstreamResult>;

  private constructor(config: Config, log: Logger) {
    this.#config = config;
    this.log = log;
    this.#instance = config.instance ?? hostname();
    this.state = openStateStore(config.state);
    const rules = new RuleBook(config.inspection);
    this.#schemas = openSchemaSource(config, rules);
    this.#serializer = this.#schemas ? new SchemaSerializer(this.#schemas.source) : undefined;
    this.#live = {
      policy: new Policy(config.policy),
      approvalRules: new ApprovalRules(config.policy.approvals ?? []),
      rules,
      inspector: new Inspector(config.inspection, rules.program, this.#schemas, new Protection(config.inspection, rules.protectRules, this.state)),
    };
    this.approvals = new ApprovalService({
      store: this.state,
      rules: () => this.#live.approvalRules,
      config: () => this.#config.approvals,
      baseUrl: () => this.#config.approvals.publicUrl ?? (this.addresses.admin ? `http://${this.addresses.admin.host.includes(':') ? `[${this.addresses.admin.host}]` : this.addresses.admin.host}:${this.addresses.admin.port}` : ''),
      instance: this.#instance,
      record: (event, fields) => this.recordEvent(event, fields),
      log,
    });
    this.#verifier = new OidcVerifier(config.identity.issuers);
    this.#rowContext = () => ({ instance: this.#instance, policyVersion: this.#live.policy.version });
    this.#spool = new AuditSpool(config.audit.spool, { signer: loadSigner(config.audit.spool.signingKey), context: this.#rowContext, log, shipping: config.audit.clickhouse !== undefined });
    this.#shipper = config.audit.clickhouse ? new ClickHouseShipper(this.#spool, config.audit.clickhouse, log) : undefined;
    this.#recorder = config.recording
      ? new Recorder(config.recording, { instance: this.#instance, log, clickhouse: config.audit.clickhouse, note: (fields) => void this.recordEvent('spool-gap', fields).catch((err: unknown) => log.error({ err }, 'recording note not audited')) })
      : undefined;
    this.#upstream = 'kafka' in config.upstream ? new KafkaUpstream(config.upstream.kafka) : 'kind' in config.upstream ? new AckUpstream() : new NoUpstream();
    // what the constructor opened, closed last (in reverse): the shared state and the audit spool after everything that writes to them
    const owned = (name: string, close: () => Promise<void>) => this.#services.push({ name, close });
    owned('state store', () => this.state.close());
    owned('audit spool', () => this.#spool.close());
    const shipper = this.#shipper;
    if (shipper) owned('audit shipper', () => shipper.stop());
    const recording = this.#recorder;
    if (recording) owned('session recording', () => recording.close());
    owned('inspection engines', async () => {
      for (const old of this.#retired) await old.close().catch(() => {});
      await this.#live.inspector.close();
    });
    owned('upstream', () => this.#upstream.close());
    const schemas = this.#schemas;
    if (schemas) owned('schema source', () => schemas.source.close());

    this.metrics = new GatewayMetrics(config.metrics, {
      poolQueueSize: () => this.#live.inspector.poolQueueSize,
      policyVersion: () => this.#live.policy.version,
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
    const policy = () => this.#live.policy;
    const metrics = new Metrics(this.metrics, log);
    const audit = new Audit(this.#spool, this.#rowContext, log);
    const authenticate = new Authenticate(this.#verifier, policy, () => this.#jit);
    this.#authorize = new Authorize(policy, (intent) => this.#live.approvalRules.match(intent.identity, intent.action, intent.resource) !== undefined);
    const controls: Control[] = [
      metrics,
      audit,
      authenticate,
      this.#quota,
      this.#authorize,
      new Approve(() => this.#live.approvalRules, this.approvals),
      new Recording(() => this.#recorder),
      new Inspect(
        {
          inspect: (values, ruleset) => this.#live.inspector.inspect(values, ruleset),
          inspectEncoded: (task, bytes) => this.#live.inspector.inspectEncoded(task, bytes),
          inspectSchemaValues: (task) => this.#live.inspector.inspectSchemaValues(task),
        },
        () => this.#live.rules,
        () => this.#config.inspection.limits,
      ),
    ];
    this.#chain = composeChain(controls, this.#upstream);
    this.#asked = controls.filter((c) => c.needs !== undefined);
    // logins and refusals run the same chain up to authenticate (metrics, audit, who it is), then end
    this.#throughAuthenticate = controls.indexOf(authenticate) + 1;
    this.#authenticateOnly = (op) => authenticate.handle(op, () => Promise.resolve({}));
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
      const started = (name: string, close: () => Promise<void>) => gateway.#services.push({ name, close });
      // ships what earlier runs left in the spool too; never waits for ClickHouse
      gateway.#shipper?.start();
      await gateway.#recorder?.warmUp();
      if (config.credentials) {
        await gateway.#startCredentials(config.credentials);
        started('just-in-time credentials', async () => gateway.#jit?.close());
      }
      await gateway.#live.inspector.warmUp();
      gateway.#wasmReady = true;
      await gateway.approvals.start(gateway.metrics.registry);
      started('approvals', () => gateway.approvals.close());
      if (config.listeners.admin && options.admin !== false) {
        // a cluster worker serves the control-plane routes on a loopback port of its own; the primary forwards to it
        const routesOnly = options.admin === 'routes';
        gateway.#admin = new AdminListener(routesOnly ? { host: '127.0.0.1', port: 0 } : config.listeners.admin, {
          metrics: async () => ({ contentType: gateway.metrics.registry.contentType, body: await gateway.metrics.render() }),
          readiness: () => gateway.readiness(),
          routes: [approvalRoutes(gateway.approvals, (token) => gateway.identify(token), log), ...(gateway.#credentialEndpoints ? [gateway.#credentialEndpoints.adminRoute()] : []), ...(gateway.#recorder ? [gateway.#sessionRoutes(gateway.#recorder.dir)] : []), gateway.#dataSubjectRoutes()],
        }, log);
        const admin = gateway.#admin;
        const address = await admin.listen();
        started('admin listener', () => admin.close());
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
        const http = gateway.#http;
        gateway.addresses.http = await http.listen();
        started('HTTP listener', () => http.close());
        log.info({ ...gateway.addresses.http, policy: gateway.#live.policy.version }, 'HTTP listener ready');
      }
      if (config.listeners.kafka && !('kafka' in config.upstream)) {
        // the ack upstream (benchmarks) has no broker to speak the Kafka protocol to
        log.warn('listeners.kafka is ignored: the Kafka listener needs upstream.kafka, not the ack upstream');
      } else if (config.listeners.kafka && 'kafka' in config.upstream) {
        gateway.#kafka = new KafkaListener(config.listeners.kafka, config.upstream.kafka, gateway, log);
        const kafka = gateway.#kafka;
        gateway.addresses.kafka = await kafka.listen();
        started('Kafka listener', () => kafka.close());
        log.info({ ...gateway.addresses.kafka }, 'Kafka listener ready');
      }
      if (config.listeners.kinesis && !config.upstream.kinesis) {
        log.warn('listeners.kinesis is ignored: the Kinesis listener needs upstream.kinesis');
      } else if (config.listeners.kinesis && config.upstream.kinesis) {
        const endpoint = new KinesisUpstream(config.upstream.kinesis);
        started('Kinesis upstream', () => endpoint.close());
        gateway.#kinesisUpstream = endpoint;
        gateway.#kinesis = new KinesisListener(
          config.listeners.kinesis,
          endpoint,
          gateway,
          log,
          { opened: (l) => gateway.metrics.connectionOpened(l), closed: (l) => gateway.metrics.connectionClosed(l) },
          // several instances: the SigV4 replay cache lives in the shared state
          config.state.kind === 'redis' ? gateway.state : undefined,
        );
        const kinesis = gateway.#kinesis;
        gateway.addresses.kinesis = await kinesis.listen();
        started('Kinesis listener', () => kinesis.close());
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
    const meter = this.metrics;
    const upstream = this.#upstream;
    // timed here, around the upstream call itself: the rest of the chain is the gateway's own time
    return this.#chain(op, (o) => meter.timeUpstream(o, () => (forward ? forward(o) : upstream.execute(o))));
  }

  async login(op: Operation): Promise<Identity> {
    // a session the quota control admits (per-identity connection cap) is a login
    await this.#chain(op, (o) => {
      this.#quota.admitSession(o);
      return Promise.resolve({});
    }, this.#throughAuthenticate);
    if (!op.identity) throw new GatewayError('unauthenticated', 'no identity after authentication');
    return op.identity;
  }

  async authenticate(op: Operation): Promise<Identity> {
    await this.#authenticateOnly(op);
    if (!op.identity) throw new GatewayError('unauthenticated', 'no identity after authentication');
    return op.identity;
  }

  needs(intent: Intent): RecordNeeds {
    const needs: RecordNeeds = { records: 'none', mayGo: true, mayHold: false };
    for (const control of this.#asked) control.needs!(intent, needs);
    return needs;
  }

  async #startCredentials(config: NonNullable<Config['credentials']>): Promise<void> {
    if (config.issuer && this.#config.identity.issuers.some((i) => i.issuer === config.issuer)) {
      throw new Error(`credentials.issuer "${config.issuer}" must differ from every identity.issuers entry`);
    }
    this.#accessKeys = await loadAccessKeys(this.state, config.accessKeySecret);
    const jit = new JitCredentials({
      config,
      store: this.state,
      policy: () => this.#live.policy,
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
      policy: () => this.#live.policy,
      record: (event, fields) => this.recordEvent(event, fields),
      log: this.log,
    });
  }

  /** just-in-time credentials, when configured */
  get credentials(): JitCredentials | undefined {
    return this.#jit;
  }

  async serializeWithSchema(topic: string, ref: SchemaRef, data: unknown, part: 'key' | 'value'): Promise<{ bytes: Uint8Array; format: string; header?: [string, Uint8Array] }> {
    if (!this.#serializer) throw new GatewayError('invalid', 'this gateway has no schema registry or catalog: send type JSON, STRING or BINARY', { rule: 'schema.unavailable' });
    const framing = this.#live.rules.rulesFor(topic, 'produce')?.values?.framing ?? 'confluent';
    try {
      return await this.#serializer.serialize(ref, data, framing, part);
    } catch (err) {
      if (err instanceof ValueCodecError) throw new GatewayError('invalid', err.message, { rule: 'schema.unfit' });
      if (err instanceof SchemaError) {
        if (err.code === 'SCHEMA_NOT_FOUND') throw new GatewayError('invalid', err.message, { rule: 'schema.unknown' });
        throw new GatewayError('upstream-unavailable', `the schema registry: ${err.message}`, { rule: 'schema.unavailable', retryAfterMs: 1000 });
      }
      throw err;
    }
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

  /** POST /v1/data-subjects/erase on the admin listener (src/ops/data-subjects.ts): crypto-shredding */
  #dataSubjectRoutes(): (req: IncomingMessage, res: ServerResponse) => boolean {
    return dataSubjectRoutes({
      identify: (token) => this.identify(token),
      mayErase: (identity) => this.#live.policy.decide(identity, 'admin', 'data-subjects', 'cluster').allowed,
      erase: (subject) => this.#live.inspector.eraseSubject(subject),
      record: (fields) => this.recordEvent('subject-erase', fields),
    }, this.log);
  }

  /** session recording, when configured */
  get recorder(): Recorder | undefined {
    return this.#recorder;
  }

  /** The identity an OIDC bearer token proves, with the policy's roles (approvers on the admin listener). */
  async identify(token: string): Promise<Identity> {
    const t = await this.#verifier.verify(token);
    return { subject: t.subject, issuer: t.issuer, groups: t.groups, roles: this.#live.policy.rolesFor(t), expiresAt: t.expiresAt, claims: t.claims };
  }

  limits(): LimitsConfig {
    return this.#config.limits;
  }

  permits(identity: Identity, action: Action, resource: Resource): boolean {
    return this.#authorize.permits(identity, action, resource);
  }

  permitsEvery(identity: Identity, action: Action, kind: Resource['kind']): boolean {
    // a just-in-time credential is scoped to the names it was issued for
    if (identity.credentialScope) return false;
    return this.#live.policy.unrestricted(identity, action, kind);
  }

  async refuse(op: Operation, error: unknown): Promise<never> {
    await this.#chain(op, () => Promise.reject(error), this.#throughAuthenticate);
    throw new GatewayError('internal', 'refused operation was not refused'); // unreachable: the chain always rejects
  }

  async upstreamReady(): Promise<boolean> {
    return this.#upstream.ready();
  }

  get policyVersion(): string {
    return this.#live.policy.version;
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
    const kinesis = this.#kinesisUpstream;
    return {
      upstream,
      ...(kinesis ? { kinesis: await withTimeout(kinesis.ready().then((ok): Check => (ok ? { ok } : { ok, detail: 'the Kinesis endpoint does not answer' })), 3000, 'the Kinesis endpoint') } : {}),
      wasm: this.#wasmReady ? { ok: true } : { ok: false, detail: 'the inspection engine is not loaded yet' },
      spool: this.#spool.healthy ? { ok: true } : { ok: false, detail: this.#spool.problem ?? 'spool error' },
      identity: this.#verifier.ready ? { ok: true } : { ok: false, detail: 'the key sets of the identity providers are not fetched yet' },
      // records of schemas already compiled keep flowing while the registry is down; new ids are refused (or scanned)
      ...(this.#schemas ? { schemas: { ...(await withTimeout(this.#schemas.source.ready().then((ok): Check => (ok ? { ok } : { ok, detail: 'the schema registry does not answer' })), 3000, 'the schema registry')), critical: false } } : {}),
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
      inspector = new Inspector(next.inspection, rules.program, this.#schemas, new Protection(next.inspection, rules.protectRules, this.state));
      try {
        await inspector.warmUp();
      } catch (err) {
        await inspector.close().catch(() => {});
        throw err;
      }
    }
    const policy = same(current.policy, next.policy) ? undefined : new Policy(next.policy);
    // everything below is synchronous, and the snapshot is replaced whole: never a policy without its approval rules, or rules without their engine
    const applied: string[] = [];
    const live = { ...this.#live };
    if (policy) {
      live.policy = policy;
      live.approvalRules = new ApprovalRules(next.policy.approvals ?? []);
      applied.push('policy');
    }
    if (rules && inspector) {
      const old = this.#live.inspector;
      live.rules = rules;
      live.inspector = inspector;
      this.#retired.add(old);
      // batches already handed to the old pool finish there
      setTimeout(() => {
        this.#retired.delete(old);
        old.close().catch(() => {});
      }, 30_000).unref();
      applied.push('inspection');
    }
    this.#live = live;
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
    return { applied, restartNeeded, policyVersion: this.#live.policy.version };
  }

  /** Closes what was started, last first (listeners before the engines, audit and state they use). */
  async close(): Promise<void> {
    for (const service of this.#services.splice(0).reverse()) {
      await service.close().catch((err: unknown) => this.log.error({ err, service: service.name }, 'closing failed'));
    }
  }

}

/** The schema source the config names (a registry client, or a catalog read now), if any. */
function openSchemaSource(config: Config, rules: RuleBook): SchemaSourceRef | undefined {
  const s = config.schemas;
  if (!s) return undefined;
  const source = 'registry' in s ? new RegistryClient(s.registry) : new SchemaCatalog(s.catalog);
  if (source instanceof SchemaCatalog) checkCatalog(source, rules);
  return { source, epoch: randomUUID() };
}

/**
 * A catalog's schemas are known at start: a rule that would hash or tokenize a number field of
 * one is a configuration error now rather than refused records later. A schema belongs to the
 * topic its subject names (the topic name strategy: `<topic>-value`).
 */
function checkCatalog(catalog: SchemaCatalog, rules: RuleBook): void {
  for (const schema of catalog.all()) {
    const topic = schema.subject.replace(/-(?:value|key)$/, '');
    for (const { patterns, spec } of rules.valueSpecs()) {
      if (spec.typedRules.length === 0 || !patterns.some((p) => p.test(topic))) continue;
      let codec;
      try {
        codec = compileValueCodec(schema);
      } catch (err) {
        throw new Error(`schemas.catalog: ${schema.subject} v${schema.version} (id ${schema.id}): ${(err as Error).message}`);
      }
      const problem = typeProblem(codec, spec.typedRules, schema.id);
      if (problem) throw new Error(`inspection: topic ${topic} (catalog subject ${schema.subject}): ${problem}`);
    }
  }
}
