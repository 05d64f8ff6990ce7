import { createPrivateKey, createPublicKey, hash, sign, verify, type KeyObject } from 'node:crypto';
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readFileSync, readSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * The hash chain that makes the spool tamper-evident.
 *
 * Row: the spool serializes a row without its closing brace (`body`), appends
 * `,"seq":N,"prev_hash":"<hex>"`, hashes that text with SHA-256 and appends
 * `,"hash":"<hex>"}`. So every row's hash covers its content, its position (seq) and the
 * previous row's hash; editing, inserting, reordering or deleting a row breaks the chain
 * at that row. The line stays plain JSONEachRow (ClickHouse reads seq/prev_hash/hash as
 * ordinary columns).
 *
 * Segment head: each segment has a sidecar `audit-N.head.json` naming the previous
 * segment, its last row's hash and the next seq, optionally signed with Ed25519. The
 * chain therefore continues across rotations and restarts, and deleting a whole segment
 * (with its head) is caught by the next head. A crash can leave a torn last line; the
 * next start moves those bytes to `audit-N.torn` and records offset + SHA-256 in the new
 * head, so verification reports the tear and goes on.
 *
 * Retention: deleting old segments writes a signed `retention.json` with the last
 * removed row's hash, so the first remaining head can still be checked.
 */

export const GENESIS = '0'.repeat(64);
/** `,"hash":"` + 64 hex + `"}` */
export const HASH_SUFFIX_LENGTH = 75;
const SUFFIX = /,"seq":(\d+),"prev_hash":"([0-9a-f]{64})","hash":"([0-9a-f]{64})"\}$/;

export function chainLine(body: string, seq: number, prevHash: string): { line: string; hash: string } {
  const hashed = `${body},"seq":${seq},"prev_hash":"${prevHash}"`;
  const h = hash('sha256', hashed, 'hex');
  return { line: `${hashed},"hash":"${h}"}`, hash: h };
}

export interface ChainFields {
  seq: number;
  prevHash: string;
  hash: string;
}

/** The chain fields of a line, or undefined when it has none; does not recompute the hash. */
export function chainFields(line: string): ChainFields | undefined {
  const m = SUFFIX.exec(line);
  return m ? { seq: Number(m[1]), prevHash: m[2]!, hash: m[3]! } : undefined;
}

/** True when the line's stated hash is the SHA-256 of everything before it. */
export function lineHashValid(line: string, stated: string): boolean {
  return hash('sha256', line.slice(0, line.length - HASH_SUFFIX_LENGTH), 'hex') === stated;
}

// ---------------------------------------------------------------------------
// signing

export interface Signer {
  keyId: string;
  /** base64 SPKI DER, embedded in heads so a verifier without a pinned key can still check consistency */
  publicKey: string;
  sign(data: string): string;
}

function keyId(publicKey: KeyObject): string {
  return hash('sha256', publicKey.export({ type: 'spki', format: 'der' }), 'hex').slice(0, 16);
}

/** `spec` is PEM text (e.g. from `${AUDIT_SIGNING_KEY}`) or the path of a PEM file. */
export function loadSigner(spec: string | undefined): Signer | undefined {
  if (!spec) return undefined;
  const pem = spec.includes('-----BEGIN') ? spec : readFileSync(spec, 'utf8');
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`the audit signing key must be Ed25519, not ${key.asymmetricKeyType}`);
  const pub = createPublicKey(key);
  return {
    keyId: keyId(pub),
    publicKey: pub.export({ type: 'spki', format: 'der' }).toString('base64'),
    sign: (data) => sign(null, Buffer.from(data), key).toString('base64'),
  };
}

export function loadPublicKey(spec: string): KeyObject {
  const pem = spec.includes('-----BEGIN') ? spec : readFileSync(spec, 'utf8');
  const key = pem.includes('PRIVATE KEY') ? createPublicKey(createPrivateKey(pem)) : createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`expected an Ed25519 public key, not ${key.asymmetricKeyType}`);
  return key;
}

interface Signed {
  key_id: string;
  public_key: string;
  sig: string;
}

function signed<T extends object>(doc: T, signer: Signer | undefined): T & Signed {
  const withKey = { ...doc, key_id: signer?.keyId ?? '', public_key: signer?.publicKey ?? '' };
  return { ...withKey, sig: signer ? signer.sign(JSON.stringify(withKey)) : '' };
}

/** 'unsigned' | 'valid' | 'invalid'; with `pinned`, a valid signature must also be by that key. */
function checkSignature(doc: Signed, pinned: KeyObject | undefined): 'unsigned' | 'valid' | 'invalid' | 'other-key' {
  if (!doc.sig) return 'unsigned';
  const { sig, ...rest } = doc;
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(doc.public_key, 'base64'), format: 'der', type: 'spki' });
  } catch {
    return 'invalid';
  }
  if (!verify(null, Buffer.from(JSON.stringify(rest)), key, Buffer.from(sig, 'base64'))) return 'invalid';
  if (pinned && keyId(pinned) !== doc.key_id) return 'other-key';
  return 'valid';
}

// ---------------------------------------------------------------------------
// heads, torn tails, retention marker

export interface TornTail {
  segment: string;
  /** the segment's length after the torn bytes were moved out */
  offset: number;
  bytes: number;
  sha256: string;
}

export interface SegmentHead extends Signed {
  v: 1;
  segment: string;
  created: string;
  instance: string;
  first_seq: number;
  prev_segment: string | null;
  prev_hash: string;
  torn: TornTail | null;
}

export interface RetentionMarker extends Signed {
  v: 1;
  removed_through: string;
  last_seq: number;
  last_hash: string;
  updated: string;
}

export function headPath(segment: string): string {
  return segment.replace(/\.jsonl$/, '.head.json');
}

export function tornPath(segment: string): string {
  return segment.replace(/\.jsonl$/, '.torn');
}

export function retentionPath(dir: string): string {
  return join(dir, 'retention.json');
}

/** Writes a small file so that it is either absent or complete: temp file, fsync, rename, fsync dir. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, data);
  const fd = openSync(tmp, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dfd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

export function writeHead(segment: string, fields: Omit<SegmentHead, 'v' | 'segment' | keyof Signed>, signer: Signer | undefined): SegmentHead {
  const head = signed({ v: 1 as const, segment: basename(segment), ...fields }, signer);
  writeFileAtomic(headPath(segment), JSON.stringify(head) + '\n');
  return head;
}

export function readHead(segment: string): SegmentHead | undefined {
  try {
    return JSON.parse(readFileSync(headPath(segment), 'utf8')) as SegmentHead;
  } catch {
    return undefined;
  }
}

export function writeRetentionMarker(dir: string, fields: Omit<RetentionMarker, 'v' | 'updated' | keyof Signed>, signer: Signer | undefined): void {
  const marker = signed({ v: 1 as const, ...fields, updated: new Date().toISOString() }, signer);
  writeFileAtomic(retentionPath(dir), JSON.stringify(marker) + '\n');
}

export function readRetentionMarker(dir: string): RetentionMarker | undefined {
  try {
    return JSON.parse(readFileSync(retentionPath(dir), 'utf8')) as RetentionMarker;
  } catch {
    return undefined;
  }
}

/**
 * Moves bytes after the last newline of a closed segment (a write torn by a crash) into
 * `audit-N.torn` and truncates the segment, so every segment stays valid JSONEachRow.
 */
export function repairTornTail(segment: string): TornTail | null {
  const fd = openSync(segment, 'r+');
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return null;
    let end = size;
    let chunk = 64 * 1024;
    let cut = -1;
    while (end > 0) {
      const start = Math.max(0, end - chunk);
      const buf = Buffer.alloc(end - start);
      readSync(fd, buf, 0, buf.length, start);
      const nl = buf.lastIndexOf(10);
      if (nl !== -1) {
        cut = start + nl + 1;
        break;
      }
      end = start;
      chunk *= 2;
    }
    if (cut === -1) cut = 0;
    if (cut === size) return null;
    const torn = Buffer.alloc(size - cut);
    readSync(fd, torn, 0, torn.length, cut);
    writeFileAtomic(tornPath(segment), torn);
    // the .torn file is durable before the segment loses those bytes
    fsyncSync(fd);
    ftruncateSync(fd, cut);
    fsyncSync(fd);
    return { segment: basename(segment), offset: cut, bytes: torn.length, sha256: hash('sha256', torn, 'hex') };
  } finally {
    closeSync(fd);
  }
}

/** The last complete line of a file (which ends with a newline), or undefined when it has none. */
export function readLastLine(path: string): string | undefined {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return undefined;
    let chunk = 64 * 1024;
    for (;;) {
      const start = Math.max(0, size - chunk);
      const buf = Buffer.alloc(size - start);
      readSync(fd, buf, 0, buf.length, start);
      const body = buf.subarray(0, buf.length - (buf[buf.length - 1] === 10 ? 1 : 0));
      const nl = body.lastIndexOf(10);
      if (nl !== -1 || start === 0) return body.subarray(nl + 1).toString('utf8');
      chunk *= 4;
    }
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------
// verification

export interface ChainBreak {
  file: string;
  /** 1-based line in the segment; 0 for a problem with the segment's head */
  line: number;
  eventId: string;
  reason: string;
}

export interface VerifyReport {
  ok: boolean;
  segments: number;
  rows: number;
  /** first break in write order; undefined when the chain is intact */
  firstBreak: ChainBreak | undefined;
  breaks: ChainBreak[];
  /** not breaks: torn tails from crashes, unsigned heads, retention */
  notes: string[];
  keyIds: string[];
  lastSeq: number;
  lastHash: string;
}

export interface VerifyOptions {
  /** pin the signing key: heads signed by another key, or unsigned, are breaks */
  publicKey?: KeyObject;
  /** stop collecting after this many breaks (the first one is what matters) */
  maxBreaks?: number;
}

const EVENT_ID = /^\{"event_id":"([^"]*)"/;

/** Checks the whole chain of a spool directory: rows, heads, signatures, torn tails, retention. */
export function verifyChain(segments: string[], dir: string, options: VerifyOptions = {}): VerifyReport {
  const maxBreaks = options.maxBreaks ?? 100;
  const report: VerifyReport = { ok: true, segments: segments.length, rows: 0, firstBreak: undefined, breaks: [], notes: [], keyIds: [], lastSeq: 0, lastHash: GENESIS };
  const keyIds = new Set<string>();
  const fail = (b: ChainBreak) => {
    report.ok = false;
    report.firstBreak ??= b;
    if (report.breaks.length < maxBreaks) report.breaks.push(b);
  };
  const checkSigned = (doc: Signed, file: string, what: string) => {
    const s = checkSignature(doc, options.publicKey);
    if (doc.key_id) keyIds.add(doc.key_id);
    if (s === 'invalid') fail({ file, line: 0, eventId: '', reason: `${what}: the signature does not match its content` });
    else if (s === 'other-key') fail({ file, line: 0, eventId: '', reason: `${what}: signed by key ${doc.key_id}, not by the pinned key` });
    else if (s === 'unsigned' && options.publicKey) fail({ file, line: 0, eventId: '', reason: `${what}: not signed, but a signing key is pinned` });
    return s;
  };

  let seq = 0;
  let prev = GENESIS;
  let prevSegment: string | null = null;
  let prevSize = 0;
  let unsigned = 0;
  const marker = readRetentionMarker(dir);
  if (marker) {
    checkSigned(marker, 'retention.json', 'retention marker');
    seq = marker.last_seq;
    prev = marker.last_hash;
    prevSegment = marker.removed_through;
    report.notes.push(`segments up to ${marker.removed_through} were removed by retention (last seq ${marker.last_seq})`);
  }

  for (const path of segments) {
    const file = basename(path);
    const head = readHead(path);
    if (!head) {
      fail({ file, line: 0, eventId: '', reason: 'the segment has no head file (deleted, or written before the hash chain)' });
    } else {
      if (checkSigned(head, basename(headPath(path)), 'head') === 'unsigned') unsigned++;
      if (head.segment !== file) fail({ file, line: 0, eventId: '', reason: `the head names segment ${head.segment}` });
      if (head.prev_segment !== prevSegment) {
        fail({ file, line: 0, eventId: '', reason: head.prev_segment === null ? `the head starts a new chain, but ${prevSegment} comes before it` : `the head follows ${head.prev_segment}, but the previous segment present is ${prevSegment ?? 'none'} (segment deleted?)` });
      } else if (head.prev_hash !== prev) {
        fail({ file, line: 0, eventId: '', reason: `the head's prev_hash ${head.prev_hash.slice(0, 12)}… is not the last hash of ${prevSegment ?? 'the chain start'} (${prev.slice(0, 12)}…): rows removed or changed at its end` });
      } else if (head.first_seq !== seq + 1) {
        fail({ file, line: 0, eventId: '', reason: `the head expects seq ${head.first_seq}, the chain is at ${seq + 1}` });
      }
      if (head.torn) {
        const t = head.torn;
        report.notes.push(`${t.segment}: ${t.bytes} torn bytes at offset ${t.offset} after a crash (moved to ${basename(tornPath(t.segment))})`);
        if (t.segment !== prevSegment) fail({ file, line: 0, eventId: '', reason: `the head records a torn tail of ${t.segment}, which is not the previous segment` });
        else if (t.offset !== prevSize) fail({ file: t.segment, line: 0, eventId: '', reason: `the segment is ${prevSize} bytes, but it was ${t.offset} when its torn tail was moved out` });
        const tp = join(dir, basename(tornPath(t.segment)));
        if (existsSync(tp) && hash('sha256', readFileSync(tp), 'hex') !== t.sha256) fail({ file: basename(tp), line: 0, eventId: '', reason: 'the torn bytes differ from the ones recorded in the next head' });
      }
      // resynchronize on the head so one break does not hide the rest
      prev = head.prev_hash;
      seq = head.first_seq - 1;
    }

    const text = readFileSync(path, 'utf8');
    prevSize = Buffer.byteLength(text);
    const lines = text.split('\n');
    // the element after the last newline is '' or a torn line
    const complete = lines.length - 1;
    if (lines.at(-1) !== '') {
      const torn = { file, line: lines.length, eventId: EVENT_ID.exec(lines.at(-1)!)?.[1] ?? '', reason: 'the last line is incomplete (a write torn by a crash, or truncated)' };
      // in the newest segment this is what a crash leaves until the next start moves it aside
      if (path === segments.at(-1)) report.notes.push(`${file}:${torn.line}: torn last line (crash); the next start moves it aside`);
      else fail(torn);
    }
    for (let i = 0; i < complete; i++) {
      const line = lines[i]!;
      const eventId = EVENT_ID.exec(line)?.[1] ?? '';
      const f = chainFields(line);
      report.rows++;
      if (!f) {
        fail({ file, line: i + 1, eventId, reason: 'the row has no seq/prev_hash/hash' });
        continue;
      }
      let valid = false;
      try {
        JSON.parse(line);
        valid = lineHashValid(line, f.hash);
      } catch {
        valid = false;
      }
      if (!valid) fail({ file, line: i + 1, eventId, reason: 'the row was changed: its content does not match its hash' });
      else if (f.prevHash !== prev) fail({ file, line: i + 1, eventId, reason: 'the row does not follow the previous row (a row before it was removed, inserted or reordered)' });
      else if (f.seq !== seq + 1) fail({ file, line: i + 1, eventId, reason: `seq ${f.seq} where ${seq + 1} was expected` });
      prev = f.hash;
      seq = f.seq;
    }
    prevSegment = file;
  }
  if (unsigned > 0) report.notes.push(`${unsigned} segment head(s) are not signed (set audit.spool.signingKey)`);
  report.keyIds = [...keyIds];
  report.lastSeq = seq;
  report.lastHash = prev;
  return report;
}
