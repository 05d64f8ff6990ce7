// Per-record working memory: a bump allocator on top of everything else in linear
// memory, reset for every record, grown (never shrunk) with memory.grow. Nothing is
// allocated on the JavaScript side, and the engine has no managed heap ("stub" runtime).

let base: usize = 0;
export let top: usize = 0;

export function scratchReset(at: usize): void {
  base = (at + 15) & ~(<usize>15);
  top = base;
}

// @ts-ignore: decorator
@inline export function scratchMark(): usize {
  return top;
}

// @ts-ignore: decorator
@inline export function scratchRelease(mark: usize): void {
  top = mark;
}

function room(end: usize): void {
  let have = <usize>memory.size() << 16;
  if (end <= have) return;
  let pages = <i32>((end - have + 0xffff) >> 16);
  // grow by at least half again, so a large record does not grow page by page
  let extra = max(pages, memory.size() >> 1);
  if (memory.grow(extra) < 0 && memory.grow(pages) < 0) unreachable(); // the host reloads the engine and fails closed
}

/** n bytes, 16-aligned, plus 64 readable spare bytes for SIMD loads past the end. */
export function salloc(n: usize): usize {
  let p = (top + 15) & ~(<usize>15);
  room(p + n + 64);
  top = p + n;
  return p;
}

/** Grows the most recent allocation `p` (which must still be on top) to n bytes. */
export function sgrow(p: usize, n: usize): void {
  room(p + n + 64);
  top = p + n;
}
