import type { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import { DETECTORS } from '../inspect/detectors.ts';
import { FLAG_BLOCKED, FLAG_CHANGED, FLAG_JSON_FALLBACK, outputOf, WasmEngine } from '../inspect/engine.ts';
import { RuleBook, type Side } from '../inspect/rules.ts';

interface InspectOptions {
  config?: string;
  topic?: string;
  side: string;
  role: string[];
  format: string;
  listDetectors?: boolean;
}

const BATCH = 1024;

/**
 * `streamgate inspect`: a dry run of the inspection rules. Payloads come from stdin (one
 * per line, or all of stdin as one with --format raw) and leave on stdout as the gateway
 * would forward them; a summary goes to stderr. Exit code 3 when a record was blocked.
 */
export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('dry-run the inspection rules of a topic on payloads from stdin (masked payloads to stdout, summary to stderr)')
    .option('-c, --config <file>', 'configuration file')
    .option('-t, --topic <name>', 'topic (or stream) whose rules apply')
    .option('--side <side>', 'produce | consume', 'produce')
    .option('--role <role>', 'a role of the reader (consume side; repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--format <format>', 'lines: one payload per line | raw: all of stdin is one payload', 'lines')
    .option('--list-detectors', 'list the built-in detectors and exit')
    .action(async (opts: InspectOptions, cmd: Command) => {
      // a reader that stops early (| head) is not an error
      process.stdout.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EPIPE') process.exit(0); else throw err; });
      if (opts.listDetectors) {
        for (const d of DETECTORS) process.stdout.write(`${d.id.padEnd(18)} ${d.description}\n`);
        return;
      }
      if (!opts.config || !opts.topic) cmd.error('error: inspect needs --config <file> and --topic <name>');
      if (opts.side !== 'produce' && opts.side !== 'consume') cmd.error('error: --side is produce or consume');
      if (opts.format !== 'lines' && opts.format !== 'raw') cmd.error('error: --format is lines or raw');
      process.exitCode = await dryRun(opts.config!, opts.topic!, opts.side as Side, opts.role, opts.format);
    });
}

async function dryRun(file: string, topic: string, side: Side, roles: string[], format: string): Promise<number> {
  const config = loadConfig(file);
  const book = new RuleBook(config.inspection);
  const rules = book.rulesFor(topic, side, roles);
  const input = await readStdin();
  let payloads: Buffer[];
  if (format === 'raw') payloads = [input];
  else {
    payloads = [];
    let at = 0;
    while (at < input.length) {
      let nl = input.indexOf(0x0a, at);
      if (nl < 0) nl = input.length;
      payloads.push(input.subarray(at, nl > at && input[nl - 1] === 0x0d ? nl - 1 : nl));
      at = nl + 1;
    }
  }
  const who = side === 'consume' ? ` for roles [${roles.join(', ')}]` : '';
  if (!rules) {
    for (const p of payloads) write(p, format);
    process.stderr.write(`no inspection rules apply to topic "${topic}" (${side} side${who}): ${payloads.length} records passed through unchanged\n`);
    return 0;
  }
  const engine = WasmEngine.load(book.program.bytes);
  const counts = new Map<string, number>();
  let changed = 0;
  let fallbacks = 0;
  const blocked: string[] = [];
  for (let i = 0; i < payloads.length; i += BATCH) {
    const batch = payloads.slice(i, i + BATCH);
    const r = engine.inspect(batch, rules.ruleset);
    for (let k = 0; k < batch.length; k++) {
      const flags = r.flags[k]!;
      if (flags & FLAG_JSON_FALLBACK) fallbacks++;
      if (flags & FLAG_BLOCKED) {
        const rule = r.stopRule[k]!;
        blocked.push(`record ${i + k + 1}: blocked by rule "${book.ruleId(rule)}": ${book.blockReason(rule)}`);
        continue;
      }
      if (flags & FLAG_CHANGED) changed++;
      for (let h = r.hitStart[k]!; h < r.hitStart[k]! + r.hitCount[k]!; h++) {
        const id = book.ruleId(r.hits[h]!);
        counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      write(outputOf(r, k, batch[k]!)!, format);
    }
  }
  const summary = [
    `topic "${topic}", ${side} side${who}: rules ${rules.rules.join(', ')}`,
    `${payloads.length} records: ${changed} changed, ${blocked.length} blocked, ${payloads.length - changed - blocked.length} unchanged`,
    counts.size > 0 ? `actions by rule: ${[...counts].map(([id, n]) => `${id} ${n}`).join(', ')}` : 'no actions applied',
    ...(fallbacks > 0 ? [`${fallbacks} records are not valid JSON and were scanned as bytes (json-fallback)`] : []),
    ...blocked,
  ];
  process.stderr.write(summary.join('\n') + '\n');
  return blocked.length > 0 ? 3 : 0;
}

function write(b: Uint8Array, format: string): void {
  process.stdout.write(b);
  if (format === 'lines') process.stdout.write('\n');
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
