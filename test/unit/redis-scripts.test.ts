/**
 * The Redis Lua scripts live in their own files (src/adapters/redis/lua/), each opening with the
 * KEYS, ARGV and return value it works with; every file is registered, and the key builder keeps
 * each enrich script's keys inside one cluster hash slot.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { redisKeys } from '../../src/adapters/redis/keys.js';
import { scriptSources } from '../../src/adapters/redis/lua.js';

const dir = new URL('../../src/adapters/redis/lua/', import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith('.lua'));

/** The hash tag Redis Cluster hashes: the part inside the first {...} when non-empty. */
function hashTag(key: string): string {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

describe('Redis Lua scripts', () => {
  it.each(files)('%s opens with a comment block naming KEYS, ARGV and what it returns', (file) => {
    const text = readFileSync(new URL(file, dir), 'utf8');
    const header = /^--\[\[([\s\S]*?)\]\]/.exec(text)?.[1];
    expect(header, 'leading --[[ ... ]] block').toBeDefined();
    expect(header).toMatch(/^KEYS\b/m);
    expect(header).toMatch(/^ARGV\b/m);
    expect(header).toMatch(/^Returns\b/m);
  });

  it('registers every script file, and nothing else', () => {
    const loaded = Object.values(scriptSources());
    expect(loaded).toHaveLength(files.length);
    for (const file of files) expect(loaded).toContain(readFileSync(new URL(file, dir), 'utf8'));
  });
});

describe('redisKeys', () => {
  const keys = redisKeys('pr:');
  it('puts every enrich key of a partition in one hash slot, and different partitions apart', () => {
    const k = keys.enrich;
    const p3 = [k.pin(3, 'a'), k.boards(3, 'b'), k.queries(3, 'c'), k.newQueries(3, 'd'), k.seen(3, 17), k.meta(3), k.dirty(3)].map(hashTag);
    expect(new Set(p3)).toEqual(new Set(['p3']));
    expect(hashTag(k.pin(4, 'a'))).not.toBe(hashTag(k.pin(3, 'a')));
  });
  it("tags a document by its pin: readers need only the pin id", () => {
    expect(hashTag(keys.document('pin-9'))).toBe('pin-9');
    expect(keys.document('pin-9').startsWith('pr:')).toBe(true);
  });
  it('refuses a prefix that would become the hash tag', () => {
    expect(() => redisKeys('a{b}:')).toThrow(/must not contain/);
  });
});
