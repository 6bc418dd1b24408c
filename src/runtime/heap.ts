/**
 * The V8 heap settings a worker process sets itself, once it knows which workers it runs (the
 * launch settings, the old-generation cap, are in bin/heap.js: node takes those on its command
 * line or in NODE_OPTIONS).
 *
 * The heap growing factor cannot go there: node refuses `--heap-growing-percent` in NODE_OPTIONS,
 * so neither the image nor the k8s manifests could carry it. V8 takes it at run time instead
 * (`v8.setFlagsFromString`), and it applies from the next collection on.
 */
import v8 from 'node:v8';

/**
 * How much the old generation may grow between two mark-compacts, per worker, when the worker
 * runs alone in its process (V8's own factor is ~10-100 % depending on the collection's speed).
 * The enrich worker's garbage is short-lived (tens of KB per document, a live heap of a few tens
 * of MB): 200 takes 15-20 % off its CPU per event for ~15-20 MB of peak RSS under the shipped
 * 192 MB cap (bench/results/enrich-levers.md). Not the dump worker: its peak RSS rose 25-45 MB.
 */
export const HEAP_GROWING_PERCENT: Readonly<Partial<Record<string, number>>> = Object.freeze({ enrich: 200 });

/**
 * The flags for a process running exactly `workers`: none when it runs several (V8's own factor
 * then), when `--heap-growing-percent` is already on the command line, or when
 * PINRICH_HEAP_GROWING_PERCENT says otherwise (1-1000; 0 = V8's own, for every worker).
 */
export function workerHeapFlags(workers: readonly string[], env: NodeJS.ProcessEnv = process.env, execArgv: readonly string[] = process.execArgv): string[] {
  if (execArgv.some((f) => /^--heap[-_]growing[-_]percent(=|$)/.test(f))) return [];
  let percent = workers.length === 1 ? HEAP_GROWING_PERCENT[workers[0]!] : undefined;
  const raw = env.PINRICH_HEAP_GROWING_PERCENT?.trim();
  if (raw !== undefined && raw !== '') {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0 || n > 1000) throw new Error(`PINRICH_HEAP_GROWING_PERCENT must be a whole number from 0 to 1000 (0 = V8's own), got "${raw}"`);
    percent = n === 0 ? undefined : n;
  }
  return percent === undefined ? [] : [`--heap-growing-percent=${percent}`];
}

/** Set the flags `workerHeapFlags` gives (at a process's start, before the workers allocate). */
export function tuneHeapFor(workers: readonly string[]): string[] {
  const flags = workerHeapFlags(workers);
  for (const flag of flags) v8.setFlagsFromString(flag);
  return flags;
}
