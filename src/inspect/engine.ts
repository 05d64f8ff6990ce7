// Host side of the WASM inspection engine (wasm/assembly/index.ts, ABI v4).
// One instance per thread: works on the main thread and inside piscina workers
// (only node:fs + WebAssembly, no main-thread-only APIs). The compiled rules (the
// "program") are copied into the instance once, at load.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { instantiateSync } from '@assemblyscript/loader';
import type { Protector } from '../protect/protector.ts';

export const FLAG_CHANGED = 1;
export const FLAG_BLOCKED = 2;
/** should be JSON and did not parse: scanned as bytes with escapes decoded, or refused */
export const FLAG_JSON_FALLBACK = 4;
export const FLAG_JSON = 8;
/** several JSON documents, one per line, each walked */
export const FLAG_NDJSON = 16;
/** with FLAG_JSON_FALLBACK: nested deeper than the walker goes (512) */
export const FLAG_JSON_TOO_DEEP = 32;
/** with FLAG_JSON_FALLBACK: data after a document that is not another line's document */
export const FLAG_JSON_TRAILING = 64;
/** set by the host (inspect/key-headers.ts), never by the engine: the record's key / a header changed */
export const FLAG_KEY_CHANGED = 1 << 16;
export const FLAG_HEADERS_CHANGED = 1 << 17;

/** The stop rule of a value refused because it does not parse while its rules need it parsed (no rule index). */
export const STOP_MALFORMED_JSON = 0xffffffff;

/** The outcome of one inspect() call. Views stay valid until the next call on the engine. */
export interface EngineResult {
  n: number;
  /** per record: FLAG_* */
  flags: Uint32Array;
  /** per record: the rule that blocked it (when FLAG_BLOCKED) */
  stopRule: Uint32Array;
  /** per record: [first, count) into hits */
  hitStart: Uint32Array;
  hitCount: Uint32Array;
  /** rule index per applied action, records back to back */
  hits: Uint32Array;
  /** rewritten payloads (all payloads with emitAll), described by outIndex */
  out: Uint8Array;
  /** per record: [offset, length] in out */
  outIndex: Uint32Array;
}

interface EngineExports {
  memory: { readonly buffer: ArrayBuffer };
  header(): number;
  reserveProgram(bytes: number): number;
  loadProgram(bytes: number): number;
  ensure(records: number, inBytes: number, outBytes: number, hits: number): number;
  inspect(n: number, emitAll: number): number;
  sha256Batch(n: number): number;
}

const ABI_VERSION = 4;
/** hit word the engine writes before a protect rule's hit: then the output offset and the length (bit 31: JSON string content) */
const PROTECT_MARK = 0xfffffffe;
const E_OUT_FULL = -2;
const E_HITS_FULL = -6;
const ERRORS: Record<number, string> = {
  [-1]: 'too many records for the reserved table',
  [-3]: 'a record points outside the input region',
  [-4]: 'no rules program is loaded',
  [-5]: 'a record names an unknown ruleset',
};
const EMPTY = new Uint8Array(0);
const DEFAULT_WASM = new URL('../../wasm/build/engine.wasm', import.meta.url);

// Compiled once per thread; each load() makes a fresh instance (own memory).
// (Typed via the loader: tsconfig's lib has no WebAssembly namespace.)
type CompiledModule = ReturnType<typeof instantiateSync>['module'];
const modules = new Map<string, CompiledModule>();

function instantiate(path: string): EngineExports {
  const cached = modules.get(path);
  if (cached !== undefined) return instantiateSync(cached, {}).instance.exports as unknown as EngineExports;
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`WASM engine not built: ${path} is missing; run \`npm run build:wasm\``);
    }
    throw err;
  }
  const { module, instance } = instantiateSync(bytes, {});
  modules.set(path, module);
  return instance.exports as unknown as EngineExports;
}

export class WasmEngine {
  readonly #path: string;
  readonly #program: Uint8Array;
  #ex!: EngineExports;
  // views and region pointers, refreshed whenever memory grows or regions move
  #buf: ArrayBuffer | null = null;
  #u8 = EMPTY;
  #u32 = new Uint32Array(0);
  #recCap = 0;
  #inTab = 0;
  #inData = 0;
  #inCap = 0;
  #outTab = 0;
  #outData = 0;
  #outCap = 0;
  #status = 0;
  #digests = 0;
  #hits = 0;
  #hitsCap = 0;

  readonly #protector: Protector | null;

  private constructor(path: string, program: Uint8Array, protector: Protector | null) {
    this.#path = path;
    this.#program = program;
    this.#protector = protector;
    this.#instantiate();
  }

  /** Synchronously instantiates wasm/build/engine.wasm (or `wasmPath`) with a compiled rules program. */
  static load(program: Uint8Array, wasmPath?: string | URL, protector: Protector | null = null): WasmEngine {
    const path = wasmPath === undefined ? fileURLToPath(DEFAULT_WASM)
      : wasmPath instanceof URL ? fileURLToPath(wasmPath) : wasmPath;
    return new WasmEngine(path, program, protector);
  }

  #instantiate(): void {
    this.#ex = instantiate(this.#path);
    this.#buf = null;
    this.#refresh();
    const version = this.#u32[this.#ex.header() >>> 2];
    if (version !== ABI_VERSION) {
      throw new Error(`WASM engine ABI ${version}, host expects ${ABI_VERSION}; rebuild with \`npm run build:wasm\``);
    }
    if (this.#ex.reserveProgram(this.#program.byteLength) === 0) throw new RangeError('WASM engine cannot reserve memory for the rules program');
    this.#refresh();
    const at = this.#u32[(this.#ex.header() >>> 2) + 12]!;
    this.#u8.set(this.#program, at);
    const rc = this.#ex.loadProgram(this.#program.byteLength);
    if (rc !== 0) throw new Error(`WASM engine rejected the rules program (${rc}); the host and engine versions differ`);
    this.#refresh();
  }

  /**
   * Inspects a batch with one WASM call. rulesets[i] (or one number for all) is the
   * compiled ruleset applied to payload i; null counts as an empty payload. With
   * `emitAll` every payload is written to `out` (one buffer to transfer), otherwise only
   * the changed ones.
   */
  inspect(payloads: ReadonlyArray<Uint8Array | null>, rulesets: number | ArrayLike<number>, emitAll = false): EngineResult {
    const n = payloads.length;
    let total = 0;
    for (let k = 0; k < n; k++) total += payloads[k]?.length ?? 0;
    let outWant = emitAll ? total + (total >>> 3) : total >>> 1;
    let hitsWant = n;
    for (let attempt = 0; ; attempt++) {
      this.#reserve(n, total, outWant, hitsWant);
      this.#writeBatch(payloads, rulesets);
      let written: number;
      try {
        written = this.#ex.inspect(n, emitAll ? 1 : 0);
      } catch (err) {
        // a trap (e.g. memory exhausted) leaves the instance in an unknown state: start over
        this.#instantiate();
        throw err;
      }
      this.#refresh();
      const h = this.#ex.header() >>> 2;
      if ((written === E_OUT_FULL || written === E_HITS_FULL) && attempt < 3) {
        outWant = Math.max(outWant, this.#u32[h + 14]!);
        hitsWant = Math.max(hitsWant, this.#u32[h + 15]!);
        continue;
      }
      if (written < 0) throw new Error(`WASM inspect failed: ${ERRORS[written] ?? `code ${written}`}`);
      const status = this.#u32.subarray(this.#status >>> 2, (this.#status >>> 2) + 4 * n);
      const flags = new Uint32Array(n);
      const stopRule = new Uint32Array(n);
      const hitStart = new Uint32Array(n);
      const hitCount = new Uint32Array(n);
      for (let k = 0; k < n; k++) {
        flags[k] = status[4 * k]!;
        hitStart[k] = status[4 * k + 1]!;
        hitCount[k] = status[4 * k + 2]!;
        stopRule[k] = status[4 * k + 3]!;
      }
      const nHits = this.#u32[h + 15]!;
      const hits = this.#u32.slice(this.#hits >>> 2, (this.#hits >>> 2) + nHits);
      const out = this.#u8.slice(this.#outData, this.#outData + written);
      const outIndex = this.#u32.slice(this.#outTab >>> 2, (this.#outTab >>> 2) + 2 * n);
      const result = { n, flags, stopRule, hitStart, hitCount, hits, out, outIndex };
      return hits.includes(PROTECT_MARK) ? this.#protect(result, payloads) : result;
    }
  }

  /**
   * Replaces the values protect rules marked (encrypt / decrypt: src/protect/protector.ts) and
   * puts each one's fact in place of its rule's hit. An encryption that failed blocks its record.
   */
  #protect(r: EngineResult, payloads: ReadonlyArray<Uint8Array | null>): EngineResult {
    const protector = this.#protector;
    if (!protector) throw new Error('the rules encrypt or decrypt but the engine has no keyring');
    const { n, flags, stopRule, hits, out, outIndex } = r;
    // every marked value of the batch first, so the protector can work on them together (and
    // find each one's data subject in its record)
    const items: Array<{ index: number; value: Uint8Array; record: Uint8Array | null }> = [];
    for (let i = 0; i < n; i++) {
      const to = r.hitStart[i]! + r.hitCount[i]!;
      for (let k = r.hitStart[i]!; k < to; k++) {
        if (hits[k] !== PROTECT_MARK) continue;
        const at = hits[k + 1]!;
        items.push({ index: hits[k + 3]!, value: out.subarray(at, at + (hits[k + 2]! & 0x7fffffff)), record: payloads[i] ?? null });
        k += 3;
      }
    }
    const applied = protector.applyMany(items);
    const pieces: Uint8Array[] = [];
    const index = new Uint32Array(2 * n);
    const hitStart = new Uint32Array(n);
    const hitCount = new Uint32Array(n);
    const kept: number[] = [];
    let size = 0;
    let next = 0;
    const push = (b: Uint8Array) => {
      pieces.push(b);
      size += b.byteLength;
    };
    for (let i = 0; i < n; i++) {
      const from = r.hitStart[i]!;
      const to = from + r.hitCount[i]!;
      const off = outIndex[2 * i]!;
      const end = off + outIndex[2 * i + 1]!;
      index[2 * i] = size;
      hitStart[i] = kept.length;
      let cursor = off;
      for (let k = from; k < to; k++) {
        if (hits[k] !== PROTECT_MARK) {
          kept.push(hits[k]!);
          continue;
        }
        const at = hits[k + 1]!;
        const word = hits[k + 2]!;
        const a = applied[next++]!;
        push(out.subarray(cursor, at));
        push((word & 0x80000000) !== 0 ? escapeJson(a.text) : a.text);
        cursor = at + (word & 0x7fffffff);
        kept.push(a.fact);
        if (a.refuse && (flags[i]! & FLAG_BLOCKED) === 0) {
          flags[i]! |= FLAG_BLOCKED;
          stopRule[i] = a.fact;
        }
        k += 3;
      }
      if (cursor < end) push(out.subarray(cursor, end));
      index[2 * i + 1] = size - index[2 * i]!;
      hitCount[i] = kept.length - hitStart[i]!;
    }
    const joined = new Uint8Array(size);
    let at = 0;
    for (const p of pieces) {
      joined.set(p, at);
      at += p.byteLength;
    }
    return { n, flags, stopRule, hitStart, hitCount, hits: Uint32Array.from(kept), out: joined, outIndex: index };
  }

  /** SHA-256 of each record, computed in WASM (null = empty record); kept for the benchmark. */
  sha256(payloads: ReadonlyArray<Uint8Array | null>): Uint8Array[] {
    const n = payloads.length;
    let total = 0;
    for (let k = 0; k < n; k++) total += payloads[k]?.length ?? 0;
    this.#reserve(n, total, 0, 0);
    this.#writeBatch(payloads, 0);
    const rc = this.#ex.sha256Batch(n);
    if (rc < 0) throw new Error(`WASM sha256Batch failed with code ${rc}`);
    this.#refresh();
    // One copy for the batch; per-record views into it.
    const all = this.#u8.slice(this.#digests, this.#digests + 32 * n);
    const out: Uint8Array[] = new Array(n);
    for (let k = 0; k < n; k++) out[k] = all.subarray(32 * k, 32 * k + 32);
    return out;
  }

  #writeBatch(payloads: ReadonlyArray<Uint8Array | null>, rulesets: number | ArrayLike<number>): void {
    const n = payloads.length;
    const u8 = this.#u8;
    const u32 = this.#u32;
    const tab = this.#inTab >>> 2;
    const one = typeof rulesets === 'number' ? rulesets : -1;
    let off = 0;
    for (let k = 0; k < n; k++) {
      const p = payloads[k];
      const len = p?.length ?? 0;
      u32[tab + 4 * k] = off;
      u32[tab + 4 * k + 1] = len;
      u32[tab + 4 * k + 2] = one >= 0 ? one : (rulesets as ArrayLike<number>)[k]!;
      if (len > 0) u8.set(p!, this.#inData + off);
      off += len;
    }
  }

  #reserve(records: number, inBytes: number, outBytes: number, hits: number): void {
    if (inBytes > 0xfff00000 || outBytes > 0xfff00000) throw new RangeError('batch too large for the WASM engine');
    if (records > this.#recCap || inBytes > this.#inCap || outBytes > this.#outCap || hits > this.#hitsCap) {
      if (this.#ex.ensure(records, inBytes, outBytes, hits) === 0) {
        throw new RangeError(`WASM engine cannot grow memory for ${records} records / ${inBytes} bytes`);
      }
    }
    this.#refresh();
  }

  #refresh(): void {
    const buf = this.#ex.memory.buffer;
    if (buf !== this.#buf) {
      this.#buf = buf;
      this.#u8 = new Uint8Array(buf);
      this.#u32 = new Uint32Array(buf);
    }
    const h = this.#ex.header() >>> 2;
    const u32 = this.#u32;
    this.#recCap = u32[h + 1]!;
    this.#inTab = u32[h + 2]!;
    this.#inData = u32[h + 3]!;
    this.#inCap = u32[h + 4]!;
    this.#outTab = u32[h + 5]!;
    this.#outData = u32[h + 6]!;
    this.#outCap = u32[h + 7]!;
    this.#status = u32[h + 8]!;
    this.#digests = u32[h + 9]!;
    this.#hits = u32[h + 10]!;
    this.#hitsCap = u32[h + 11]!;
  }
}

/** The payload as forwarded: the rewritten bytes when changed, else the original. */
export function outputOf(r: EngineResult, i: number, original: Uint8Array | null): Uint8Array | null {
  if ((r.flags[i]! & FLAG_CHANGED) === 0) return original;
  const off = r.outIndex[2 * i]!;
  return r.out.subarray(off, off + r.outIndex[2 * i + 1]!);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const HEX = '0123456789abcdef';

/** `text` as the content of a JSON string (the escapes JSON requires, nothing more). */
function escapeJson(text: Uint8Array): Uint8Array {
  let extra = 0;
  for (const b of text) if (b === QUOTE || b === BACKSLASH) extra += 1;
  else if (b < 0x20) extra += 5;
  if (extra === 0) return text;
  const out = new Uint8Array(text.byteLength + extra);
  let j = 0;
  for (const b of text) {
    if (b === QUOTE || b === BACKSLASH) {
      out[j++] = BACKSLASH;
      out[j++] = b;
    } else if (b < 0x20) {
      out[j++] = BACKSLASH;
      out[j++] = 0x75;
      out[j++] = 0x30;
      out[j++] = 0x30;
      out[j++] = HEX.charCodeAt(b >> 4);
      out[j++] = HEX.charCodeAt(b & 15);
    } else out[j++] = b;
  }
  return out;
}
