import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The dependency rules of src/ (.dependency-cruiser.cjs, ARCHITECTURE.md "Dependency rules"),
// checked with dependency-cruiser: no cycles, operation.ts a leaf, protocols never import
// controls, controls and inspection never import a protocol, protocols independent.

const ROOT = new URL('..', import.meta.url).pathname;
const bin = join(ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');

function cruise(cwd: string): { status: number | null; output: string } {
  const r = spawnSync(process.execPath, [bin, 'src', '--config', '.dependency-cruiser.cjs', '--output-type', 'err'], { cwd, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

test('src/ keeps the dependency rules', () => {
  const { status, output } = cruise(ROOT);
  assert.equal(status, 0, output);
});

test('the rules catch a deliberately added cycle and a control importing a protocol', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-arch-'));
  try {
    cpSync(join(ROOT, 'src'), join(dir, 'src'), { recursive: true });
    for (const f of ['.dependency-cruiser.cjs', 'tsconfig.json', 'package.json']) cpSync(join(ROOT, f), join(dir, f));
    // operation.ts -> policy -> operation.ts, and a control reaching into the Kafka listener
    writeFileSync(join(dir, 'src/operation.ts'), `${readFileSync(join(ROOT, 'src/operation.ts'), 'utf8')}\nimport type { Policy } from './policy/policy.ts';\nexport type PolicyOf = Policy;\n`);
    writeFileSync(join(dir, 'src/controls/leak.ts'), "import type { KafkaListener } from '../protocols/kafka/listener.ts';\nexport type L = KafkaListener;\n");
    const { status, output } = cruise(dir);
    assert.notEqual(status, 0);
    assert.match(output, /no-cycles/);
    assert.match(output, /operation-is-a-leaf/);
    assert.match(output, /controls-know-no-protocol/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
