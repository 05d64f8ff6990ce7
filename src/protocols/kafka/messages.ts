// Kafka's message definitions (common/message/*.json inside kafka-clients.jar) are the
// source of truth for the codec. They are not committed: on first use they are extracted
// from the jar that the project's Maven step fetches (ensureKafkaJars) into
// .cache/kafka/<version>/message/, and later starts read that directory directly.

import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { unzipSync } from 'fflate';
import { parse as parseJsonc, type ParseError } from 'jsonc-parser';
import { ensureKafkaJars, kafkaVersion } from '../../dev/kafka.ts';
import { MessageCodec, type MessageSpec } from './codec.ts';

const REPO_ROOT = resolve(import.meta.dirname, '..', '..', '..');

export interface MessageRegistry {
  requestHeader: MessageCodec;
  responseHeader: MessageCodec;
  requests: Map<number, MessageCodec>;
  responses: Map<number, MessageCodec>;
  /** api key -> request name without the suffix, e.g. 0 -> "Produce" */
  names: Map<number, string>;
}

let registry: Promise<MessageRegistry> | undefined;

/** Loads (and on first use extracts) the definitions; memoized per process. */
export function loadMessages(dir?: string): Promise<MessageRegistry> {
  if (dir) return buildRegistry(dir);
  registry ??= (async () => buildRegistry(await ensureDefinitions()))().catch((err: unknown) => {
    registry = undefined;
    throw err;
  });
  return registry;
}

export async function ensureDefinitions(): Promise<string> {
  const version = await kafkaVersion();
  const dir = join(REPO_ROOT, '.cache', 'kafka', version, 'message');
  if (existsSync(join(dir, 'RequestHeader.json'))) return dir;
  // a container without Maven can point at a kafka-clients jar fetched some other way
  const jar = process.env.STREAMGATE_KAFKA_CLIENTS_JAR ?? (await ensureKafkaJars()).split(':').find((p) => /^kafka-clients-[\d.]+\.jar$/.test(basename(p)));
  if (!jar) throw new Error('kafka-clients jar is not on the Kafka classpath');
  const files = unzipSync(new Uint8Array(await readFile(jar)), {
    filter: (f) => f.name.startsWith('common/message/') && f.name.endsWith('.json'),
  });
  // extract into a private dir and rename: a concurrent start never sees half a directory
  const staging = `${dir}.tmp-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  for (const [name, data] of Object.entries(files)) await writeFile(join(staging, basename(name)), data);
  if (existsSync(join(dir, 'RequestHeader.json'))) {
    await rm(staging, { recursive: true, force: true });
    return dir;
  }
  try {
    await rename(staging, dir);
  } catch (err) {
    // another process extracted the same files first
    await rm(staging, { recursive: true, force: true });
    if (!existsSync(join(dir, 'RequestHeader.json'))) throw err;
  }
  return dir;
}

async function buildRegistry(dir: string): Promise<MessageRegistry> {
  const reg: MessageRegistry = { requests: new Map(), responses: new Map(), names: new Map() } as unknown as MessageRegistry;
  for (const file of await readdir(dir)) {
    if (!file.endsWith('.json')) continue;
    const errors: ParseError[] = [];
    const spec = parseJsonc(await readFile(join(dir, file), 'utf8'), errors, { allowTrailingComma: true }) as MessageSpec;
    if (errors.length > 0) throw new Error(`${file}: not valid JSON with comments (${errors.length} errors)`);
    if (spec.type === 'header') {
      if (spec.name === 'RequestHeader') reg.requestHeader = new MessageCodec(spec);
      else if (spec.name === 'ResponseHeader') reg.responseHeader = new MessageCodec(spec);
    } else if (spec.type === 'request' && spec.apiKey !== undefined) {
      reg.requests.set(spec.apiKey, new MessageCodec(spec));
      reg.names.set(spec.apiKey, spec.name.replace(/Request$/, ''));
    } else if (spec.type === 'response' && spec.apiKey !== undefined) {
      reg.responses.set(spec.apiKey, new MessageCodec(spec));
    }
  }
  if (!reg.requestHeader || !reg.responseHeader || reg.requests.size < 50) throw new Error(`${dir} does not hold Kafka's message definitions`);
  return reg;
}
