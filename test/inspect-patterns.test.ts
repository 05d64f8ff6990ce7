// The pattern language and the automaton: what the subset accepts and rejects, and
// property tests that the WASM scanner finds exactly the matches a V8 RegExp reference
// with the same semantics finds (bench/engine-reference.ts: latin1 text = bytes,
// leftmost-longest, same validators).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { compileProgram, RuleCompileError, type RuleSpec } from '../src/inspect/compile/program.ts';
import { nullable, parseFlags, parsePattern, PatternError } from '../src/inspect/compile/regex.ts';
import { DETECTORS } from '../src/inspect/detectors.ts';
import { outputOf } from '../src/inspect/engine.ts';
import { applyMatches, Reference } from '../bench/engine-reference.ts';
import * as gen from '../bench/engine-corpus.ts';
import { ALL_DETECTORS, detectorRule, enc, setup } from './helpers/inspect.ts';

test('the subset accepts literals, classes, escapes, groups, alternation, quantifiers, boundaries, one-byte lookaround', () => {
  for (const p of [
    'abc', 'a|b|cd', '(ab)+c?', '(?:x|y){2,5}', '(?<year>\\d{4})-\\d{2}', '[a-z0-9_.-]+@x\\.com', '[^"\\\\]*"', '\\bword\\b', '\\Bx',
    '^\\d{9}$', 'caf\u00e9', '[\u00e9\u00e8]x', '\\x41\\u0042\\t\\n', '(?<![A-Z])[A-Z]{3}(?![A-Z])', '(?=\\d)\\w+', 'a{3}', 'a{2,}', '\\{\\}\\[\\]',
  ]) {
    assert.doesNotThrow(() => parsePattern(p), p);
  }
  assert.doesNotThrow(() => parsePattern('secret', parseFlags('i')));
});

test('patterns outside the subset are rejected with the reason, never approximated', () => {
  const cases: Array<[string, RegExp]> = [
    ['(a)\\1', /backreferences/],
    ['(?<n>a)\\k<n>', /named backreferences/],
    ['a*?', /lazy quantifiers/],
    ['a++', /possessive/],
    ['(?=ab)', /lookaround is limited to one character/],
    ['(?<!ab)c', /lookaround is limited to one character/],
    ['\\p{L}', /Unicode property/],
    ['[^\u00e9]', /non-ASCII characters in a negated class/],
    ['[\u00e0-\u00ff]', /ranges must stay within ASCII/],
    ['a{2000}', /limited to 1000/],
    ['a{3,2}', /max < min/],
    ['(?i)abc', /unsupported group syntax/],
    ['a**', /nothing to repeat/],
    ['*a', /nothing to repeat/],
    ['(ab', /unterminated group/],
    ['ab)', /unmatched "\)"/],
    ['[ab', /unterminated character class/],
    ['a{x', /quantifier/],
    ['\\cA', /control escapes/],
    ['\\q', /unsupported escape/],
    ['', /empty pattern/],
    ['^*', /quantifier cannot follow an assertion/],
  ];
  for (const [p, why] of cases) {
    assert.throws(() => parsePattern(p), (e: unknown) => e instanceof PatternError && why.test(e.message), p);
  }
  assert.throws(() => parseFlags('g'), /unsupported flag "g"/);
  assert.equal(nullable(parsePattern('a?b*')), true);
  assert.throws(
    () => compileProgram({ rules: [{ id: 'empty', match: { pattern: 'x*' }, fields: null, action: { type: 'drop' } }], rulesets: [], keys: [], activeKey: null }),
    (e: unknown) => e instanceof RuleCompileError && e.rule === 'empty' && /empty string/.test(e.message),
  );
});

test('all built-in detectors compile into small automata', () => {
  const s = setup(ALL_DETECTORS.map((id) => detectorRule(id)));
  const st = s.program.stats;
  assert.equal(st.patterns, DETECTORS.length);
  assert.ok(st.forwardStates < 2000, `forward DFA has ${st.forwardStates} states`);
  for (const n of st.reverseStates) assert.ok(n < 1000, `reverse DFA has ${n} states`);
  assert.ok(st.planes <= 8);
});

// ---- property: built-in detectors against the reference ----

const all = setup(ALL_DETECTORS.map((id) => detectorRule(id)));
const single = new Map(ALL_DETECTORS.map((id) => [id, setup([detectorRule(id)])]));

function check(s: ReturnType<typeof setup>, ids: readonly string[], records: Uint8Array[]): void {
  const r = s.engine.inspect(records, 0);
  for (let k = 0; k < records.length; k++) {
    const text = Buffer.from(records[k]!).toString('latin1');
    const m = s.reference.exactMatches(text);
    const want = Buffer.from(applyMatches(text, m, (p) => `[${ids[p]}]`), 'latin1');
    const got = Buffer.from(outputOf(r, k, records[k]!)!);
    assert.deepEqual(
      { hits: Array.from(r.hits.subarray(r.hitStart[k]!, r.hitStart[k]! + r.hitCount[k]!)), out: got.toString('latin1') },
      { hits: m.map((x) => x.p), out: want.toString('latin1') },
      `input ${JSON.stringify(text)}`,
    );
  }
}

const rng = fc.integer({ min: 1, max: 0x7fffffff }).map((seed) => new gen.Rng(seed));
/** valid values of every detector, generated like the corpus does */
const sensitive = fc.tuple(rng, fc.constantFrom(...ALL_DETECTORS)).map(([r, id]) => {
  switch (id) {
    case 'payment-card': return gen.card(r);
    case 'us-ssn': return gen.ssn(r);
    case 'email': return `${r.chars(1 + r.int(8), 'abcxyz._+-09')}@${r.chars(1 + r.int(6), 'abc-09')}.${r.chars(2 + r.int(3), 'comrgde')}`;
    case 'phone': return r.pick([`+49 151 ${r.digits(7)}`, `(415) 555-${r.digits(4)}`, `+1-202-555-${r.digits(4)}`, `212.555.${r.digits(4)}`]);
    case 'iban': return gen.iban(r, r.next() < 0.8);
    case 'ipv4': return `${r.int(300)}.${r.int(256)}.${r.int(256)}.${r.int(256)}`;
    case 'ipv6': return gen.ipv6(r);
    case 'aws-access-key-id': return gen.awsKeyId(r);
    case 'aws-secret-key': return gen.awsSecret(r);
    case 'jwt': return r.next() < 0.7 ? gen.jwt(r) : gen.jwt(r).slice(0, 40 + r.int(80));
    default: return gen.pem(r).slice(0, r.next() < 0.7 ? undefined : 80);
  }
});
/** a value with a few random edits: a character changed, removed, doubled or a separator added */
const mutated = fc.tuple(sensitive, fc.array(fc.tuple(fc.nat(), fc.constantFrom('del', 'dup', 'sub', 'sep')), { maxLength: 3 }), fc.constantFrom('0', '7', 'A', 'z', ' ', '-', '.', ':', '@', 'é'))
  .map(([v, edits, ch]) => {
    let s = v;
    for (const [at, op] of edits) {
      const i = s.length === 0 ? 0 : at % s.length;
      if (op === 'del') s = s.slice(0, i) + s.slice(i + 1);
      else if (op === 'dup') s = s.slice(0, i + 1) + s.slice(i);
      else if (op === 'sub') s = s.slice(0, i) + ch + s.slice(i + 1);
      else s = s.slice(0, i) + ' ' + s.slice(i);
    }
    return s;
  });
const filler = fc.constantFrom(' ', '  ', '"', '":"', ', ', '\n', 'x', 'ID', '_', '-', '.', '+', '0', '12', 'é', '日本', '😀', '€', '\\n', '/', '=', '(', ')');
const textWith = fc.array(fc.oneof({ arbitrary: filler, weight: 6 }, { arbitrary: sensitive, weight: 2 }, { arbitrary: mutated, weight: 2 }), { maxLength: 12 })
  .map((parts) => enc(parts.join('')));

test('property: every built-in detector on its own equals the V8 reference (valid, mutated and random values, multi-byte text)', () => {
  for (const [id, s] of single) {
    fc.assert(fc.property(fc.array(textWith, { minLength: 1, maxLength: 4 }), (records) => check(s, [id], records)), { numRuns: 120 });
  }
});

test('property: all built-in detectors together equal the V8 reference (leftmost-longest across patterns)', () => {
  fc.assert(fc.property(fc.array(textWith, { minLength: 1, maxLength: 4 }), (records) => check(all, ALL_DETECTORS, records)), { numRuns: 500 });
});

test('property: random bytes (invalid UTF-8 included) equal the reference', () => {
  fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 3 }), (records) => check(all, ALL_DETECTORS, records)), { numRuns: 200 });
});

// ---- property: user patterns against V8 running the very same source ----

const atom: fc.Arbitrary<string> = fc.constantFrom('a', 'b', 'A', '0', '1', ' ', '-', '_', '\\d', '\\w', '\\W', '\\D', '\\.', '.', '[ab]', '[^a]', '[a-c0-1]', '[^\\d ]', 'ab', '(?:a|b1)', '(a|)b', '(?:0|01|012)');
const quant = fc.constantFrom('', '', '*', '+', '?', '{1,3}', '{2}', '{0,2}');
const seq = fc.tuple(
  fc.constantFrom('', '', '\\b', '^', '(?<![a-z])', '(?<=[ _])'),
  fc.array(fc.tuple(atom, quant).map(([a, q]) => a + q), { minLength: 1, maxLength: 4 }),
  fc.constantFrom('', '', '\\b', '$', '(?![0-9])', '(?=[ -])', '\\B'),
).map(([pre, items, post]) => pre + items.join('') + post);
const userPattern = fc.array(seq, { minLength: 1, maxLength: 3 }).map((alts) => alts.join('|'))
  .filter((p) => { try { return !nullable(parsePattern(p)); } catch { return false; } });
const userText = fc.array(fc.constantFrom('a', 'b', 'A', 'B', '0', '1', '2', ' ', '-', '_', 'é', '.', 'ab', 'b1', '012'), { maxLength: 30 }).map((p) => enc(p.join('')));

test('property: user patterns (random, several at once, with i flag) equal V8 on the same source', () => {
  fc.assert(
    fc.property(fc.array(userPattern, { minLength: 1, maxLength: 3 }), fc.boolean(), fc.array(userText, { minLength: 1, maxLength: 4 }), (patterns, ci, records) => {
      const rules: RuleSpec[] = patterns.map((p, i) => ({ id: `p${i}`, match: { pattern: p, ...(ci ? { flags: 'i' } : {}) }, fields: null, action: { type: 'redact', replacement: `[p${i}]` } }));
      const s = setup(rules);
      // V8 compiles the user's source itself (ASCII-only patterns: latin1 text = bytes, and V8's i flag folds only ASCII there)
      const v8 = new Reference(patterns.map((p) => ({ source: ci ? caseless(p) : p, validator: 0 })));
      const r = s.engine.inspect(records, 0);
      for (let k = 0; k < records.length; k++) {
        const text = Buffer.from(records[k]!).toString('latin1');
        const m = v8.exactMatches(text);
        const want = applyMatches(text, m, (p) => `[p${p}]`);
        assert.equal(Buffer.from(outputOf(r, k, records[k]!)!).toString('latin1'), want, `patterns ${JSON.stringify(patterns)} ci=${ci} text ${JSON.stringify(text)}`);
      }
    }),
    { numRuns: 300 },
  );
});

/** The pattern with the i flag spelled out for V8 ([aA] for a), outside escapes and classes alike. */
function caseless(p: string): string {
  let out = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '\\') { out += c + p[++i]!; continue; }
    if (c === '[') {
      const end = p.indexOf(']', i);
      let body = p.slice(i + 1, end);
      const neg = body.startsWith('^');
      if (neg) body = body.slice(1);
      let extra = '';
      for (const m of body.matchAll(/([a-zA-Z])-([a-zA-Z])|([a-zA-Z])/g)) {
        if (m[3]) extra += m[3] === m[3].toLowerCase() ? m[3].toUpperCase() : m[3].toLowerCase();
        else extra += `${m[1]!.toUpperCase()}-${m[2]!.toUpperCase()}${m[1]!.toLowerCase()}-${m[2]!.toLowerCase()}`;
      }
      out += `[${neg ? '^' : ''}${body}${extra}]`;
      i = end;
      continue;
    }
    out += /[a-zA-Z]/.test(c) ? `[${c.toLowerCase()}${c.toUpperCase()}]` : c;
  }
  return out;
}
