/**
 * ioredis wiring. Key prefixing is done by `RedisKeys`, not ioredis' keyPrefix, so Lua
 * scripts see exactly the keys we pass them.
 */
import { Redis } from 'ioredis';
import { PinrichError } from '../../errors.js';

export type { Redis };

export function createRedis(url: string): Redis {
  const redis = new Redis(url, {
    // Commands wait for a reconnect instead of failing at once; the runtime retries batches.
    maxRetriesPerRequest: 20,
    enableAutoPipelining: true,
    lazyConnect: false,
    retryStrategy: (times) => Math.min(times * 200, 2_000),
  });
  // Without a listener ioredis prints every connection error; the callers see them as rejections.
  redis.on('error', () => {});
  return redis;
}

/** Fail with a typed error when Redis cannot be reached (start-up check). */
export async function pingRedis(redis: Redis): Promise<void> {
  try {
    await redis.ping();
  } catch (err) {
    throw new PinrichError('state_unavailable', `Redis is unreachable: ${(err as Error).message}`, { retriable: true, cause: err });
  }
}
