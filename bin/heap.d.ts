// Types of bin/heap.js (plain JavaScript: the bin runs before tsx is loaded).
export declare const DEFAULT_HEAP_MB: number;
export declare const WORKER_HEAP_MB: Readonly<Record<string, number>>;
export declare function heapMbFor(args: readonly string[]): number;
export declare function heapFlags(env?: Record<string, string | undefined>, execArgv?: readonly string[], args?: readonly string[]): string[];
