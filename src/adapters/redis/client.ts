/**
 * ioredis wiring. Key prefixing is done by the adapters' own key builders, not ioredis' keyPrefix,
 * so Lua scripts see exactly the keys we pass them (docs/architecture.md, "Redis key layout").
 */
import { readFileSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../../config.js';
import { PinrichError } from '../../errors.js';

export type { Redis };

/**
 * A connection to `url`. AUTH comes from the URL (`redis://user:password@host`); TLS from a
 * `rediss://` URL, verified against the system CAs or, with `tlsCaFile`, that PEM file.
 */
export function createRedis(url: string, opts: { tlsCaFile?: string } = {}): Redis {
  const redis = new Redis(url, redisOptions(url, opts));
  // Without a listener ioredis prints every connection error; the callers see them as rejections.
  redis.on('error', () => {});
  return redis;
}

/**
 * The Redis client of every command that reads its Redis from config (workers, `enrich rebuild`,
 * `labels export`, tests and benchmarks): URL (AUTH, `rediss://`) and PINRICH_REDIS_TLS_CA_FILE
 * together, so no command can forget the CA.
 */
export function createRedisFromConfig(config: Pick<Config, 'redisUrl' | 'redisTlsCaFile'>): Redis {
  return createRedis(config.redisUrl, { tlsCaFile: config.redisTlsCaFile });
}

/** The ioredis options for `url` (exported for tests: the TLS settings must reach the client). */
export function redisOptions(url: string, opts: { tlsCaFile?: string } = {}): RedisOptions {
  const tls = url.startsWith('rediss:') && opts.tlsCaFile ? { tls: { ca: [readFileSync(opts.tlsCaFile, 'utf8')] } } : {};
  return {
    // Commands wait for a reconnect instead of failing at once; the runtime retries batches.
    maxRetriesPerRequest: 20,
    enableAutoPipelining: true,
    lazyConnect: false,
    retryStrategy: (times) => Math.min(times * 200, 2_000),
    ...tls,
  };
}

/** Fail with a typed error when Redis cannot be reached (start-up check). */
export async function pingRedis(redis: Redis): Promise<void> {
  try {
    await redis.ping();
  } catch (err) {
    throw new PinrichError('state_unavailable', `Redis is unreachable: ${(err as Error).message}`, { retriable: true, cause: err });
  }
}
