/**
 * The Redis Lua scripts of pinrich, one file each under ./lua/ (every file opens with the KEYS,
 * ARGV and return value it works with), registered on a connection as ioredis custom commands:
 * sent by SHA (EVALSHA) rather than as text on every call, loaded on first use and again after a
 * Redis restart (NOSCRIPT), also inside pipelines.
 *
 * The files are read at start from next to this module: `src/adapters/redis/lua/` under tsx,
 * `dist/src/adapters/redis/lua/` in the compiled build (deploy/Dockerfile copies them there, as
 * tsc emits only JavaScript).
 */
import { readFileSync } from 'node:fs';
import type { Redis } from './client.js';

/** The script files (without `.lua`) and the command name each is registered under. */
const SCRIPT_FILES = {
  pinrichClaimPartition: 'claim-partition',
  pinrichApplyBatch: 'apply-batch',
  pinrichReadPins: 'read-pins',
  pinrichCommitFlushes: 'commit-flushes',
  pinrichSetDocument: 'set-document',
  pinrichRestorePublished: 'restore-published',
} as const;

export type ScriptName = keyof typeof SCRIPT_FILES;
type ScriptCall = (numKeys: number, ...args: Array<string | number | Buffer>) => Promise<unknown>;
/** A connection or pipeline with the scripts as methods. */
export type Scripted<T> = T & Record<ScriptName, ScriptCall>;

let sources: Record<ScriptName, string> | undefined;

/** The text of every script (read once per process). Throws naming the file when one is missing. */
export function scriptSources(): Readonly<Record<ScriptName, string>> {
  if (!sources) {
    const read = {} as Record<ScriptName, string>;
    for (const [name, file] of Object.entries(SCRIPT_FILES) as Array<[ScriptName, string]>) {
      const url = new URL(`./lua/${file}.lua`, import.meta.url);
      try {
        read[name] = readFileSync(url, 'utf8');
      } catch (err) {
        throw new Error(`Redis script ${file}.lua not found at ${url.pathname} (a build must copy src/adapters/redis/lua/*.lua next to the compiled module)`, { cause: err });
      }
    }
    sources = read;
  }
  return sources;
}

/** Register the scripts on `redis` (once per connection) and return it typed with them. */
export function withScripts(redis: Redis): Scripted<Redis> {
  const r = redis as Scripted<Redis>;
  for (const [name, lua] of Object.entries(scriptSources()) as Array<[ScriptName, string]>) {
    if (typeof r[name] !== 'function') redis.defineCommand(name, { lua });
  }
  return r;
}
