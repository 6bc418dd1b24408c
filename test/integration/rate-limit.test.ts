/**
 * The shared rate limits, on the real Redis: two limiter instances (as two worker processes
 * would have) with the same key together stay within the configured rate.
 *
 * Bounds are counts, so a loaded machine cannot make them flaky: in a window of T seconds a
 * token bucket of capacity C refilled at R per second grants at most C + R·T (every grant lies
 * inside the window the test measured, and a slow machine only widens that window), and a
 * working limiter grants well over half of it. A limiter that lets too much through (instances
 * not sharing the bucket, cost not charged) breaks the upper bound; one that over-throttles or
 * stalls breaks the lower one.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createRedisFromConfig, type Redis } from '../../src/adapters/redis/client.js';
import { createRateLimiter, type RateLimiter } from '../../src/adapters/redis/rate-limit.js';
import { testConfig } from '../support/harness.js';

const signal = new AbortController().signal;

/**
 * Acquire `cost` repeatedly from `loops` concurrent loops over `limiters` until `windowMs` has
 * passed; returns the grants and the window actually measured (until the last grant).
 */
async function grantsWithin(limiters: RateLimiter[], loops: number, cost: number, windowMs: number): Promise<{ grants: number; seconds: number }> {
  let grants = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: loops }, async (_, i) => {
      while (performance.now() - started < windowMs) {
        await limiters[i % limiters.length]!.acquire(cost, signal);
        grants++;
      }
    }),
  );
  return { grants, seconds: (performance.now() - started) / 1000 };
}

describe('shared rate limiter', () => {
  const clients: Redis[] = [];
  const client = () => {
    const redis = createRedisFromConfig(testConfig());
    clients.push(redis);
    return redis;
  };
  const done = () => clients.splice(0).forEach((c) => c.disconnect());

  it('holds two instances together to the request rate: at most burst + rate x window, at least half of it', async () => {
    try {
      const key = `t-${randomUUID()}:rl`;
      const limits = { requestsPerSecond: 20, tokensPerMinute: 0 };
      const la = createRateLimiter(client(), key, limits);
      const lb = createRateLimiter(client(), key, limits);
      // Capacity 20 (one second of requests), refilled at 20/s.
      const { grants, seconds } = await grantsWithin([la, lb], 4, 1, 2_000);
      expect(grants).toBeLessThanOrEqual(Math.floor(20 + 20 * seconds));
      expect(grants).toBeGreaterThanOrEqual(Math.floor((20 + 20 * 2) / 2));
    } finally {
      done();
    }
  });

  it('charges each request its tokens: a fresh bucket takes exactly 10 requests of 100 tokens, then holds to tokens per minute', async () => {
    try {
      const redis = client();
      const key = `t-${randomUUID()}:rl`;
      const limiter = createRateLimiter(redis, key, { requestsPerSecond: 0, tokensPerMinute: 6_000 });
      // 100 tokens/s, capacity 10 s = 1,000 tokens: 10 requests of 100 empty it.
      for (let i = 0; i < 10; i++) await limiter.acquire(100, signal);
      const left = Number(await redis.hget(`${key}:tpm`, 'tokens'));
      // What is left is only the refill since the first request: less than one more request's worth.
      expect(left).toBeGreaterThanOrEqual(0);
      expect(left).toBeLessThan(100);
      const { grants, seconds } = await grantsWithin([limiter], 2, 100, 2_000);
      // The bucket is (nearly) empty now: at most `left` + 100 tokens/s x window, in requests of 100.
      expect(grants).toBeLessThanOrEqual(Math.floor((left + 100 * seconds) / 100) + 1);
      expect(grants).toBeGreaterThanOrEqual(1);
    } finally {
      done();
    }
  });

  it('does not wait or touch Redis when no limit is set', async () => {
    try {
      const redis = client();
      const key = `t-${randomUUID()}:rl`;
      const limiter = createRateLimiter(redis, key, { requestsPerSecond: 0, tokensPerMinute: 0 });
      for (let i = 0; i < 100; i++) {
        // Resolves before the event loop's next turn: no sleep, no Redis round trip.
        const first = await Promise.race([limiter.acquire(1_000, signal).then(() => 'granted'), new Promise((r) => setImmediate(() => r('waited')))]);
        expect(first).toBe('granted');
      }
      expect(await redis.exists(`${key}:rps`, `${key}:tpm`)).toBe(0);
    } finally {
      done();
    }
  });
});
