// pinrich's V8 heap settings, in one place: the `pinrich` bin (bin/pinrich.js) starts node with
// them, the benchmarks start their worker processes with them (bench/lib.ts), and the deploy
// files (deploy/Dockerfile, deploy/k8s/workers.yaml) ship the same figure in NODE_OPTIONS
// (test/unit/deploy.test.ts keeps the four in step).
//
// Why: V8 sizes the old generation from the machine's memory (~4 GB on a 16-32 GB host) and, with
// that much room, lets garbage pile up between major collections; a pinrich worker's live heap is
// a few tens of MB (every buffer is bounded: README "Memory"), so the RSS of a busy worker was
// mostly garbage (434-540 MB in bench/results). A cap makes V8 collect before it grows; the young
// generation keeps V8's default size (16 MB semi-spaces), so the scavenger's throughput is kept.

/** Old-generation cap, MB: the live heap of every worker, with room for a full buffer set. */
export const DEFAULT_HEAP_MB = 192;

/**
 * The node flags to start pinrich with, or [] when the heap is already configured: a
 * --max-old-space-size in `execArgv` or NODE_OPTIONS wins, and PINRICH_HEAP_MB sets the cap
 * (0 = V8's own default sizing).
 */
export function heapFlags(env = process.env, execArgv = process.execArgv) {
  const given = [...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)];
  if (given.some((f) => /^--max[-_]old[-_]space[-_]size(=|$)/.test(f))) return [];
  const raw = env.PINRICH_HEAP_MB?.trim();
  if (raw === undefined || raw === '') return [`--max-old-space-size=${DEFAULT_HEAP_MB}`];
  const mb = Number(raw);
  if (!Number.isInteger(mb) || (mb !== 0 && mb < 64)) {
    throw new Error(`PINRICH_HEAP_MB must be a whole number of MB, at least 64 (or 0 for V8's default), got "${raw}"`);
  }
  return mb === 0 ? [] : [`--max-old-space-size=${mb}`];
}
