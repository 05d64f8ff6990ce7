// Generated JSON events for the engine benchmark and the labelled corpus test:
// realistic shapes (ids, timestamps, users, items, free text) with planted sensitive
// values of every built-in detector and planted near-misses that must stay untouched.
// Deterministic (seeded), so runs and test failures reproduce.

export interface Planted {
  detector: string;
  value: string;
}

export interface CorpusEvent {
  json: string;
  /** sensitive values in the event (each must be masked) */
  sensitive: Planted[];
  /** look-alikes in the event (each must survive unchanged) */
  nearMisses: Planted[];
}

export class Rng {
  #s: number;
  constructor(seed = 0x2545f491) {
    this.#s = seed >>> 0 || 1;
  }
  next(): number {
    // xorshift32
    let s = this.#s;
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    this.#s = s;
    return s / 0x100000000;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]!; }
  digits(n: number): string { let s = ''; for (let i = 0; i < n; i++) s += this.int(10); return s; }
  hex(n: number): string { let s = ''; for (let i = 0; i < n; i++) s += '0123456789abcdef'[this.int(16)]; return s; }
  chars(n: number, alphabet: string): string { let s = ''; for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)]; return s; }
}

export function luhnOk(d: string): boolean {
  let sum = 0;
  for (let i = 0; i < d.length; i++) {
    let v = d.charCodeAt(d.length - 1 - i) - 48;
    if (i & 1) { v *= 2; if (v > 9) v -= 9; }
    sum += v;
  }
  return sum % 10 === 0;
}

export function withLuhn(body: string): string {
  for (let c = 0; c < 10; c++) if (luhnOk(body + c)) return body + c;
  throw new Error('unreachable');
}

export function card(r: Rng): string {
  const [prefix, len, groups] = r.pick([
    ['4', 16, [4, 4, 4, 4]], ['51', 16, [4, 4, 4, 4]], ['2221', 16, [4, 4, 4, 4]], ['37', 15, [4, 6, 5]],
    ['6011', 16, [4, 4, 4, 4]], ['4', 13, null], ['36', 14, [4, 6, 4]], ['3530', 16, [4, 4, 4, 4]], ['62', 19, [4, 4, 4, 4, 3]],
  ] as const);
  const d = withLuhn(prefix + r.digits(len - prefix.length - 1));
  const sep = groups ? r.pick(['', ' ', '-']) : '';
  if (!sep || !groups) return d;
  const parts: string[] = [];
  let at = 0;
  for (const g of groups) { parts.push(d.slice(at, at + g)); at += g; }
  return parts.join(sep);
}

/** 16 digits that fail Luhn (order numbers, tracking ids) */
export function luhnInvalid16(r: Rng): string {
  for (;;) { const d = r.pick(['4', '5', '6', '3']) + r.digits(15); if (!luhnOk(d)) return d; }
}

export function ssn(r: Rng): string {
  const area = 1 + r.int(665); // 001-665 (skips 666 and 900+)
  const group = 1 + r.int(99);
  const serial = 1 + r.int(9999);
  return `${String(area).padStart(3, '0')}-${String(group).padStart(2, '0')}-${String(serial).padStart(4, '0')}`;
}

export function invalidSsn(r: Rng): string {
  const area = r.pick(['000', '666', String(900 + r.int(100))]);
  return `${area}-${String(1 + r.int(99)).padStart(2, '0')}-${String(1 + r.int(9999)).padStart(4, '0')}`;
}

function mod97(s: string): number {
  let rem = 0;
  for (const ch of s) {
    const v = ch >= 'A' && ch <= 'Z' ? String(ch.charCodeAt(0) - 55) : ch;
    for (const d of v) rem = (rem * 10 + Number(d)) % 97;
  }
  return rem;
}

const IBAN_FORMATS: Array<[string, number]> = [['DE', 22], ['GB', 22], ['FR', 27], ['ES', 24], ['NL', 18], ['IT', 27], ['BE', 16], ['CH', 21]];

export function iban(r: Rng, valid = true, spaced = r.next() < 0.5): string {
  for (;;) {
    const s = ibanOnce(r, valid, spaced);
    // a look-alike must not contain a real value of another kind: 4 digit groups can be a valid card
    if (valid || !/\d{4} \d{4} \d{4} \d{4}/.test(s) || ![...s.matchAll(/(?=(\d{4} \d{4} \d{4} \d{4}))/g)].some((m) => luhnOk(m[1]!.replaceAll(' ', '')))) return s;
  }
}

function ibanOnce(r: Rng, valid: boolean, spaced: boolean): string {
  const [cc, len] = r.pick(IBAN_FORMATS);
  const bban = cc === 'GB' || cc === 'NL' ? r.chars(4, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ') + r.digits(len - 8) : r.digits(len - 4);
  const check = 98 - mod97(bban + cc + '00');
  // exactly one check value in 2..98 is valid
  const cd = valid ? check : check === 98 ? 2 : check + 1;
  const s = cc + String(cd).padStart(2, '0') + bban;
  return spaced ? s.replace(/(.{4})(?=.)/g, '$1 ') : s;
}

export function jwt(r: Rng): string {
  const b64u = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64u({ alg: 'RS256', typ: 'JWT', kid: r.hex(8) })}.${b64u({ sub: `user-${r.digits(6)}`, iat: 1700000000 + r.int(1e6), scope: 'read write' })}.${r.chars(43, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_')}`;
}

export function awsKeyId(r: Rng): string {
  return r.pick(['AKIA', 'ASIA']) + r.chars(16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567');
}

export function awsSecret(r: Rng): string {
  for (;;) {
    const s = r.chars(40, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+');
    if (/[A-Z]/.test(s) && /[a-z]/.test(s) && /\d/.test(s)) return s;
  }
}

export function ipv6(r: Rng): string {
  return r.pick([
    () => `2001:db8:${r.hex(4)}:${r.hex(3)}::${r.hex(2)}:${r.hex(4)}`,
    () => `fe80::${r.hex(4)}:${r.hex(4)}:${r.hex(4)}:${r.hex(4)}`,
    () => Array.from({ length: 8 }, () => r.hex(1 + r.int(4))).join(':'),
  ])();
}

export function pem(r: Rng): string {
  const body = Array.from({ length: 6 }, () => r.chars(64, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/')).join('\n');
  const kind = r.pick(['RSA ', 'EC ', '', 'OPENSSH ']);
  return `-----BEGIN ${kind}PRIVATE KEY-----\n${body}\n-----END ${kind}PRIVATE KEY-----`;
}

/** a v4 UUID whose first 16 hex characters are all digits, Luhn-valid when read as a card */
export function digitUuid(r: Rng): string {
  for (;;) {
    const d = r.digits(8) + r.digits(4) + '4' + r.digits(3);
    if (luhnOk(d)) return `${d.slice(0, 8)}-${d.slice(8, 12)}-${d.slice(12, 16)}-a${r.hex(3)}-${r.hex(12)}`;
  }
}

const WORDS = ['order', 'shipped', 'payment', 'customer', 'refund', 'invoice', 'café', 'naïve', 'größe', '東京', 'señal', 'status', 'ok', 'retry', 'timeout', 'warehouse', 'delivered', 'the', 'and', 'package'];
const AGENTS = ['Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36', 'okhttp/4.12.0', 'curl/8.5.0', 'python-requests/2.32.3'];

/** One event of about `size` bytes. */
export function event(r: Rng, i: number, size = 1000): CorpusEvent {
  const sensitive: Planted[] = [];
  const nearMisses: Planted[] = [];
  const plant = (detector: string, value: string) => { sensitive.push({ detector, value }); return value; };
  const miss = (detector: string, value: string) => { nearMisses.push({ detector, value }); return value; };
  const uuid = r.next() < 0.01 ? digitUuid(r) : `${r.hex(8)}-${r.hex(4)}-4${r.hex(3)}-a${r.hex(3)}-${r.hex(12)}`;
  const e: Record<string, unknown> = {
    id: miss('uuid', uuid),
    seq: i,
    ts: new Date(1_700_000_000_000 + i * 137).toISOString(),
    created_ms: Number(miss('epoch-ms', String(1_700_000_000_000 + i * 137))),
    type: r.pick(['order.created', 'order.paid', 'user.login', 'cart.updated']),
    user: {
      id: `u_${r.digits(8)}`,
      email: plant('email', `${r.pick(['ann', 'bob', 'chen', 'dana'])}.${r.digits(4)}@${r.pick(['example.com', 'mail.example.org', 'corp.example.co.uk'])}`),
      phone: plant('phone', r.pick([`+49 151 ${r.digits(7)}`, `+1 415-555-${r.digits(4)}`, `+44 20 ${r.digits(4)} ${r.digits(4)}`])),
      ip: plant('ipv4', `10.${r.int(256)}.${r.int(256)}.${r.int(256)}`),
      agent: r.pick(AGENTS),
    },
    amount: { value: Number(`${r.digits(3)}.${r.digits(2)}`), currency: r.pick(['EUR', 'USD', 'JPY']) },
    items: Array.from({ length: 1 + r.int(4) }, () => ({ sku: `SKU-${r.digits(6)}`, qty: 1 + r.int(5), price: Number(`${r.digits(2)}.${r.digits(2)}`) })),
    note: Array.from({ length: 8 + r.int(16) }, () => r.pick(WORDS)).join(' '),
  };
  if (r.next() < 0.3) e.order_ref = miss('payment-card', luhnInvalid16(r));
  if (r.next() < 0.05) e.payment = { method: 'card', pan: plant('payment-card', card(r)), exp: `${r.digits(2)}/${r.digits(2)}` };
  if (r.next() < 0.02) e.note = `${e.note as string} card on file ${plant('payment-card', card(r))} thanks`;
  if (r.next() < 0.03) (e.user as Record<string, unknown>).ssn = plant('us-ssn', ssn(r));
  if (r.next() < 0.02) (e.user as Record<string, unknown>).legacy_id = miss('us-ssn', invalidSsn(r));
  if (r.next() < 0.03) e.payout = { iban: plant('iban', iban(r)) };
  if (r.next() < 0.02) e.refund_account = miss('iban', iban(r, false));
  if (r.next() < 0.04) e.client_ip6 = plant('ipv6', ipv6(r));
  if (r.next() < 0.03) e.auth = `Bearer ${plant('jwt', jwt(r))}`;
  if (r.next() < 0.005) e.aws = { key: plant('aws-access-key-id', awsKeyId(r)), secret: plant('aws-secret-key', awsSecret(r)) };
  if (r.next() < 0.001) e.attachment = plant('pem-private-key', pem(r));
  let s = JSON.stringify(e);
  if (s.length < size) {
    let pad = '';
    while (pad.length < size - s.length - 9) pad += `${r.pick(WORDS)} `;
    s = s.slice(0, -1) + `,"comment":"${pad.trim()}"}`;
  }
  return { json: s, sensitive, nearMisses };
}

export function corpus(bytes: number, seed?: number, size?: number): CorpusEvent[] {
  const r = new Rng(seed);
  const out: CorpusEvent[] = [];
  let total = 0;
  for (let i = 0; total < bytes; i++) {
    const e = event(r, i, size);
    out.push(e);
    total += Buffer.byteLength(e.json);
  }
  return out;
}

/** A whole record whose sensitive values sit outside JSON string values, or in a value the JSON walker cannot take whole. */
export interface CorpusRecord {
  /** what the record exercises: key, header-name, header-value, number, object-key, ndjson, trailing, deep, unterminated */
  kind: string;
  key: string | null;
  headers: Array<[string, string]>;
  value: string;
  /** each must be gone from the key, the headers and the value (in escaped values: also once the escapes are decoded) */
  sensitive: Planted[];
  nearMisses: Planted[];
}

export const RECORD_KINDS = ['key', 'header-name', 'header-value', 'number', 'object-key', 'ndjson', 'trailing', 'deep', 'unterminated'] as const;

/** A card as bare digits (what fits a JSON number or a header name). */
function cardDigits(r: Rng): string {
  return card(r).replace(/[ -]/g, '');
}

/** `s` with its leading digit written as a JSON \u escape, the way a client hides it from a byte scan. */
function escapeFirst(s: string): string {
  return `\\u${s.charCodeAt(0).toString(16).padStart(4, '0')}${s.slice(1)}`;
}

/**
 * Records for the labelled corpus test: one kind after the other, each with a planted value
 * (and a near-miss) where only whole-record inspection finds it. Deterministic (seeded).
 */
export function recordCorpus(count: number, seed = 0x7ec0): CorpusRecord[] {
  const r = new Rng(seed);
  const out: CorpusRecord[] = [];
  for (let i = 0; i < count; i++) {
    const kind = RECORD_KINDS[i % RECORD_KINDS.length]!;
    const base = event(r, i, 300);
    // kinds that replace the value do not carry the event's own planted values
    const keepsEvent = kind === 'key' || kind === 'header-name' || kind === 'header-value' || kind === 'ndjson' || kind === 'trailing';
    const sensitive: Planted[] = keepsEvent ? [...base.sensitive] : [];
    const nearMisses: Planted[] = keepsEvent ? [...base.nearMisses] : [];
    const plant = (detector: string, value: string) => { sensitive.push({ detector, value }); return value; };
    const miss = (detector: string, value: string) => { nearMisses.push({ detector, value }); return value; };
    const rec: CorpusRecord = { kind, key: `k-${i}`, headers: [['trace-id', `t-${r.hex(16)}`]], value: base.json, sensitive, nearMisses };
    switch (kind) {
      case 'key':
        rec.key = r.next() < 0.5 ? `order-${plant('payment-card', card(r))}` : `user:${plant('email', `ann.${r.digits(3)}@example.com`)}`;
        rec.headers.push(['order', miss('payment-card', luhnInvalid16(r))]);
        break;
      case 'header-name':
        rec.headers.push([plant('payment-card', cardDigits(r)), 'v'], [plant('email', `bob.${r.digits(3)}@example.org`), 'w']);
        break;
      case 'header-value':
        rec.headers.push(['x-card', plant('payment-card', card(r))], ['x-ssn', plant('us-ssn', ssn(r))], ['x-ts', miss('epoch-ms', String(1_700_000_000_000 + i))]);
        break;
      case 'number': {
        const pan = plant('payment-card', cardDigits(r));
        rec.value = `{"id":${i},"pan":${pan},"neg":-${plant('payment-card', cardDigits(r))},"created_ms":${miss('epoch-ms', String(1_700_000_000_000 + i))},"order":${miss('payment-card', luhnInvalid16(r))}}`;
        break;
      }
      case 'object-key':
        rec.value = `{"${plant('email', `chen.${r.digits(3)}@example.com`)}":{"ok":true},"${plant('payment-card', cardDigits(r))}":1,"${escapeFirst(plant('payment-card', cardDigits(r)))}":2}`;
        break;
      case 'ndjson':
        rec.value = [base.json, `{"pan":${plant('payment-card', cardDigits(r))}}`, `{"note":"${escapeFirst(plant('payment-card', cardDigits(r)))}"}`, ''].join('\n');
        break;
      case 'trailing':
        rec.value = `${base.json} trailer {"card":"${escapeFirst(plant('payment-card', cardDigits(r)))}","ip":"${plant('ipv4', `10.0.${r.int(256)}.${r.int(256)}`)}"}`;
        break;
      case 'deep':
        rec.value = `${'['.repeat(520)}"${escapeFirst(plant('payment-card', cardDigits(r)))}",${plant('payment-card', cardDigits(r))}${']'.repeat(520)}`;
        break;
      case 'unterminated':
        // the e-mail address's "@" escaped too: detectors must see the decoded text
        rec.value = `{"card":"${escapeFirst(plant('payment-card', card(r)))}","mail":"${plant('email', `dana.${r.digits(3)}@example.com`).replace('@', '\\u0040')}`;
        break;
    }
    out.push(rec);
  }
  return out;
}
