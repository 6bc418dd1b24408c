/**
 * ioredis wiring. Key prefixing is done by the adapters' own key builders, not ioredis' keyPrefix,
 * so Lua scripts see exactly the keys we pass them (docs/architecture.md, "Redis key layout").
 *
 * One server or a Redis Cluster (PINRICH_REDIS_CLUSTER=true): the adapters are typed against
 * {@link Redis}, what both ioredis clients share (commands, defineCommand/evalsha, pipeline,
 * multi). On a cluster every script, MULTI, pipeline and multi-key command must stay inside one
 * hash slot (docs/architecture.md, "Redis Cluster"); ioredis routes each single-key command to
 * the master of its slot and follows MOVED/ASK redirections when slots move.
 */
import { readFileSync } from 'node:fs';
import { Cluster, Redis as RedisServer, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Config } from '../../config.js';
import { PinrichError } from '../../errors.js';

/** A Redis connection: one server, or a Redis Cluster (same command surface). */
export type Redis = RedisServer | Cluster;
/** A connection to one Redis server (tests, tools that address one node). */
export type RedisSingle = RedisServer;

/**
 * A connection to `url`. AUTH comes from the URL (`redis://user:password@host`); TLS from a
 * `rediss://` URL, verified against the system CAs or, with `tlsCaFile`, that PEM file.
 */
export function createRedis(url: string, opts: { tlsCaFile?: string } = {}): RedisServer {
  const redis = new RedisServer(url, redisOptions(url, opts));
  // Without a listener ioredis prints every connection error; the callers see them as rejections.
  redis.on('error', () => {});
  return redis;
}

/**
 * The Redis client of every command that reads its Redis from config (workers, `enrich rebuild`,
 * `labels export`, tests and benchmarks): URL (AUTH, `rediss://`) and PINRICH_REDIS_TLS_CA_FILE
 * together, so no command can forget the CA.
 */
export function createRedisFromConfig(config: Pick<Config, 'redisUrl' | 'redisTlsCaFile'> & { redisCluster?: false }): RedisServer;
export function createRedisFromConfig(config: Pick<Config, 'redisUrl' | 'redisTlsCaFile'> & Partial<Pick<Config, 'redisCluster'>>): Redis;
export function createRedisFromConfig(config: Pick<Config, 'redisUrl' | 'redisTlsCaFile'> & Partial<Pick<Config, 'redisCluster'>>): Redis {
  if (config.redisCluster) return createRedisCluster(config.redisUrl, { tlsCaFile: config.redisTlsCaFile });
  return createRedis(config.redisUrl, { tlsCaFile: config.redisTlsCaFile });
}

/**
 * A Redis Cluster client from seed nodes: `urls` is a comma-separated list of `redis://` /
 * `rediss://` URLs or bare `host:port`s (ioredis discovers the other nodes from any one seed).
 * AUTH and TLS are the cluster's, taken from the first URL that carries them: every node of one
 * cluster shares its password and certificate authority.
 */
export function createRedisCluster(urls: string, opts: { tlsCaFile?: string } = {}): Cluster {
  const { seeds, options } = clusterOptions(urls, opts);
  const cluster = new Cluster(seeds, options);
  cluster.on('error', () => {});
  return cluster;
}

/** Seed nodes and ioredis Cluster options for `urls` (exported for tests, like {@link redisOptions}). */
export function clusterOptions(urls: string, opts: { tlsCaFile?: string } = {}): { seeds: ClusterNode[]; options: ClusterOptions } {
  const parsed = urls
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean)
    .map((u) => new URL(/^[a-z]+:\/\//i.test(u) ? u : `redis://${u}`));
  if (parsed.length === 0) throw new PinrichError('config_invalid', 'PINRICH_REDIS_URL names no Redis Cluster seed node', { retriable: false });
  const withAuth = parsed.find((u) => u.password || u.username);
  const tlsUrl = parsed.find((u) => u.protocol === 'rediss:');
  const single = redisOptions(tlsUrl ? 'rediss://' : 'redis://', opts);
  const nodeOptions: RedisOptions = {
    maxRetriesPerRequest: single.maxRetriesPerRequest ?? null,
    ...(withAuth?.username ? { username: decodeURIComponent(withAuth.username) } : {}),
    ...(withAuth?.password ? { password: decodeURIComponent(withAuth.password) } : {}),
    // rediss:// without a CA file: TLS against the system CAs.
    ...(tlsUrl ? { tls: single.tls ?? {} } : {}),
  };
  return {
    seeds: parsed.map((u) => ({ host: u.hostname, port: Number(u.port || 6379) })),
    options: {
      redisOptions: nodeOptions,
      // Off on a cluster: ioredis groups auto-pipelined commands by the slot of their first
      // argument, which for a script called with a key count (every pinrich script) is that
      // count, not a key; two scripts of different slots then share one pipeline, which the
      // cluster client refuses. Concurrent commands still share each node's connection.
      enableAutoPipelining: false,
      // A master that restarts or fails over: slots are refreshed and commands retried (with
      // their batches' own retries above this) instead of failing at once.
      retryDelayOnClusterDown: 300,
      retryDelayOnFailover: 200,
      retryDelayOnTryAgain: 200,
      maxRedirections: 16,
      clusterRetryStrategy: (times) => Math.min(times * 200, 2_000),
      ...(tlsUrl ? { dnsLookup: (address, callback) => callback(null, address) } : {}),
    },
  };
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

/** True for a Redis Cluster client: every script and multi-key command must stay inside one slot. */
export function isCluster(redis: Redis): redis is Cluster {
  return redis instanceof Cluster;
}

/**
 * A pipeline whose commands may be in different hash slots. On one server it is a plain ioredis
 * pipeline (one round trip). On a cluster, ioredis refuses a pipeline whose keys are not all
 * served by one node, so this one records the calls and, at `exec()`, sends each as its own
 * command at once, each routed by its own keys to its slot's master, all in flight together on
 * the nodes' connections. The result has `exec()`'s shape, `[error, value]` per call
 * in call order. Like any pipeline it is not atomic; each command (a script) must itself stay
 * inside one slot. Only command calls and `exec()` are supported on the cluster form.
 */
export function crossSlotPipeline(redis: Redis): ReturnType<Redis['pipeline']> {
  if (!isCluster(redis)) return redis.pipeline();
  const calls: Array<() => Promise<unknown>> = [];
  const target = redis as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const pipe: unknown = new Proxy(
    {},
    {
      get(_, name) {
        if (name === 'exec') return () => Promise.all(calls.map((call) => call().then((v): [Error | null, unknown] => [null, v], (e: Error): [Error | null, unknown] => [e, null])));
        if (name === 'length') return calls.length;
        if (typeof name !== 'string' || typeof target[name] !== 'function') return undefined;
        return (...args: unknown[]) => {
          calls.push(() => target[name]!(...args));
          return pipe;
        };
      },
    },
  );
  return pipe as ReturnType<Redis['pipeline']>;
}

/** Fail with a typed error when Redis cannot be reached (start-up check). */
export async function pingRedis(redis: Redis): Promise<void> {
  try {
    await redis.ping();
  } catch (err) {
    throw new PinrichError('state_unavailable', `Redis is unreachable: ${(err as Error).message}`, { retriable: true, cause: err });
  }
}
