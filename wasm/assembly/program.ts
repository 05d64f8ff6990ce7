// The compiled rules ("program"), written by src/inspect/compile/program.ts and copied
// once into linear memory. These globals point into it; loadProgram() sets them.
//
// Header words (u32):
//   0 magic  1 total bytes  2 patterns  3 byte classes  4 class map (u16 class*4 per byte)
//   5 DFA row stride  6 forward table  7 forward start rows (257)  8 patterns (16 B each)
//   9 per-byte trigger alphabet bits  10 per-byte anchor-trigger bits  11 shufti tables
//   12 planes  13 plane masks (2 x v128 each)  14 triggers  15 trigger table (48 B each)
//   16 rules  17 rule table (64 B each)  18 rulesets  19 ruleset table (48 B each)
//   20 path states  21 path bitset words  22 path state table (32 B each)
//   23 keys  24 key table (16 B each)  25 per-byte anchor-count bits
// DFA rows: next-row byte offset per class (even count), u64 accept, u64 end-of-text accept.

export const PROGRAM_MAGIC: u32 = 0x31504753;

export let prog: usize = 0;
export let numPatterns: u32 = 0;
export let classMap: usize = 0;
export let rowStride: u32 = 0;
/** byte offset of the accept mask inside a row */
export let acceptAt: usize = 0;
export let fwdTable: usize = 0;
export let fwdStart: usize = 0;
export let patternTable: usize = 0;
export let alphaBits: usize = 0;
export let anchorBits: usize = 0;
export let countBits: usize = 0;
export let shufti: usize = 0;
export let numPlanes: u32 = 0;
/** the second shufti table pair is in use (more than 8 class rectangles) */
export let twoPairs: bool = false;
export let planeMasks: usize = 0;
export let numTriggers: u32 = 0;
export let triggerTable: usize = 0;
export let numRules: u32 = 0;
export let ruleTable: usize = 0;
export let numRulesets: u32 = 0;
export let rulesetTable: usize = 0;
export let numPathStates: u32 = 0;
export let pathWords: u32 = 0;
export let pathTable: usize = 0;
export let numKeys: u32 = 0;
export let keyTable: usize = 0;

// @ts-ignore: decorator
@inline function word(i: u32): u32 {
  return load<u32>(prog + (<usize>i << 2));
}

// @ts-ignore: decorator
@inline function at(i: u32): usize {
  return prog + <usize>word(i);
}

/** Points the globals at a program at `p`; false when it is not one. */
export function bindProgram(p: usize, len: u32): bool {
  prog = p;
  if (len < 128 || word(0) != PROGRAM_MAGIC || word(1) > len) { prog = 0; return false; }
  numPatterns = word(2);
  let classes = word(3);
  classMap = at(4);
  rowStride = word(5);
  acceptAt = <usize>((classes + (classes & 1)) << 2);
  fwdTable = at(6);
  fwdStart = at(7);
  patternTable = at(8);
  alphaBits = at(9);
  anchorBits = at(10);
  shufti = at(11);
  numPlanes = word(12) & 0xff;
  twoPairs = (word(12) & 0x100) != 0;
  planeMasks = at(13);
  numTriggers = word(14);
  triggerTable = at(15);
  numRules = word(16);
  ruleTable = at(17);
  numRulesets = word(18);
  rulesetTable = at(19);
  numPathStates = word(20);
  pathWords = word(21);
  pathTable = at(22);
  numKeys = word(23);
  keyTable = at(24);
  countBits = at(25);
  return true;
}

// ---- tables ----

export const PATTERN_SIZE: usize = 16;
export const TRIGGER_SIZE: usize = 48;
export const RULE_SIZE: usize = 64;
export const RULESET_SIZE: usize = 48;
export const PATH_STATE_SIZE: usize = 32;
export const KEY_SIZE: usize = 16;

// pattern fields
export const P_VALIDATOR: usize = 0;
export const P_RULE: usize = 4;
export const P_REV_TABLE: usize = 8;
export const P_REV_START: usize = 12;

// trigger fields
export const T_KIND: usize = 0; // 0 anchor, 1 run, 2 anchor next to an alphabet byte
export const T_PLANE: usize = 4;
/** run: the window length; neighbor: the alphabet plane */
export const T_DETECT: usize = 8;
export const T_MIN_LEN: usize = 12;
export const T_MIN_ANCHORS: usize = 16;
export const T_LIT_OFF: usize = 20;
export const T_LIT_LEN: usize = 24;
export const T_LIT_AT: usize = 28;
export const T_PATTERNS: usize = 32;

// rule fields
export const R_ACTION: usize = 0;
export const R_PATTERN: usize = 4;
export const R_STR_OFF: usize = 8;
export const R_STR_LEN: usize = 12;
export const R_KEEP_LAST: usize = 16;
export const R_KEEP_FIRST: usize = 20;
export const R_MASK_CHAR: usize = 24;
export const R_HASH_LEN: usize = 28;
export const R_TOKEN_FORMAT: usize = 32;
export const R_KEY: usize = 36;
export const R_KEY_VERSION: usize = 40;
export const R_HAS_FIELDS: usize = 44;

export const A_REDACT: u32 = 0;
export const A_MASK: u32 = 1;
export const A_HASH: u32 = 2;
export const A_TOKENIZE: u32 = 3;
export const A_DROP: u32 = 4;
export const A_BLOCK: u32 = 5;
/** encrypt / decrypt: the engine marks the bytes, the host replaces them (src/inspect/protect.ts) */
export const A_PROTECT: u32 = 6;
/** hit word that starts a protect mark: then the output offset, then the length (bit 31: JSON string content) */
export const PROTECT_MARK: u32 = 0xfffffffe;

// ruleset fields
export const RS_FORMAT: usize = 0; // 0 auto, 1 json, 2 text
export const RS_HAS_FIELDS: usize = 4;
export const RS_GLOBAL: usize = 8;
export const RS_ALL: usize = 16;
export const RS_TRIGGERS: usize = 24;
export const RS_PATH_INIT: usize = 28;
/** RSF_* bits */
export const RS_FLAGS: usize = 32;

/** a value that should be JSON and does not parse is refused (malformedJson: block) */
export const RSF_BLOCK_MALFORMED: u32 = 1;
/** the ruleset has rules that act on whole JSON field values: they cannot apply to bytes */
export const RSF_WHOLE_VALUE_RULES: u32 = 2;

export const FORMAT_AUTO: u32 = 0;
export const FORMAT_JSON: u32 = 1;
export const FORMAT_TEXT: u32 = 2;

// path state fields
export const PS_KIND: usize = 0; // 0 name, 1 any, 2 index
export const PS_DESC: usize = 4;
export const PS_NAME_OFF: usize = 8;
export const PS_NAME_LEN: usize = 12;
export const PS_INDEX: usize = 16;
export const PS_FINAL: usize = 20;
export const PS_RULE: usize = 24;

// key fields
export const K_VERSION: usize = 0;
export const K_BLOCK: usize = 4;
export const K_INNER: usize = 8;
export const K_OUTER: usize = 12;

// @ts-ignore: decorator
@inline export function rule(i: u32): usize {
  return ruleTable + <usize>i * RULE_SIZE;
}

// @ts-ignore: decorator
@inline export function ruleset(i: u32): usize {
  return rulesetTable + <usize>i * RULESET_SIZE;
}

// @ts-ignore: decorator
@inline export function pattern(i: u32): usize {
  return patternTable + <usize>i * PATTERN_SIZE;
}

// @ts-ignore: decorator
@inline export function trigger(i: u32): usize {
  return triggerTable + <usize>i * TRIGGER_SIZE;
}

// @ts-ignore: decorator
@inline export function pathState(i: u32): usize {
  return pathTable + <usize>i * PATH_STATE_SIZE;
}

// @ts-ignore: decorator
@inline export function str(off: u32): usize {
  return prog + <usize>off;
}
