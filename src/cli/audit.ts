import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { loadPublicKey, verifyChain } from '../audit/chain.ts';
import { MIGRATIONS, migrationRecordStatement, migrationsTableStatement, schemaStatements, type Variant } from '../audit/ddl.ts';
import { clickhouseSchema, type ClickHouseConfig } from '../audit/schema.ts';
import { listSegments } from '../audit/spool.ts';
import { loadConfig } from '../config/load.ts';

interface DirOptions {
  dir?: string;
  config?: string;
}

function spoolDir(opts: DirOptions): string {
  if (opts.dir) return opts.dir;
  if (opts.config) return loadConfig(opts.config).audit.spool.dir;
  return './data/audit';
}

/** `streamgate audit verify|query|migrate|keygen` */
export function registerAuditCommands(program: Command): void {
  const audit = program.command('audit').description('the audit trail: verify the hash chain, query the spool, create the ClickHouse schema');

  audit
    .command('verify')
    .description('check the spool hash chain and segment signatures; reports the first break (file, line, event id)')
    .option('-d, --dir <dir>', 'spool directory (default: audit.spool.dir of --config, else ./data/audit)')
    .option('-c, --config <file>', 'configuration file to take the spool directory from')
    .option('--public-key <pem>', 'Ed25519 public key (PEM file) the heads must be signed with')
    .option('--json', 'print the report as JSON')
    .action((opts: DirOptions & { publicKey?: string; json?: boolean }) => {
      const dir = spoolDir(opts);
      const report = verifyChain(listSegments(dir), dir, opts.publicKey ? { publicKey: loadPublicKey(opts.publicKey) } : {});
      if (opts.json) {
        console.log(JSON.stringify(report, null, 2));
      } else if (report.ok) {
        console.log(`OK: ${report.rows} rows in ${report.segments} segments, chain intact through seq ${report.lastSeq} (${report.lastHash.slice(0, 16)}…)`);
        if (report.keyIds.length > 0) console.log(`signed by key ${report.keyIds.join(', ')}`);
      } else {
        const b = report.firstBreak!;
        console.log(`BROKEN: ${b.file}:${b.line}${b.eventId ? ` (event ${b.eventId})` : ''}: ${b.reason}`);
        if (report.breaks.length > 1) console.log(`${report.breaks.length - 1} more break(s) after it; --json lists them`);
      }
      for (const n of opts.json ? [] : report.notes) console.log(`note: ${n}`);
      if (!report.ok) process.exitCode = 1;
    });

  audit
    .command('query')
    .description('run ClickHouse SQL over the spool with chDB; tables: audit_events, audit_hourly_identity, audit_hourly_topic')
    .argument('<sql>', 'ClickHouse SQL, e.g. "SELECT subject, count() FROM audit_events GROUP BY subject"')
    .option('-d, --dir <dir>', 'spool directory (default: audit.spool.dir of --config, else ./data/audit)')
    .option('-c, --config <file>', 'configuration file to take the spool directory from')
    .option('-f, --format <format>', 'table | csv | tsv | json, or any ClickHouse output format', 'table')
    .action(async (sql: string, opts: DirOptions & { format: string }) => {
      const { SpoolQuery } = await import('../audit/query.ts');
      const q = await SpoolQuery.open(spoolDir(opts));
      try {
        process.stdout.write(q.run(sql, opts.format));
      } finally {
        q.close();
      }
    });

  audit
    .command('migrate')
    .description('create or upgrade the audit schema in ClickHouse (the variant follows the server version)')
    .option('-c, --config <file>', 'configuration file with audit.clickhouse')
    .option('--url <url>', 'ClickHouse HTTP URL (overrides the config)')
    .option('--database <name>', 'database (overrides the config)')
    .option('--user <name>', 'user (overrides the config)')
    .option('--password <password>', 'password (overrides the config; prefer the config with ${ENV})')
    .option('--print', 'print the DDL instead of running it (no server needed)')
    .option('--variant <variant>', 'with --print: modern (ClickHouse 22.3+) or legacy', 'modern')
    .option('--cluster <name>', 'with --print: the cluster variant (ON CLUSTER, Replicated*MergeTree, Distributed)')
    .action(async (opts: { config?: string; url?: string; database?: string; user?: string; password?: string; print?: boolean; variant: string; cluster?: string }) => {
      const fromFile = opts.config ? loadConfig(opts.config).audit.clickhouse : undefined;
      const ch: ClickHouseConfig = clickhouseSchema.parse({
        ...(fromFile ?? { url: opts.url ?? 'http://127.0.0.1:8123' }),
        ...(opts.url ? { url: opts.url } : {}),
        ...(opts.database ? { database: opts.database } : {}),
        ...(opts.user ? { username: opts.user } : {}),
        ...(opts.password !== undefined ? { password: opts.password } : {}),
      });
      if (opts.print) {
        if (opts.variant !== 'modern' && opts.variant !== 'legacy') throw new Error('--variant is modern or legacy');
        const o = { database: ch.database, variant: opts.variant as Variant, ttlDays: ch.ttlDays, ...(opts.cluster ? { cluster: opts.cluster } : {}) };
        const [createDb, ...rest] = schemaStatements(o);
        const record = MIGRATIONS.map((m) => migrationRecordStatement(ch.database, m, o.variant));
        for (const stmt of [createDb!, migrationsTableStatement(ch.database, opts.cluster), ...rest, ...record]) console.log(`${stmt};\n`);
        return;
      }
      const { connect, migrate } = await import('../audit/migrate.ts');
      const client = connect(ch);
      try {
        const r = await migrate(client, { database: ch.database, ttlDays: ch.ttlDays });
        console.log(
          r.from === r.to
            ? `${ch.database}: schema version ${r.to} (${r.variant}) is current on ClickHouse ${r.serverVersion}`
            : `${ch.database}: migrated schema ${r.from} -> ${r.to} (${r.variant} variant for ClickHouse ${r.serverVersion}, ${r.statements.length} statements)`,
        );
      } finally {
        await client.close();
      }
    });

  audit
    .command('keygen')
    .description('create an Ed25519 key pair for signing segment heads (audit.spool.signingKey)')
    .option('-o, --out <prefix>', 'write <prefix>.key (private) and <prefix>.pub instead of printing')
    .action((opts: { out?: string }) => {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const priv = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      const pub = publicKey.export({ type: 'spki', format: 'pem' }).toString();
      if (opts.out) {
        writeFileSync(`${opts.out}.key`, priv, { mode: 0o600 });
        writeFileSync(`${opts.out}.pub`, pub);
        console.log(`wrote ${opts.out}.key (keep it secret, e.g. in AUDIT_SIGNING_KEY) and ${opts.out}.pub (for audit verify --public-key)`);
      } else {
        process.stdout.write(priv + pub);
      }
    });
}
