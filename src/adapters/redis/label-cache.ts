/**
 * Teacher labels cached by (model, prompt version, sampling parameters, prompt hash), so a
 * replayed or duplicated pair — or the same query on an unchanged pin under another pair id —
 * never pays for a second model call. The prompt hash covers the exact pin text and query, so a
 * changed document is a different key, never a stale hit.
 *
 * Key: P label:<model>:<prompt version>:<params tag>:<prompt hash> -> JSON {@link CachedLabel}.
 * One key per prompt and no hash tag: each key lives in its own cluster slot, so reads are
 * single-key GETs (auto-pipelined by ioredis), never a cross-slot MGET.
 */
import type { Redis } from './client.js';
import type { TokenUsage } from '../../../schemas/common.js';
import { LabelSource } from '../../../schemas/label.js';

/** What a cache hit restores: the parsed answer and what the original call cost. */
export interface CachedLabel {
  label: number;
  distribution: number[] | null;
  expected_score: number;
  label_source: LabelSource;
  usage: TokenUsage;
  latency_ms: number;
  /** When the model produced it (RFC 3339). */
  labeled_at: string;
}

/** Identifies one prompt as sent to one model with one set of parameters. */
export interface LabelCacheKey {
  model: string;
  promptVersion: string;
  /** Short stable rendering of the sampling parameters, e.g. "t0-m1-k20". */
  params: string;
  promptHash: string;
}

export interface LabelCache {
  getMany(keys: readonly LabelCacheKey[]): Promise<Array<CachedLabel | null>>;
  put(key: LabelCacheKey, value: CachedLabel): Promise<void>;
}

export function createRedisLabelCache(redis: Redis, prefix: string, ttlSeconds: number): LabelCache {
  const key = (k: LabelCacheKey) => `${prefix}label:${k.model}:${k.promptVersion}:${k.params}:${k.promptHash}`;
  return {
    async getMany(keys) {
      const raw = await Promise.all(keys.map((k) => redis.get(key(k))));
      return raw.map((v) => (v === null ? null : parseEntry(v)));
    },
    async put(k, value) {
      await redis.set(key(k), JSON.stringify(value), 'EX', ttlSeconds);
    },
  };
}

/** An entry we cannot read (written by a buggy or future version) is a miss, not a failure. */
function parseEntry(raw: string): CachedLabel | null {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return null;
  }
  const e = v as Partial<CachedLabel> | null;
  if (!e || typeof e.label !== 'number' || e.label < 1 || e.label > 5 || typeof e.expected_score !== 'number' || !e.usage) return null;
  if (!LabelSource.safeParse(e.label_source).success) return null;
  if (e.distribution !== null && !(Array.isArray(e.distribution) && e.distribution.length === 5)) return null;
  return e as CachedLabel;
}

/** In-memory cache with the same contract, for stage tests. */
export function createMemoryLabelCache(): LabelCache & { map: Map<string, CachedLabel> } {
  const map = new Map<string, CachedLabel>();
  const key = (k: LabelCacheKey) => `${k.model}:${k.promptVersion}:${k.params}:${k.promptHash}`;
  return {
    map,
    async getMany(keys) {
      return keys.map((k) => map.get(key(k)) ?? null);
    },
    async put(k, v) {
      map.set(key(k), v);
    },
  };
}
