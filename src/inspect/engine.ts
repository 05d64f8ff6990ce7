// Host side of the WASM inspection engine (wasm/assembly/index.ts, ABI v1).
// One instance per thread: works on the main thread and inside piscina workers
// (only node:fs + WebAssembly, no main-thread-only APIs).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { instantiateSync } from '@assemblyscript/loader';

export interface InspectResult {
  /** Output per record; unchanged records are the caller's original object. */
  payloads: Uint8Array[];
  /** Card numbers masked per record. */
  hits: number[];
  changed: boolean[];
}

interface EngineExports {
  memory: { readonly buffer: ArrayBuffer };
  header(): number;
  ensure(records: number, inBytes: number, outBytes: number): number;
  inspect(n: number): number;
  sha256Batch(n: number): number;
}

const ABI_VERSION = 1;
const FLAG_CHANGED = 1;
const E_OUT_FULL = -2;
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
  private readonly ex: EngineExports;
  // Views and region pointers, refreshed after ensure() re-lays out or memory grows.
  private buf: ArrayBuffer | null = null;
  private u8 = EMPTY;
  private u32 = new Uint32Array(0);
  private recCap = 0;
  private inTab = 0;
  private inData = 0;
  private inCap = 0;
  private outTab = 0;
  private outData = 0;
  private outCap = 0;
  private status = 0;
  private digests = 0;

  private constructor(ex: EngineExports) {
    this.ex = ex;
    this.refresh();
    const version = this.u32[this.ex.header() >>> 2];
    if (version !== ABI_VERSION) {
      throw new Error(`WASM engine ABI ${version}, host expects ${ABI_VERSION}; rebuild with \`npm run build:wasm\``);
    }
  }

  /** Synchronously instantiates wasm/build/engine.wasm (or `wasmPath`). */
  static load(wasmPath?: string | URL): WasmEngine {
    const path = wasmPath === undefined ? fileURLToPath(DEFAULT_WASM)
      : wasmPath instanceof URL ? fileURLToPath(wasmPath) : wasmPath;
    // Raw instance exports: the loader's demangled wrappers add nothing for plain functions.
    return new WasmEngine(instantiate(path));
  }

  /**
   * Masks card numbers in a batch with one WASM call. null counts as an empty
   * record (the result holds an empty array there; the caller restores null).
   */
  inspect(payloads: ReadonlyArray<Uint8Array | null>): InspectResult {
    const n = payloads.length;
    const total = this.writeBatch(payloads, 0);
    let written = this.ex.inspect(n);
    while (written === E_OUT_FULL) {
      // Only reachable once actions may lengthen records; v0 output <= input.
      this.reserve(n, total, Math.max(this.outCap * 2, total * 2));
      this.writeBatch(payloads, total);
      written = this.ex.inspect(n);
    }
    if (written < 0) throw new Error(`WASM inspect failed with code ${written}`);
    const out: Uint8Array[] = new Array(n);
    const hits: number[] = new Array(n);
    const changed: boolean[] = new Array(n);
    const u32 = this.u32;
    const st = this.status >>> 2;
    const ot = this.outTab >>> 2;
    for (let k = 0; k < n; k++) {
      hits[k] = u32[st + 2 * k]!;
      if ((u32[st + 2 * k + 1]! & FLAG_CHANGED) !== 0) {
        const off = this.outData + u32[ot + 2 * k]!;
        // Copy out: the region is overwritten by the next call.
        out[k] = this.u8.slice(off, off + u32[ot + 2 * k + 1]!);
        changed[k] = true;
      } else {
        out[k] = payloads[k] ?? EMPTY;
        changed[k] = false;
      }
    }
    return { payloads: out, hits, changed };
  }

  /** SHA-256 of each record, computed in WASM (null = empty record). */
  sha256(payloads: ReadonlyArray<Uint8Array | null>): Uint8Array[] {
    const n = payloads.length;
    this.writeBatch(payloads, 0);
    const rc = this.ex.sha256Batch(n);
    if (rc < 0) throw new Error(`WASM sha256Batch failed with code ${rc}`);
    // One copy for the batch; per-record views into it.
    const all = this.u8.slice(this.digests, this.digests + 32 * n);
    const out: Uint8Array[] = new Array(n);
    for (let k = 0; k < n; k++) out[k] = all.subarray(32 * k, 32 * k + 32);
    return out;
  }

  /** Writes the batch into the input region + table; returns total bytes. */
  private writeBatch(payloads: ReadonlyArray<Uint8Array | null>, knownTotal: number): number {
    const n = payloads.length;
    let total = knownTotal;
    if (total === 0) for (let k = 0; k < n; k++) total += payloads[k]?.length ?? 0;
    // v0 masking is length-preserving, so out <= in.
    if (n > this.recCap || total > this.inCap || total > this.outCap) this.reserve(n, total, total);
    else if (this.buf !== this.ex.memory.buffer) this.refresh();
    const u8 = this.u8;
    const u32 = this.u32;
    const tab = this.inTab >>> 2;
    let off = 0;
    for (let k = 0; k < n; k++) {
      const p = payloads[k];
      const len = p?.length ?? 0;
      u32[tab + 2 * k] = off;
      u32[tab + 2 * k + 1] = len;
      if (len > 0) u8.set(p!, this.inData + off);
      off += len;
    }
    return total;
  }

  private reserve(records: number, inBytes: number, outBytes: number): void {
    if (inBytes > 0xffff0000 || outBytes > 0xffff0000) throw new RangeError('batch too large for the WASM engine');
    if (this.ex.ensure(records, inBytes, outBytes) === 0) {
      throw new RangeError(`WASM engine cannot grow memory for ${records} records / ${inBytes} bytes`);
    }
    this.refresh();
  }

  private refresh(): void {
    const buf = this.ex.memory.buffer;
    this.buf = buf;
    this.u8 = new Uint8Array(buf);
    this.u32 = new Uint32Array(buf);
    const h = this.ex.header() >>> 2;
    const u32 = this.u32;
    this.recCap = u32[h + 1]!;
    this.inTab = u32[h + 2]!;
    this.inData = u32[h + 3]!;
    this.inCap = u32[h + 4]!;
    this.outTab = u32[h + 5]!;
    this.outData = u32[h + 6]!;
    this.outCap = u32[h + 7]!;
    this.status = u32[h + 8]!;
    this.digests = u32[h + 9]!;
  }
}
