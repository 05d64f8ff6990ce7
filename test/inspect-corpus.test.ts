// Labelled corpus: generated events with known sensitive values of every built-in detector
// and known near-misses (Luhn-invalid 16-digit order ids, invalid SSN areas, IBANs with a
// wrong checksum, UUIDs whose leading hex digits form a Luhn-valid number, epoch-ms
// timestamps). Every sensitive value must be gone from the output, every near-miss intact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { corpus } from '../bench/engine-corpus.ts';
import { ALL_DETECTORS, detectorRule, enc, setup, td } from './helpers/inspect.ts';
import { outputOf } from '../src/inspect/engine.ts';

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
