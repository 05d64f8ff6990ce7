// Keys, header names and header values go through the engine in the same call as the
// values: the payload list is the values (one per record, first, so value results keep
// their record index) followed by every key and header that some rule applies to, each
// with its own compiled ruleset. A header name is scanned once per batch however many
// records carry it (names repeat: trace ids, content types). Afterwards the results are
// folded back into their records: rewritten keys and headers replace the originals, a
// block anywhere blocks the record, and every action applied counts for the record.
import type { StreamRecord } from '../operation.ts';
import { FLAG_BLOCKED, FLAG_CHANGED, FLAG_HEADERS_CHANGED, FLAG_KEY_CHANGED } from './engine.ts';
import { NO_RULES, type KeyHeaderRulesets } from './rules.ts';

/** The values and the extra payloads of a batch, with a ruleset each, and which record part each extra one is. */
export interface KeyHeaderPlan {
  /** the records' values, then keys, distinct header names and header values (empty and rule-less ones are left out) */
  payloads: Array<Uint8Array | null>;
  rulesets: Uint32Array;
  /** per record: its parts are refs [partStart[i], partStart[i + 1]) */
  partStart: Uint32Array;
  /** per part: the payload holding it (a header name's payload is shared by every record with that name) */
  payload: Uint32Array;
  /** per part: PART_KEY, or 2h (name of header h) / 2h + 1 (value of header h) */
  part: Int32Array;
}

const PART_KEY = -1;

/** The per-record engine facts (the shape of EngineResult / BatchResult). */
export interface PerRecord {
  flags: Uint32Array;
  stopRule: Uint32Array;
  hitStart: Uint32Array;
  hitCount: Uint32Array;
  hits: Uint32Array;
}

const utf8 = new TextDecoder();

/** The payload list for `records`: values under `valueRuleset`, keys and headers under theirs. */
export function planKeyHeaders(records: readonly StreamRecord[], valueRuleset: number, rs: KeyHeaderRulesets): KeyHeaderPlan {
  const n = records.length;
  const payloads: Array<Uint8Array | null> = new Array(n);
  const rulesets: number[] = new Array(n).fill(valueRuleset);
  const payload: number[] = [];
  const part: number[] = [];
  const partStart = new Uint32Array(n + 1);
  const byName = rs.headerValueByName;
  const names = new Map<string, number>();
  for (let i = 0; i < n; i++) payloads[i] = records[i]!.value;
  const add = (bytes: Uint8Array, ruleset: number): number => {
    payloads.push(bytes);
    rulesets.push(ruleset);
    return payloads.length - 1;
  };
  for (let i = 0; i < n; i++) {
    partStart[i] = part.length;
    const r = records[i]!;
    if (rs.key !== NO_RULES && r.key !== null && r.key.byteLength > 0) {
      payload.push(add(r.key, rs.key));
      part.push(PART_KEY);
    }
    for (let h = 0; h < r.headers.length; h++) {
      const [name, value] = r.headers[h]!;
      if (rs.headerName !== NO_RULES && name.length > 0) {
        let j = names.get(name);
        if (j === undefined) {
          j = add(Buffer.from(name, 'utf8'), rs.headerName);
          names.set(name, j);
        }
        payload.push(j);
        part.push(2 * h);
      }
      const valueRs = byName.size > 0 ? (byName.get(name) ?? rs.headerValue) : rs.headerValue;
      if (valueRs !== NO_RULES && value.byteLength > 0) {
        payload.push(add(value, valueRs));
        part.push(2 * h + 1);
      }
    }
  }
  partStart[n] = part.length;
  return { payloads, rulesets: Uint32Array.from(rulesets), partStart, payload: Uint32Array.from(payload), part: Int32Array.from(part) };
}

/**
 * Folds the results of the extra payloads into their records: `records` get the rewritten
 * keys and headers (a changed header list is a new array: re-encoders compare it by
 * identity), and the returned facts are per record with its parts' flags, stop rule and
 * actions merged in. `output(j)` is payload j as the engine rewrote it.
 */
export function foldKeyHeaders(records: StreamRecord[], plan: KeyHeaderPlan, r: PerRecord, output: (j: number) => Uint8Array | null): PerRecord {
  const n = records.length;
  const parts = plan.part.length;
  const flags = r.flags.slice(0, n);
  const stopRule = r.stopRule.slice(0, n);
  let partHits = 0;
  for (let p = 0; p < parts; p++) partHits += r.hitCount[plan.payload[p]!]!;
  // one hit list per record: its value's actions, then its parts' (a shared name's for each record that has it)
  let hitStart = r.hitStart.subarray(0, n);
  let hitCount = r.hitCount.subarray(0, n);
  let hits = r.hits;
  if (partHits > 0) {
    let valueHits = 0;
    for (let i = 0; i < n; i++) valueHits += r.hitCount[i]!;
    hitStart = new Uint32Array(n);
    hitCount = new Uint32Array(n);
    hits = new Uint32Array(valueHits + partHits);
    let at = 0;
    const take = (j: number) => {
      const from = r.hitStart[j]!;
      hits.set(r.hits.subarray(from, from + r.hitCount[j]!), at);
      at += r.hitCount[j]!;
    };
    for (let i = 0; i < n; i++) {
      hitStart[i] = at;
      take(i);
      for (let p = plan.partStart[i]!; p < plan.partStart[i + 1]!; p++) take(plan.payload[p]!);
      hitCount[i] = at - hitStart[i]!;
    }
  }
  for (let i = 0; i < n; i++) {
    const from = plan.partStart[i]!;
    const to = plan.partStart[i + 1]!;
    if (from === to) continue;
    const rec = records[i]!;
    let headers: Array<[string, Uint8Array]> | null = null;
    for (let p = from; p < to; p++) {
      const j = plan.payload[p]!;
      const f = r.flags[j]!;
      if ((f & FLAG_BLOCKED) !== 0 && (flags[i]! & FLAG_BLOCKED) === 0) {
        flags[i] = flags[i]! | FLAG_BLOCKED;
        stopRule[i] = r.stopRule[j]!;
      }
      // the JSON facts (did not parse, too deep, NDJSON, ...) are the record's too
      flags[i] = flags[i]! | (f & ~(FLAG_CHANGED | FLAG_BLOCKED));
      if ((f & FLAG_CHANGED) === 0) continue;
      const out = output(j)!;
      const slot = plan.part[p]!;
      if (slot === PART_KEY) {
        rec.key = out;
        flags[i] = flags[i]! | FLAG_CHANGED | FLAG_KEY_CHANGED;
        continue;
      }
      headers ??= rec.headers.slice();
      const h = slot >> 1;
      const [name, value] = headers[h]!;
      // a masked name stays a string (invalid UTF-8 a byte-level match could leave becomes U+FFFD)
      headers[h] = (slot & 1) === 0 ? [utf8.decode(out), value] : [name, out];
      flags[i] = flags[i]! | FLAG_CHANGED | FLAG_HEADERS_CHANGED;
    }
    if (headers) rec.headers = headers;
  }
  return { flags, stopRule, hitStart, hitCount, hits };
}
