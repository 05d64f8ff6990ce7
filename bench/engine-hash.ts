// Folded into bench/engine.ts: same flags (--mib, --batch, --seconds, --json-out), the
// same row keys (cards.wasm, cards.regexp, sha256.*) plus the all-detector rows.
// Kept so `npm run bench -- engine` (bench/suites/engine.ts) keeps working unchanged.
await import('./engine.ts');
