// Engine micro-benchmark, one run:
//  (a) card scan + mask: WASM engine vs a V8 RegExp + Luhn baseline with the
//      same semantics, on ~64 MiB of generated ~1 KiB JSON events;
//  (b) SHA-256: WASM vs node:crypto (crypto.hash and createHash) at 1 KiB and 1 MiB.
// Usage: npm run build:wasm && node bench/engine-hash.ts [--mib 64] [--batch 256]
import { createHash, hash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { WasmEngine } from '../src/inspect/engine.ts';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '64' },
    batch: { type: 'string', default: '256' },
    seconds: { type: 'string', default: '1.5' },
  },
});
const TARGET_BYTES = Number(values.mib) * 1024 * 1024;
const BATCH = Number(values.batch);
const MIN_SECONDS = Number(values.seconds);

// ---- deterministic data ----

let seed = 0x2545f491;
function rnd(): number {
  // xorshift32: reproducible corpus across runs
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed / 0x100000000;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
const digits = (n: number): string => { let s = ''; for (let i = 0; i < n; i++) s += Math.floor(rnd() * 10); return s; };
const hex = (n: number): string => { let s = ''; for (let i = 0; i < n; i++) s += '0123456789abcdef'[Math.floor(rnd() * 16)]; return s; };

function luhnOk(d: string): boolean {
  let sum = 0;
  for (let i = 0; i < d.length; i++) {
    let v = d.charCodeAt(d.length - 1 - i) - 48;
    if (i & 1) { v *= 2; if (v > 9) v -= 9; }
    sum += v;
  }
  return sum % 10 === 0;
}
function card(): string {
  const [prefix, len] = pick([['4', 16], ['51', 16], ['22', 16], ['37', 15], ['6011', 16], ['4', 13]] as const);
  const body = prefix + digits(len - prefix.length - 1);
  let d = body + '0';
  for (let c = 0; c < 10 && !luhnOk(d); c++) d = body + String(c + 1);
  const sep = pick(['', '', ' ', '-']);
  return sep === '' ? d : d.replace(/(\d{4})(?=\d)/g, `$1${sep}`);
}

const WORDS = ['order', 'shipped', 'payment', 'customer', 'refund', 'invoice', 'café', 'naïve', 'größe', '東京', 'señal', 'status', 'ok', 'retry', 'timeout', 'warehouse'];
const AGENTS = ['Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36', 'okhttp/4.12.0', 'curl/8.5.0'];

let planted = 0;
function event(i: number): string {
  const withCard = rnd() < 0.05;
  if (withCard) planted++;
  const e = {
    id: `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`,
    seq: i,
    ts: new Date(1_700_000_000_000 + i * 137).toISOString(),
    type: pick(['order.created', 'order.paid', 'user.login', 'cart.updated']),
    user: { id: `u_${digits(8)}`, email: `user${digits(5)}@example.com`, ip: `10.${digits(2)}.${digits(2)}.${digits(2)}`, agent: pick(AGENTS) },
    amount: { value: Number(`${digits(3)}.${digits(2)}`), currency: pick(['EUR', 'USD', 'JPY']) },
    items: Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => ({ sku: `SKU-${digits(6)}`, qty: 1 + Math.floor(rnd() * 5), price: Number(`${digits(2)}.${digits(2)}`) })),
    phone: `+49 ${digits(3)} ${digits(7)}`,
    note: Array.from({ length: 12 + Math.floor(rnd() * 20) }, () => pick(WORDS)).join(' '),
    ...(withCard ? { payment: { method: 'card', pan: card(), exp: `${digits(2)}/${digits(2)}` } } : {}),
  };
  let s = JSON.stringify(e);
  if (s.length < 1000) s = s.slice(0, -1) + `,"pad":"${'x'.repeat(1000 - s.length)}"}`;
  return s;
}

// ---- RegExp + Luhn baseline (same semantics as wasm/assembly/cards.ts) ----

// The greedy match is the longest candidate from a start; shorter candidates
// end right before a separator inside it. latin1 keeps one char per byte so
// masking stays byte-exact for any UTF-8.
const CARD_RE = /(?<![A-Za-z0-9])\d(?:[ -]?\d){12,18}(?![A-Za-z0-9])/g;

function luhnPrefix(m: string, end: number): boolean {
  let sum = 0;
  let k = 0;
  for (let i = end - 1; i >= 0; i--) {
    const c = m.charCodeAt(i);
    if (c < 48 || c > 57) continue;
    let v = c - 48;
    if (k++ & 1) { v *= 2; if (v > 9) v -= 9; }
    sum += v;
  }
  return sum % 10 === 0;
}

function maskRegex(buf: Buffer): { out: Buffer; hits: number } {
  const s = buf.toString('latin1');
  CARD_RE.lastIndex = 0;
  let out = '';
  let copied = 0;
  let hits = 0;
  let m: RegExpExecArray | null;
  while ((m = CARD_RE.exec(s)) !== null) {
    const text = m[0];
    let end = text.length;
    let found = 0;
    while (end > 0) {
      let nd = 0;
      for (let i = 0; i < end; i++) { const c = text.charCodeAt(i); if (c >= 48 && c <= 57) nd++; }
      if (nd < 13) break;
      if (luhnPrefix(text, end)) { found = end; break; }
      // next shorter candidate: end just before the previous separator
      let j = end - 1;
      while (j > 0 && text[j] !== ' ' && text[j] !== '-') j--;
      end = j;
    }
    if (found === 0) { CARD_RE.lastIndex = m.index + 1; continue; }
    let nd = 0;
    for (let i = 0; i < found; i++) { const c = text.charCodeAt(i); if (c >= 48 && c <= 57) nd++; }
    let hide = nd - 4;
    let masked = '';
    for (let i = 0; i < found; i++) {
      const ch = text[i]!;
      if (hide > 0 && ch >= '0' && ch <= '9') { masked += '*'; hide--; } else masked += ch;
    }
    out += s.slice(copied, m.index) + masked;
    copied = m.index + found;
    hits++;
    CARD_RE.lastIndex = copied;
  }
  if (hits === 0) return { out: buf, hits };
  return { out: Buffer.from(out + s.slice(copied), 'latin1'), hits };
}

// ---- timing ----

function measure(bytesPerRun: number, run: () => void): { mbps: number; msPerRun: number } {
  run(); run(); // warm up / tier up
  let best = Infinity;
  for (let rep = 0; rep < 3; rep++) {
    let runs = 0;
    const t0 = process.hrtime.bigint();
    let dt = 0;
    do { run(); runs++; dt = Number(process.hrtime.bigint() - t0) / 1e9; } while (dt < MIN_SECONDS / 3);
    best = Math.min(best, dt / runs);
  }
  return { mbps: bytesPerRun / best / 1e6, msPerRun: best * 1000 };
}

const rows: Array<[string, string, string]> = [];
const row = (name: string, r: { mbps: number; msPerRun: number }, extra = ''): void => {
  rows.push([name, r.mbps.toFixed(0), extra]);
};

// ---- (a) card scan + mask ----

const engine = WasmEngine.load();
const events: Buffer[] = [];
let corpusBytes = 0;
for (let i = 0; corpusBytes < TARGET_BYTES; i++) {
  const b = Buffer.from(event(i));
  events.push(b);
  corpusBytes += b.length;
}
const batches: Buffer[][] = [];
for (let i = 0; i < events.length; i += BATCH) batches.push(events.slice(i, i + BATCH));

// Same output from both paths, record by record, before timing anything.
let wasmHits = 0;
let changedRecs = 0;
for (const b of batches) {
  const r = engine.inspect(b);
  for (let k = 0; k < b.length; k++) {
    const ref = maskRegex(b[k]!);
    if (ref.hits !== r.hits[k] || !ref.out.equals(r.payloads[k]!)) {
      throw new Error(`baseline and WASM disagree on:\n${b[k]!.toString()}\n${Buffer.from(r.payloads[k]!).toString()}\n${ref.out.toString()}`);
    }
    wasmHits += r.hits[k]!;
    if (r.changed[k]) changedRecs++;
  }
}

row('cards: WASM inspect (batch ' + BATCH + ')', measure(corpusBytes, () => { for (const b of batches) engine.inspect(b); }));
row('cards: RegExp + Luhn (per record)', measure(corpusBytes, () => { for (const e of events) maskRegex(e); }));

// ---- (b) SHA-256 ----

function shaRows(size: number, count: number): void {
  const msgs = Array.from({ length: count }, () => Buffer.alloc(size, Math.floor(rnd() * 256)));
  const total = size * count;
  const w = engine.sha256(msgs);
  if (!Buffer.from(w[0]!).equals(createHash('sha256').update(msgs[0]!).digest())) throw new Error('sha mismatch');
  const label = size >= 1 << 20 ? `${size >> 20} MiB` : `${size >> 10} KiB`;
  const perCall = count === 1 ? '' : ` x${count}/batch`;
  row(`sha256 ${label}: WASM${perCall}`, measure(total, () => { engine.sha256(msgs); }));
  row(`sha256 ${label}: crypto.hash`, measure(total, () => { for (const m of msgs) hash('sha256', m, 'buffer'); }));
  row(`sha256 ${label}: createHash`, measure(total, () => { for (const m of msgs) createHash('sha256').update(m).digest(); }));
}
shaRows(1024, 1024);
shaRows(1 << 20, 1);

// ---- report ----

console.log(`node ${process.version}; corpus ${(corpusBytes / 1048576).toFixed(1)} MiB, ${events.length} events ` +
  `(avg ${(corpusBytes / events.length).toFixed(0)} B), ${planted} with a planted card; ` +
  `${wasmHits} masked in ${changedRecs} records (baseline agrees)`);
const w0 = Math.max(...rows.map((r) => r[0].length));
console.log(`${'measurement'.padEnd(w0)}  ${'MB/s'.padStart(7)}`);
for (const [name, mbps] of rows) console.log(`${name.padEnd(w0)}  ${mbps.padStart(7)}`);
