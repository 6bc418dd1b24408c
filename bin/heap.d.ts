// Types of bin/heap.js (plain JavaScript: the bin runs before tsx is loaded).
export declare const DEFAULT_HEAP_MB: number;
export declare function heapFlags(env?: Record<string, string | undefined>, execArgv?: readonly string[]): string[];
