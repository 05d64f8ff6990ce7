// Labelled corpus: generated events with known sensitive values of every built-in detector
// and known near-misses (Luhn-invalid 16-digit order ids, invalid SSN areas, IBANs with a
// wrong checksum, UUIDs whose leading hex digits form a Luhn-valid number, epoch-ms
// timestamps). Every sensitive value must be gone from the output, every near-miss intact.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { corpus, recordCorpus, RECORD_KINDS } from '../bench/engine-corpus.ts';
import { ALL_DETECTORS, detectorRule, enc, setup, td } from './helpers/inspect.ts';
import { outputOf } from '../src/inspect/engine.ts';
import { Inspect } from '../src/controls/inspect.ts';
import { Inspector } from '../src/inspect/inspector.ts';
import { RuleBook } from '../src/inspect/rules.ts';
import { inspectionSchema } from '../src/inspect/schema.ts';
import type { Operation, StreamRecord } from '../src/operation.ts';

const events = corpus(4 << 20, 0x5eed);

for (const format of ['json', 'text'] as const) {
  test(`labelled corpus (${format} mode): every sensitive value masked, no near-miss altered`, () => {
    const s = setup(ALL_DETECTORS.map((id) => detectorRule(id)), format);
    const planted = new Map<string, number>();
    const missed = new Map<string, number>();
    for (let i = 0; i < events.length; i += 512) {
      const batch = events.slice(i, i + 512);
      const inputs = batch.map((e) => enc(e.json));
      const r = s.engine.inspect(inputs, 0);
      batch.forEach((e, k) => {
        const out = td.decode(outputOf(r, k, inputs[k]!)!);
        if (format === 'json') JSON.parse(out);
        for (const v of e.sensitive) {
          planted.set(v.detector, (planted.get(v.detector) ?? 0) + 1);
          // JSON.stringify escapes newlines (PEM): look for the value as it appears in the document
          assert.ok(!out.includes(JSON.stringify(v.value).slice(1, -1)), `${v.detector} value ${JSON.stringify(v.value)} survived in ${out}`);
        }
        for (const v of e.nearMisses) {
          missed.set(v.detector, (missed.get(v.detector) ?? 0) + 1);
          assert.ok(out.includes(v.value), `near-miss ${v.detector} ${JSON.stringify(v.value)} was altered in ${out}`);
        }
      });
    }
    for (const id of ALL_DETECTORS) assert.ok((planted.get(id) ?? 0) > 0, `the corpus plants ${id}`);
    for (const id of ['payment-card', 'us-ssn', 'iban', 'uuid', 'epoch-ms']) assert.ok((missed.get(id) ?? 0) > 0, `the corpus has ${id} near-misses`);
  });
}

test('UUIDs whose first 16 hex characters are digits (Luhn-valid) are not cards', () => {
  const s = setup([detectorRule('payment-card')], 'text');
  const uuids = events.map((e) => e.nearMisses.find((m) => m.detector === 'uuid')!.value).filter((u) => /^\d{8}-\d{4}-\d{4}/.test(u));
  assert.ok(uuids.length > 10, `${uuids.length} digit-prefixed UUIDs`);
  const { out } = s.run(uuids.map((u) => `{"id":"${u}"}`));
  out.forEach((o, i) => assert.equal(o, `{"id":"${uuids[i]}"}`));
});

test('labelled records: keys, header names and values, JSON numbers, object keys, NDJSON, trailing data, deep nesting and escapes are all masked', async () => {
  const cfg = inspectionSchema.parse({
    mode: 'inline',
    rules: ALL_DETECTORS.map((id) => ({ id, detector: id, action: { type: 'redact', replacement: `[${id}]` } })),
    topics: [{ topics: ['t'], format: 'json', produce: ALL_DETECTORS }],
  });
  const book = new RuleBook(cfg);
  const inspector = new Inspector(cfg, book.program);
  after(() => inspector.close());
  const control = new Inspect(inspector, () => book, () => cfg.limits);
  const text = (b: Uint8Array | null) => (b === null ? '' : td.decode(b));
  // what a JSON reader would see: \uXXXX escapes decoded (lenient: the value may not parse)
  const decoded = (s: string) => s.replace(/\\u([0-9a-fA-F]{4})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
  const planted = new Map<string, number>();
  const notes = new Set<string>();
  const records = recordCorpus(1800);
  for (let i = 0; i < records.length; i += 200) {
    const batch = records.slice(i, i + 200);
    const recs = batch.map((c): StreamRecord => ({ key: c.key === null ? null : enc(c.key), value: enc(c.value), headers: c.headers.map(([k, v]) => [k, enc(v)]) }));
    const op: Operation = {
      id: 'op', receivedAt: 0, startedAt: 0, protocol: 'http', action: 'produce', meta: {},
      session: { id: 's', protocol: 'http', client: { address: '127.0.0.1' }, startedAt: 0 },
      resource: { kind: 'topic', name: 't' }, identity: { subject: 'u', issuer: 'i', roles: [], groups: [], claims: {} }, records: recs,
    };
    await control.handle(op, async () => ({}));
    for (const n of op.inspection!.notes) notes.add(n.split(':')[0]!);
    batch.forEach((c, k) => {
      const r = recs[k]!;
      const all = [text(r.key), ...r.headers.flatMap(([name, v]) => [name, text(v)]), text(r.value)].join('\n');
      for (const v of c.sensitive) {
        planted.set(c.kind, (planted.get(c.kind) ?? 0) + 1);
        const raw = JSON.stringify(v.value).slice(1, -1);
        assert.ok(!all.includes(raw) && !decoded(all).includes(v.value), `${c.kind}: ${v.detector} value ${JSON.stringify(v.value)} survived in ${all.slice(0, 2000)}`);
      }
      for (const v of c.nearMisses) assert.ok(all.includes(v.value), `${c.kind}: near-miss ${v.detector} ${JSON.stringify(v.value)} was altered in ${all.slice(0, 2000)}`);
      // values that were JSON stay JSON (a masked number became a string)
      if (c.kind === 'number' || c.kind === 'object-key') assert.doesNotThrow(() => JSON.parse(text(r.value)), text(r.value));
      if (c.kind === 'ndjson') for (const line of text(r.value).split('\n').filter(Boolean)) JSON.parse(line);
    });
  }
  for (const kind of RECORD_KINDS) assert.ok((planted.get(kind) ?? 0) > 0, `the corpus plants values in ${kind} records`);
  assert.deepEqual([...notes].sort(), ['headers-changed', 'json-fallback', 'json-too-deep', 'json-trailing', 'keys-changed', 'ndjson']);
});
