import { readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Full paths of the files in `dir` whose names match `pattern`, sorted by name; none when `dir` does not exist. */
export function filesIn(dir: string, pattern: RegExp): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => pattern.test(n)).sort().map((n) => join(dir, n));
}
