/**
 * The shared rate limits, on the real Redis: two limiter instances (as two worker processes
 * would have) with the same key together stay within the configured rate.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createRedis } from '../../src/adapters/redis/client.js';
import { createRateLimiter } from '../../src/adapters/redis/rate-limit.js';
import { stack } from '../support/harness.js';

describe('shared rate limiter', () => {
  it('holds two instances together to the request rate', async () => {
    const a = createRedis(stack().redisUrl);
    const b = createRedis(stack().redisUrl);
    const key = `t-${randomUUID()}:rl`;
    const limits = { requestsPerSecond: 20, tokensPerMinute: 0 };
    const la = createRateLimiter(a, key, limits);
    const lb = createRateLimiter(b, key, limits);
    const signal = new AbortController().signal;
    const started = Date.now();
    // 60 requests at 20/s with a burst of 20: the last 40 need at least ~2 s of refill.
    await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? la : lb).acquire(1, signal)));
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(1_800);
    a.disconnect();
    b.disconnect();
  });

  it('holds token usage to tokens per minute', async () => {
    const redis = createRedis(stack().redisUrl);
    const limiter = createRateLimiter(redis, `t-${randomUUID()}:rl`, { requestsPerSecond: 0, tokensPerMinute: 6_000 });
    const signal = new AbortController().signal;
    const started = Date.now();
    // 100 tokens/s with a 10 s burst (1,000 tokens): 1,200 tokens need ~2 s of refill.
    for (let i = 0; i < 12; i++) await limiter.acquire(100, signal);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_800);
    redis.disconnect();
  });

  it('does not wait when no limit is set', async () => {
    const redis = createRedis(stack().redisUrl);
    const limiter = createRateLimiter(redis, `t-${randomUUID()}:rl`, { requestsPerSecond: 0, tokensPerMinute: 0 });
    const started = Date.now();
    for (let i = 0; i < 100; i++) await limiter.acquire(1_000, new AbortController().signal);
    expect(Date.now() - started).toBeLessThan(1_000);
    redis.disconnect();
  });
});
