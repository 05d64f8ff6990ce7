// Engine suite: bench/engine-hash.ts in a child process (a fresh V8 heap, and the same script
// stays runnable on its own), its rows turned into metrics:
//   engine.<row key>_mbps for every row (cards.wasm, cards.regexp, all.wasm_json, sha256.1k.wasm, ...)
//   engine.<ratio key> for every ratio the script reports (all.wasm_json_vs_best_regexp, ...)
//   engine.cards.wasm_vs_regexp, engine.sha256.{1k,1m}.crypto_vs_wasm
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../lib/env.ts';
import { spawnNode } from '../lib/procs.ts';
import { printTable } from '../lib/table.ts';

export interface EngineSuiteResult {
  settings: Record<string, unknown>;
  raw: unknown;
  metrics: Record<string, number>;
}

interface EngineJson {
  corpus: Record<string, number>;
  settings: Record<string, number>;
  rows: Array<{ key: string; name: string; mbps: number }>;
  ratios?: Record<string, number>;
}

export async function runEngineSuite(opts: { quick: boolean; work: string }): Promise<EngineSuiteResult> {
  if (!existsSync(join(ROOT, 'wasm', 'build', 'engine.wasm'))) throw new Error('wasm/build/engine.wasm is missing: run `npm run build:wasm` first');
  const jsonOut = join(opts.work, 'engine.json');
  const args = ['--json-out', jsonOut, ...(opts.quick ? ['--mib', '8', '--seconds', '0.6'] : [])];
  const logFile = join(opts.work, 'engine.log');
  console.log(`\n== engine: card scan + mask and SHA-256 (bench/engine-hash.ts ${args.slice(2).join(' ')}) ==`);
  const proc = spawnNode('engine-hash', join(ROOT, 'bench', 'engine-hash.ts'), args, { logFile, cwd: ROOT });
  const { code, signal } = await proc.exited;
  if (code !== 0) throw new Error(`bench/engine-hash.ts failed (${signal ?? `exit ${code}`}):\n${proc.tail(40)}`);
  console.log(proc.tail(60).replace(/^/gm, '  '));

  const raw = JSON.parse(readFileSync(jsonOut, 'utf8')) as EngineJson;
  const mbps = new Map(raw.rows.map((r) => [r.key, r.mbps]));
  const metrics: Record<string, number> = {};
  for (const r of raw.rows) metrics[`engine.${r.key}_mbps`] = Math.round(r.mbps);
  const ratio = (a: string, b: string) => Math.round((mbps.get(a)! / mbps.get(b)!) * 100) / 100;
  for (const [k, v] of Object.entries(raw.ratios ?? {})) metrics[`engine.${k}`] = v;
  metrics['engine.cards.wasm_vs_regexp'] = ratio('cards.wasm', 'cards.regexp');
  for (const size of ['1k', '1m']) metrics[`engine.sha256.${size}.crypto_vs_wasm`] = ratio(`sha256.${size}.crypto_hash`, `sha256.${size}.wasm`);

  printTable([
    ['ratio', 'x'],
    ['cards: WASM / RegExp+Luhn', metrics['engine.cards.wasm_vs_regexp']!.toFixed(2)],
    ['sha256 1 KiB: crypto.hash / WASM', metrics['engine.sha256.1k.crypto_vs_wasm']!.toFixed(2)],
    ['sha256 1 MiB: crypto.hash / WASM', metrics['engine.sha256.1m.crypto_vs_wasm']!.toFixed(2)],
  ]);
  return { settings: { script: 'bench/engine-hash.ts', args: args.slice(2), ...raw.settings }, raw, metrics };
}
