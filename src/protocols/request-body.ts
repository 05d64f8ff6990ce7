import type { IncomingHttpHeaders } from 'node:http';

/**
 * Request bodies of the HTTP-based listeners (REST produce, Kinesis): how much of one may
 * sit in the gateway before its credential is checked, how much JSON work one may cause,
 * and error texts that describe a body without quoting it.
 */

/**
 * The most body bytes of one request (or HTTP/2 stream) the gateway lets in before the
 * credential in the headers is verified: the listeners authenticate first and read the body
 * only then. HTTP/1.1 holds at most this in socket and parser buffers (reading pauses);
 * HTTP/2 advertises it as each stream's initial flow-control window, so a client cannot send
 * more on a stream the gateway has not started to read. A refused request whose unread body
 * is larger than this (or of unknown length) closes its connection instead of being drained.
 */
export const BODY_BYTES_BEFORE_AUTH = 64 * 1024;

/**
 * Bodies up to this size are handed to JSON.parse as they are: the costliest shape measured
 * (an object of distinct keys) parses in a few milliseconds. Larger ones are first counted
 * (`jsonValuesOver`), because one 8 MiB body of empty objects or distinct keys kept the
 * event loop (and every listener on it) busy for 0.5-1 s.
 */
export const JSON_BYTES_PARSED_UNCOUNTED = 64 * 1024;

/** Whether an answer that leaves the body unread must close the connection rather than let Node drain the rest. */
export function unreadBodyNeedsClose(headers: IncomingHttpHeaders): boolean {
  if (headers['transfer-encoding'] !== undefined) return true; // chunked: no bound on what follows
  if (expectsContinue(headers)) return true; // the client waits for 100 Continue, which a refusal never sends
  const declared = Number(headers['content-length'] ?? 0);
  return !(declared <= BODY_BYTES_BEFORE_AUTH);
}

/** `Expect: 100-continue`: the client sends its body only after the gateway says so (after authentication). */
export function expectsContinue(headers: IncomingHttpHeaders): boolean {
  return /^\s*100-continue\s*$/i.test(String(headers.expect ?? ''));
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

/**
 * Whether the JSON text in `bytes` holds more than `max` values (arrays, objects, members,
 * elements), counted without parsing: one value plus every comma and opening bracket outside
 * strings, an upper bound that V8's parse time grows with. Strings are skipped with a native
 * search for their closing quote, so an 8 MiB body of a few long strings costs well under a
 * millisecond and one of many short ones a few. Malformed text is not judged here (JSON.parse
 * does that); the count stops as soon as it passes `max`.
 */
export function jsonValuesOver(bytes: Uint8Array, max: number): boolean {
  const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let values = 1;
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === QUOTE) {
      let end = i;
      for (;;) {
        end = b.indexOf(QUOTE, end + 1);
        if (end === -1) return false;
        let before = end - 1;
        while (b[before] === BACKSLASH) before--;
        if ((end - 1 - before) % 2 === 0) break; // an even run of backslashes escapes nothing
      }
      i = end;
    } else if (c === COMMA || c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (++values > max) return true;
    }
  }
  return false;
}

/**
 * Where `bytes` stops being one JSON text (RFC 8259): the offset of the first byte that
 * cannot continue it, or the length when it ends early; undefined when it is valid. Called
 * after JSON.parse failed, to say where without V8's message, which quotes the input.
 */
export function jsonSyntaxErrorAt(bytes: Uint8Array): number | undefined {
  const n = bytes.length;
  // one bit per open container (1 = object), so nesting as deep as the body costs n/8 bytes
  const objects = new Uint8Array((n >> 3) + 1);
  let depth = 0;
  let i = 0;
  const inObject = () => (objects[(depth - 1) >> 3]! & (1 << ((depth - 1) & 7))) !== 0;
  const open = (isObject: boolean) => {
    const slot = depth >> 3;
    const bit = 1 << (depth & 7);
    objects[slot] = isObject ? objects[slot]! | bit : objects[slot]! & ~bit;
    depth++;
    i++;
  };
  const skipSpace = () => {
    while (i < n && (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09)) i++;
  };
  const isDigit = (c: number | undefined) => c !== undefined && c >= 0x30 && c <= 0x39;
  const isHex = (c: number | undefined) => c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66));
  // each scanner leaves `i` after its token, or at the offending byte and returns false
  const string = (): boolean => {
    i++;
    while (i < n) {
      const c = bytes[i]!;
      if (c === QUOTE) {
        i++;
        return true;
      }
      if (c < 0x20) return false;
      if (c === BACKSLASH) {
        const e = bytes[i + 1];
        if (e === 0x75) {
          for (let k = 2; k < 6; k++) {
            if (!isHex(bytes[i + k])) {
              i = Math.min(n, i + k);
              return false;
            }
          }
          i += 6;
          continue;
        }
        // " \ / b f n r t
        if (e !== QUOTE && e !== BACKSLASH && e !== 0x2f && e !== 0x62 && e !== 0x66 && e !== 0x6e && e !== 0x72 && e !== 0x74) {
          i = Math.min(n, i + 1);
          return false;
        }
        i += 2;
        continue;
      }
      i++;
    }
    return false;
  };
  const digits = (): boolean => {
    if (!isDigit(bytes[i])) return false;
    while (isDigit(bytes[i])) i++;
    return true;
  };
  const number = (): boolean => {
    if (bytes[i] === 0x2d) i++;
    if (bytes[i] === 0x30) i++;
    else if (!digits()) return false;
    if (bytes[i] === 0x2e) {
      i++;
      if (!digits()) return false;
    }
    if (bytes[i] === 0x65 || bytes[i] === 0x45) {
      i++;
      if (bytes[i] === 0x2b || bytes[i] === 0x2d) i++;
      if (!digits()) return false;
    }
    return true;
  };
  const literal = (word: string): boolean => {
    for (let k = 0; k < word.length; k++, i++) if (bytes[i] !== word.charCodeAt(k)) return false;
    return true;
  };
  const scalar = (c: number): boolean => {
    if (c === QUOTE) return string();
    if (c === 0x2d || isDigit(c)) return number();
    if (c === 0x74) return literal('true');
    if (c === 0x66) return literal('false');
    if (c === 0x6e) return literal('null');
    return false;
  };

  // what may come next: a value, a value or `]` (just after `[`), a key, a key or `}`
  // (just after `{`), the colon after a key, or what follows a complete value
  let expect: 'value' | 'value-or-close' | 'key' | 'key-or-close' | 'colon' | 'after-value' = 'value';
  for (;;) {
    skipSpace();
    if (i >= n) return expect === 'after-value' && depth === 0 ? undefined : n;
    const c = bytes[i]!;
    if (expect === 'colon') {
      if (c !== COLON) return i;
      i++;
      expect = 'value';
    } else if (expect === 'key' || expect === 'key-or-close') {
      if (expect === 'key-or-close' && c === CLOSE_OBJECT) {
        depth--;
        i++;
        expect = 'after-value';
      } else {
        if (c !== QUOTE || !string()) return i;
        expect = 'colon';
      }
    } else if (expect === 'after-value') {
      if (depth === 0) return i; // trailing bytes after the document
      if (c === COMMA) {
        i++;
        expect = inObject() ? 'key' : 'value';
      } else if (c === (inObject() ? CLOSE_OBJECT : CLOSE_ARRAY)) {
        depth--;
        i++;
      } else {
        return i;
      }
    } else if (expect === 'value-or-close' && c === CLOSE_ARRAY) {
      depth--;
      i++;
      expect = 'after-value';
    } else if (c === OPEN_OBJECT) {
      open(true);
      expect = 'key-or-close';
    } else if (c === OPEN_ARRAY) {
      open(false);
      expect = 'value-or-close';
    } else {
      if (!scalar(c)) return Math.min(i, n);
      expect = 'after-value';
    }
  }
}

/** "the body is not valid JSON (at byte 17)": the kind and the place, never the bytes. */
export function describeJsonError(what: string, bytes: Uint8Array): string {
  const at = jsonSyntaxErrorAt(bytes);
  return at === undefined ? `${what} is not valid JSON` : `${what} is not valid JSON (at byte ${at})`;
}
