/**
 * Request-rate and token-rate limits shared by every instance through Redis (token buckets,
 * refilled continuously, the clock read inside Redis so instances' clocks don't matter).
 */
import type { Redis } from './client.js';
import { sleep } from '../../runtime/retry.js';

// KEYS[1]: bucket hash {tokens, ts}
// ARGV[1]: refill rate, tokens per second; ARGV[2]: capacity; ARGV[3]: cost of this call
// Returns 0 when the cost was taken, else the milliseconds to wait before asking again.
const TAKE = `
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local cost = math.min(tonumber(ARGV[3]), cap)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or cap
local ts = tonumber(b[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate / 1000)
local wait = 0
if tokens >= cost then tokens = tokens - cost else wait = math.ceil((cost - tokens) * 1000 / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 1000) + 1000)
return wait
`;

export interface RateLimiter {
  /** Wait until one request costing `tokens` tokens may go out. */
  acquire(tokens: number, signal: AbortSignal): Promise<void>;
}

export interface RateLimits {
  requestsPerSecond: number;
  tokensPerMinute: number;
}

export function createRateLimiter(redis: Redis, keyBase: string, limits: RateLimits): RateLimiter {
  const buckets: Array<{ key: string; rate: number; cap: number; cost: (tokens: number) => number }> = [];
  if (limits.requestsPerSecond > 0) {
    const rate = limits.requestsPerSecond;
    buckets.push({ key: `${keyBase}:rps`, rate, cap: Math.max(1, rate), cost: () => 1 });
  }
  if (limits.tokensPerMinute > 0) {
    const rate = limits.tokensPerMinute / 60;
    buckets.push({ key: `${keyBase}:tpm`, rate, cap: Math.max(1, rate * 10), cost: (t) => Math.max(1, t) });
  }
  return {
    async acquire(tokens, signal) {
      for (const b of buckets) {
        for (;;) {
          const wait = Number(await redis.eval(TAKE, 1, b.key, b.rate, b.cap, b.cost(tokens)));
          if (wait <= 0) break;
          await sleep(Math.min(wait, 5_000), signal);
        }
      }
    },
  };
}
