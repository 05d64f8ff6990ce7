// Top self-time functions of V8 CPU profiles, e.g. those `npm run bench -- --profile` writes:
//   node bench/profile.ts bench/results/profiles/<date>-http[/<case>] [--top 20]
import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { printSummary, profilesIn, summarizeProfile } from './lib/profile.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '15' } } });
if (positionals.length === 0) {
  console.error('usage: node bench/profile.ts <profile file or directory>... [--top N]');
  process.exit(2);
}
for (const p of positionals) {
  for (const file of statSync(p).isDirectory() ? profilesIn(p) : [p]) printSummary(summarizeProfile(file, 40), Number(values.top));
}
