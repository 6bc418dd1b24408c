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
 * The cap of a worker run alone (`pinrich run <worker>`), where it differs from the default. The
 * enrich worker also lets its old generation grow 3x between mark-compacts (it sets that itself:
 * src/runtime/heap.ts), which under the default cap cost 15-25 MB of peak RSS (299-309 MB on its
 * 1,000,000-event backlog); under 144 MB its peak RSS stays where the default cap alone had it
 * (271-275 MB against 273-288 MB) with 10-15 % less CPU per event (bench/results/enrich-levers.md).
 */
export const WORKER_HEAP_MB = Object.freeze({ enrich: 144 });

/** The cap for the command `args` (`run enrich` -> the enrich worker's; anything else: the default). */
export function heapMbFor(args) {
  const worker = args[0] === 'run' && args.length >= 2 ? args[1] : undefined;
  return (worker !== undefined && Object.hasOwn(WORKER_HEAP_MB, worker) ? WORKER_HEAP_MB[worker] : undefined) ?? DEFAULT_HEAP_MB;
}

/**
 * The node flags to start the pinrich command `args` with, or [] when the heap is already
 * configured: a --max-old-space-size in `execArgv` or NODE_OPTIONS wins, and PINRICH_HEAP_MB sets
 * the cap (0 = V8's own default sizing).
 */
export function heapFlags(env = process.env, execArgv = process.execArgv, args = process.argv.slice(2)) {
  const given = [...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)];
  if (given.some((f) => /^--max[-_]old[-_]space[-_]size(=|$)/.test(f))) return [];
  const raw = env.PINRICH_HEAP_MB?.trim();
  if (raw === undefined || raw === '') return [`--max-old-space-size=${heapMbFor(args)}`];
  const mb = Number(raw);
  if (!Number.isInteger(mb) || (mb !== 0 && mb < 64)) {
    throw new Error(`PINRICH_HEAP_MB must be a whole number of MB, at least 64 (or 0 for V8's default), got "${raw}"`);
  }
  return mb === 0 ? [] : [`--max-old-space-size=${mb}`];
}
