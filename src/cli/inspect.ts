import type { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import { DETECTORS } from '../inspect/detectors.ts';
import { FLAG_BLOCKED, FLAG_CHANGED, FLAG_JSON_FALLBACK, outputOf, WasmEngine } from '../inspect/engine.ts';
import { RuleBook, type ResolvedRules, type Side } from '../inspect/rules.ts';
import type { Config } from '../config/schema.ts';
import { inspectSchemaValues } from '../inspect/batch.ts';
import { CodecCache } from '../formats/values/index.ts';
import { readFraming, readGlobalIdHeader } from '../formats/schema-framing.ts';
import { SchemaCatalog } from '../schemas/catalog.ts';
import { RegistryClient } from '../schemas/registry.ts';
import { SchemaSerializer, type SchemaRef } from '../schemas/serializer.ts';
import { Protection } from '../inspect/protection.ts';
import { NeedSubjectKeys } from '../protect/subjects.ts';
import { openStateStore } from '../state/open.ts';

interface InspectOptions {
  config?: string;
  topic?: string;
  side: string;
  role: string[];
  format: string;
  listDetectors?: boolean;
  schemaId?: string;
  subject?: string;
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
    .option('--schema-id <id>', 'schema topics: each line is JSON data, written with this registered schema before the rules run')
    .option('--subject <name>', 'schema topics: the same with the latest version of this subject (default: <topic>-value)')
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
      if (opts.schemaId !== undefined && !/^\d+$/.test(opts.schemaId)) cmd.error('error: --schema-id is a number');
      process.exitCode = await dryRun(opts.config!, opts.topic!, opts.side as Side, opts.role, opts.format, opts);
    });
}

async function dryRun(file: string, topic: string, side: Side, roles: string[], format: string, opts: InspectOptions): Promise<number> {
  const config = loadConfig(file);
  const book = new RuleBook(config.inspection);
  const rules = book.rulesFor(topic, side, roles);
  const input = await readStdin();
  if (rules?.values) return schemaDryRun(config, book, rules, topic, side, roles, input, opts);
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
  const { engine, protection, close } = loadEngine(config, book);
  const counts = new Map<string, number>();
  let changed = 0;
  let fallbacks = 0;
  const blocked: string[] = [];
  for (let i = 0; i < payloads.length; i += BATCH) {
    const batch = payloads.slice(i, i + BATCH);
    await protection.reserve(batch.length);
    const r = await withSubjectKeys(protection, () => engine.inspect(batch, rules.ruleset));
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
  await close();
  return blocked.length > 0 ? 3 : 0;
}

/** Runs an engine call, getting the data subjects' keys it asks for first (from the configured state store; a dry run makes the missing ones there too). */
async function withSubjectKeys<T>(protection: Protection, run: () => T): Promise<T> {
  for (let round = 0; ; round++) {
    try {
      return run();
    } catch (err) {
      if (!(err instanceof NeedSubjectKeys) || round === 3) throw err;
      await protection.resolveSubjects(err.needs);
    }
  }
}

/**
 * The engine with the config's protection keys: envelope encryptions are counted in the
 * configured state store like the gateway's (a dry run uses the key too).
 */
function loadEngine(config: Config, book: RuleBook): { engine: WasmEngine; protection: Protection; close: () => Promise<void> } {
  const store = openStateStore(config.state);
  const protection = new Protection(config.inspection, book.protectRules, store);
  return { engine: WasmEngine.load(book.program.bytes, undefined, protection.protector), protection, close: () => store.close() };
}

/**
 * A topic with schema-registry values: each line is JSON data (Avro's JSON encoding, Protobuf's
 * JSON mapping, a JSON Schema value), written with the schema the way the HTTP API writes it,
 * inspected as the gateway would, and printed as the view of the value it would forward.
 */
async function schemaDryRun(config: Config, book: RuleBook, rules: ResolvedRules, topic: string, side: Side, roles: string[], input: Buffer, opts: InspectOptions): Promise<number> {
  const s = config.schemas;
  if (!s) throw new Error('the topic has schema-registry values and the config has no schemas section');
  const source = 'registry' in s ? new RegistryClient(s.registry) : new SchemaCatalog(s.catalog);
  const serializer = new SchemaSerializer(source);
  const ref: SchemaRef = opts.schemaId !== undefined ? { schemaId: Number(opts.schemaId) } : opts.subject ? { subject: opts.subject, version: 'latest' } : { strategy: 'TOPIC_NAME', topic, part: 'value' };
  const spec = rules.values!;
  const { engine, protection, close } = loadEngine(config, book);
  const codecs = new CodecCache();
  const who = side === 'consume' ? ` for roles [${roles.join(', ')}]` : '';
  const counts = new Map<string, number>();
  const refused: string[] = [];
  let changed = 0;
  let n = 0;
  try {
    for (const line of input.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      n++;
      let framed: { bytes: Uint8Array; header?: [string, Uint8Array] };
      try {
        framed = await serializer.serialize(ref, JSON.parse(line), spec.framing);
      } catch (err) {
        refused.push(`record ${n}: ${(err as Error).message}`);
        continue;
      }
      const schema = await source.byId(framed.header ? readGlobalIdHeader(framed.header[1]) : readFraming(framed.bytes, spec.framing === 'apicurio-header' ? 'confluent' : spec.framing, false).schemaId);
      const task = { payloads: [framed.bytes], count: 1, rulesets: Uint32Array.of(rules.ruleset), spec, schemaEpoch: 'cli', schemas: [schema], headers: [framed.header ? [framed.header] : []], topic };
      await protection.reserve(1);
      const r = await withSubjectKeys(protection, () => inspectSchemaValues(engine, task));
      if ('needSchemas' in r) throw new Error('the schema could not be compiled');
      if (r.problems.length > 0 || (r.flags[0]! & FLAG_BLOCKED) !== 0) {
        refused.push(r.problems[0] ? `record ${n}: ${r.problems[0].rule}: ${r.problems[0].message.replace(/^record 0: /, '')}` : `record ${n}: blocked by rule "${book.ruleId(r.stopRule[0]!)}": ${book.blockReason(r.stopRule[0]!)}`);
        continue;
      }
      if ((r.flags[0]! & FLAG_CHANGED) !== 0) changed++;
      for (let h = r.hitStart[0]!; h < r.hitStart[0]! + r.hitCount[0]!; h++) counts.set(book.ruleId(r.hits[h]!), (counts.get(book.ruleId(r.hits[h]!)) ?? 0) + 1);
      // the forwarded value, decoded again: what a consumer's deserializer would see
      codecs.learn(schema);
      const codec = codecs.get(schema.id)!;
      if (codec instanceof Error) throw codec;
      const out = r.values[0]!;
      const body = framed.header ? out : out.subarray(readFraming(out, spec.framing === 'apicurio-header' ? 'confluent' : spec.framing, codec.messageIndexed).bodyOffset);
      const indexes = codec.messageIndexed && !framed.header ? readFraming(out, spec.framing === 'apicurio-header' ? 'confluent' : spec.framing, true).messageIndexes : undefined;
      process.stdout.write(codec.decode(body, indexes).view + '\n');
    }
  } finally {
    await source.close();
    await close();
  }
  process.stderr.write(
    [
      `topic "${topic}", ${side} side${who}: rules ${rules.rules.join(', ') || '(none)'}; values written with ${'schemaId' in ref ? `schema ${ref.schemaId}` : 'subject' in ref ? `the latest ${ref.subject}` : `the latest ${topic}-value`}`,
      `${n} records: ${changed} changed, ${refused.length} refused, ${n - changed - refused.length} unchanged`,
      counts.size > 0 ? `actions by rule: ${[...counts].map(([id, k]) => `${id} ${k}`).join(', ')}` : 'no actions applied',
      ...refused,
    ].join('\n') + '\n',
  );
  return refused.length > 0 ? 3 : 0;
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
