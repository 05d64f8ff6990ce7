#!/usr/bin/env node
import cluster from 'node:cluster';
import { Command } from 'commander';
import { ConfigError, loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { createLogger } from '../log.ts';
import { Gateway } from '../gateway.ts';
import { stopOnSignals } from './signals.ts';
import { registerAuditCommands } from './audit.ts';
import { registerApprovalsCommands } from './approvals.ts';
import { registerCredentialsCommands } from './credentials.ts';
import { registerInspect } from './inspect.ts';
import { registerSessionCommands } from './sessions.ts';
import { registerReplay } from './replay.ts';
import { registerKeysCommands } from './keys.ts';

const program = new Command()
  .name('streamgate')
  .description('Zero-trust gateway for streaming: identity, policy, masking and audit in front of Kafka.')
  .showHelpAfterError();

program
  .command('serve')
  .description('run the gateway with a configuration file')
  .requiredOption('-c, --config <file>', 'configuration file (YAML or JSON)')
  .option('-p, --processes <n>', 'gateway processes sharing the listening ports (node:cluster), each with its own inspection pool and audit spool', '1')
  .action(async (opts: { config: string; processes: string }) => {
    const processes = Number(opts.processes);
    if (!Number.isInteger(processes) || processes < 1) throw new Error(`--processes must be a positive integer, not "${opts.processes}"`);
    const { runPrimary, forWorker, serveWorker, workerIndex } = await import('../ops/cluster.ts');
    const { serveReloads } = await import('../ops/reload.ts');
    if (processes > 1 && cluster.isPrimary) {
      // workers are separate processes: in-memory state would give each its own signing keys and revocations
      const checked = loadConfig(opts.config);
      if (checked.credentials && checked.state.kind === 'memory') throw new Error('credentials with --processes > 1 need state.kind: redis (in-memory state is per process: each worker would have its own signing keys and revocations)');
      return runPrimary(opts.config, processes);
    }
    const index = workerIndex();
    const adjust = (c: Config) => forWorker(c, index);
    const config = adjust(loadConfig(opts.config));
    const log = createLogger(config.log.level);
    const starting = Gateway.start(config, log, { admin: index === undefined ? true : 'routes' });
    let stopReloads: (() => void) | undefined;
    // before the listeners open: a SIGTERM while the later ones still start (a client may already
    // use the first) waits for the start, then drains, instead of killing the process mid-write
    stopOnSignals(log, async () => {
      stopReloads?.();
      const gateway = await starting.catch(() => undefined);
      await gateway?.close();
    });
    const gateway = await starting;
    if (index !== undefined) serveWorker(gateway);
    // the policy file is watched (and SIGHUP reloads it); an invalid file keeps the running policy
    const keyring = config.inspection.protection?.keyring?.file;
    stopReloads = serveReloads(gateway, opts.config, log, adjust, keyring ? [keyring] : []);
  });

program
  .command('config')
  .description('configuration tools')
  .command('check')
  .description('validate a configuration file and exit')
  .requiredOption('-c, --config <file>', 'configuration file')
  .action((opts: { config: string }) => {
    const config = loadConfig(opts.config);
    console.log(`${opts.config}: valid (${Object.keys(config.policy.roles).length} roles, ${config.policy.grants.length} grants, ${config.inspection.rules.length} inspection rules)`);
  });

program
  .command('dev')
  .description('start a local Kafka broker, a development identity provider and the gateway with the example config')
  .option('--http-port <port>', 'gateway HTTP port', '8080')
  .option('--kafka-port <port>', 'local Kafka broker port', '9092')
  .option('--idp-port <port>', 'development identity provider port', '9400')
  .option('-c, --config <file>', 'configuration file', 'streamgate.example.yaml')
  .action(async (opts: { httpPort: string; kafkaPort: string; idpPort: string; config: string }) => {
    const { runDevStack } = await import('../dev/stack.ts');
    await runDevStack({ httpPort: Number(opts.httpPort), kafkaPort: Number(opts.kafkaPort), idpPort: Number(opts.idpPort), config: opts.config });
  });

program
  .command('dev-token')
  .description('print an access token for a development identity (alice, bob, fran, mallory, ops, carol)')
  .argument('<client>', 'client id of the development identity provider')
  .option('--issuer <url>', 'issuer URL', 'http://127.0.0.1:9400')
  .option('--audience <aud>', 'audience to ask for', 'streamgate')
  .action(async (client: string, opts: { issuer: string; audience: string }) => {
    const { fetchDevToken } = await import('../dev/stack.ts');
    console.log(await fetchDevToken(opts.issuer, client, opts.audience));
  });

registerAuditCommands(program);
registerApprovalsCommands(program);
registerCredentialsCommands(program);
registerInspect(program);
registerSessionCommands(program);
registerReplay(program);
registerKeysCommands(program);

program.parseAsync().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    console.error(`streamgate: invalid configuration\n${err.message}`);
    process.exit(2);
  }
  console.error(`streamgate: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
