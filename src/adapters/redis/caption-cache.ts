/**
 * Captions cached by (model, prompt version, image key): a re-pinned image is described once.
 *
 * Key: P cap:<model>:<prompt version>:<image key> -> JSON {@link CachedCaption}, no hash tag: on
 * a Redis Cluster each entry lives in its own slot, so a batch is read as single-key GETs
 * (auto-pipelined by ioredis, one round trip per node), never as a cross-slot MGET.
 */
import type { Redis } from './client.js';

export interface CachedCaption {
  text: string;
  model: string;
  prompt_version: string;
}

export interface CaptionCache {
  getMany(imageKeys: string[]): Promise<Array<CachedCaption | null>>;
  put(imageKey: string, caption: CachedCaption): Promise<void>;
}

export function createRedisCaptionCache(redis: Redis, prefix: string, model: string, promptVersion: string, ttlSeconds = 90 * 86_400): CaptionCache {
  const key = (imageKey: string) => `${prefix}cap:${model}:${promptVersion}:${imageKey}`;
  return {
    async getMany(imageKeys) {
      if (imageKeys.length === 0) return [];
      const raw = await Promise.all(imageKeys.map((k) => redis.get(key(k))));
      return raw.map((v) => (v === null ? null : (JSON.parse(v) as CachedCaption)));
    },
    async put(imageKey, caption) {
      await redis.set(key(imageKey), JSON.stringify(caption), 'EX', ttlSeconds);
    },
  };
}

/** In-memory cache with the same contract, for stage tests. */
export function createMemoryCaptionCache(): CaptionCache & { map: Map<string, CachedCaption> } {
  const map = new Map<string, CachedCaption>();
  return {
    map,
    async getMany(keys) {
      return keys.map((k) => map.get(k) ?? null);
    },
    async put(k, c) {
      map.set(k, c);
    },
  };
}
