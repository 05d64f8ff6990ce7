// JSON field paths for inspection rules, a JSONPath subset:
//   $                 the whole document
//   .name  ['name']   a member of an object
//   [3]               an element of an array
//   .*  [*]           any member or element
//   ..name  ..*       at any depth below (descendant)
// e.g. $.customer.ssn, $..password, $.items[*].card, $.users[0].email, $['odd key']

export type Step =
  | { desc: boolean; kind: 'name'; name: string }
  | { desc: boolean; kind: 'any' }
  | { desc: boolean; kind: 'index'; index: number };

export class JsonPathError extends Error {
  override name = 'JsonPathError';
}

export function parseJsonPath(path: string): Step[] {
  if (!path.startsWith('$')) throw new JsonPathError(`"${path}": a field path starts with "$"`);
  const steps: Step[] = [];
  let i = 1;
  const fail = (why: string): never => {
    throw new JsonPathError(`"${path}": ${why} at position ${i}`);
  };
  while (i < path.length) {
    let desc = false;
    if (path.startsWith('..', i)) { desc = true; i += 2; }
    else if (path[i] === '.') i++;
    else if (path[i] !== '[') fail('expected ".", ".." or "["');
    if (path[i] === '[') {
      const close = path.indexOf(']', i);
      if (close < 0) fail('unterminated "["');
      const inner = path.slice(i + 1, close).trim();
      if (inner === '*') steps.push({ desc, kind: 'any' });
      else if (/^\d+$/.test(inner)) steps.push({ desc, kind: 'index', index: Number(inner) });
      else {
        const m = /^(['"])((?:\\.|(?!\1).)*)\1$/.exec(inner);
        if (!m) return fail('expected [*], [n] or [\'name\']');
        steps.push({ desc, kind: 'name', name: m[2]!.replace(/\\(.)/g, '$1') });
      }
      i = close + 1;
    } else if (path[i] === '*') {
      steps.push({ desc, kind: 'any' });
      i++;
    } else {
      const m = /^[A-Za-z_$][\w$-]*/.exec(path.slice(i));
      if (!m) return fail('expected a member name (letters, digits, "_", "-", "$"), "*" or "[...]"');
      steps.push({ desc, kind: 'name', name: m[0] });
      i += m[0].length;
    }
  }
  return steps;
}
