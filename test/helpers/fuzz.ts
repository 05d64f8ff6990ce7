/**
 * Number of cases for a property: the bounded budget `npm test` runs, times FUZZ_SCALE
 * (`npm run fuzz` sets it) for longer campaigns.
 */
export function fuzzRuns(base: number): number {
  const scale = Number(process.env.FUZZ_SCALE ?? 1);
  return Math.max(1, Math.round(base * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}
