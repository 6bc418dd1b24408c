/**
 * An in-memory stage driver, after Kafka Streams' TopologyTestDriver: it feeds a stage
 * (src/runtime/stage.ts) batches of records as the worker would, runs its `commit`, and records
 * what it publishes and dead-letters — without a broker, Redis or a model server, so a stage's
 * logic is tested in milliseconds. The ports are small hand-written fakes (an in-memory caption
 * cache, a scripted captioner, an in-memory rate limiter, a fake clock), not module mocks.
 *
 * What it does not model: consumer groups, rebalances, offsets committed to Kafka, delivery
 * failures; the integration tests on the real stack cover those.
 */
import type { OutMessage } from '../../src/adapters/kafka/client.js';
import type { CaptionResult, Captioner } from '../../src/adapters/openai/captioner.js';
import type { CachedCaption, CaptionCache } from '../../src/adapters/redis/caption-cache.js';
import type { RateLimiter, RateLimits } from '../../src/adapters/redis/rate-limit.js';
import { dlqTopic } from '../../src/config.js';
import { PinrichError } from '../../src/errors.js';
import type { Clock } from '../../src/runtime/clock.js';
import { deadLetterMessage } from '../../src/runtime/dead-letter.js';
import type { InRecord, Stage, StageContext, StageResult } from '../../src/runtime/stage.js';

/** A clock that moves only when told; `sleep` wakes when `advance` passes its deadline. */
export interface FakeClock extends Clock {
  advance(ms: number): void;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Sleeps not yet woken (a test waits for one before advancing). */
  readonly sleepers: number;
}

export function createFakeClock(startMs = Date.UTC(2026, 0, 1)): FakeClock {
  let now = startMs;
  const waiting: Array<{ at: number; wake: () => void }> = [];
  return {
    now: () => now,
    get sleepers() {
      return waiting.length;
    },
    advance(ms) {
      now += ms;
      for (const w of waiting.filter((w) => w.at <= now)) w.wake();
    },
    sleep(ms, signal) {
      return new Promise<void>((resolve, reject) => {
        if (signal?.aborted) return reject(new PinrichError('aborted', 'aborted'));
        const entry = {
          at: now + ms,
          wake: () => {
            waiting.splice(waiting.indexOf(entry), 1);
            signal?.removeEventListener('abort', onAbort);
            resolve();
          },
        };
        const onAbort = () => {
          waiting.splice(waiting.indexOf(entry), 1);
          reject(new PinrichError('aborted', 'aborted'));
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        waiting.push(entry);
        if (ms <= 0) entry.wake();
      });
    },
  };
}

/** Caption cache in a Map, keyed by image key (one model and prompt version per test). */
export function createMemoryCaptionCache(): CaptionCache & { entries: Map<string, CachedCaption> } {
  const entries = new Map<string, CachedCaption>();
  return {
    entries,
    async getMany(keys) {
      return keys.map((k) => entries.get(k) ?? null);
    },
    async put(key, caption) {
      entries.set(key, caption);
    },
  };
}

/** One recorded call of the scripted captioner. */
export interface CaptionCall {
  url: string;
  signal: AbortSignal;
  /** Whether the signal had already fired when the call started (a spent timeout). */
  abortedAtCall: boolean;
}

/**
 * A captioner that answers from `script` (default: a caption naming the URL) and records every
 * call with the signal it got, so a test can tell whether that signal was already spent.
 */
export function createScriptedCaptioner(
  script: (url: string, signal: AbortSignal) => CaptionResult | Promise<CaptionResult> = (url) => ({ text: `a photo at ${url}`, usage: null }),
): Captioner & { calls: CaptionCall[] } {
  const calls: CaptionCall[] = [];
  return {
    model: 'scripted-vlm',
    promptVersion: 'caption-v1',
    calls,
    async describe(url, { signal }) {
      calls.push({ url, signal, abortedAtCall: signal.aborted });
      if (signal.aborted) throw new PinrichError('aborted', 'model request aborted');
      return script(url, signal);
    },
  };
}

/**
 * The token buckets of adapters/redis/rate-limit.ts (same capacities and costs) on a fake clock:
 * `acquire` sleeps on the clock until the bucket has the tokens, so a test decides when time
 * passes. `granted` counts requests let through.
 */
export function createMemoryRateLimiter(clock: FakeClock, limits: RateLimits): RateLimiter & { granted: number; waits: number } {
  const buckets: Array<{ rate: number; cap: number; cost: (t: number) => number; tokens: number; ts: number }> = [];
  if (limits.requestsPerSecond > 0) {
    const rate = limits.requestsPerSecond;
    buckets.push({ rate, cap: Math.max(1, rate), cost: () => 1, tokens: Math.max(1, rate), ts: clock.now() });
  }
  if (limits.tokensPerMinute > 0) {
    const rate = limits.tokensPerMinute / 60;
    buckets.push({ rate, cap: Math.max(1, rate * 10), cost: (t) => Math.max(1, t), tokens: Math.max(1, rate * 10), ts: clock.now() });
  }
  const limiter = {
    granted: 0,
    waits: 0,
    async acquire(tokens: number, signal: AbortSignal) {
      for (const b of buckets) {
        for (;;) {
          const now = clock.now();
          b.tokens = Math.min(b.cap, b.tokens + ((now - b.ts) * b.rate) / 1000);
          b.ts = now;
          const cost = Math.min(b.cost(tokens), b.cap);
          if (b.tokens >= cost) {
            b.tokens -= cost;
            break;
          }
          limiter.waits++;
          await clock.sleep(Math.ceil(((cost - b.tokens) * 1000) / b.rate), signal);
        }
      }
      limiter.granted++;
    },
  };
  return limiter;
}

/** A record to feed: objects are JSON-encoded, strings and Buffers go as they are, null is a tombstone. */
export interface DriverInput {
  key: string | null;
  value: unknown;
  partition?: number;
}

export interface StageDriver {
  /** Feed `records` to the stage as one batch per partition (in order) and deliver the results. */
  pipe(topic: string, records: DriverInput[]): Promise<void>;
  /** Run the stage's `tick` for the given assignment (default: every partition fed so far). */
  tick(assigned?: ReadonlyMap<string, readonly number[]>): Promise<void>;
  /** Everything published to `topic` so far, in order (dead letters are on `<topic>.dlq`). */
  read(topic: string): OutMessage[];
  /** JSON values published to `topic` (null for tombstones). */
  readValues<T = unknown>(topic: string): Array<T | null>;
  /** Dead-letter records for input `topic`, parsed. */
  deadLetters(topic: string): Array<{ error_code: string; reason: string; source: { offset: string } }>;
  /** Aborts the context signal of every batch (as a shutdown does). */
  abort(): void;
}

export function createStageDriver(stage: Stage, opts: { clock?: Clock } = {}): StageDriver {
  const clock = opts.clock ?? createFakeClock();
  const published = new Map<string, OutMessage[]>();
  const nextOffset = new Map<string, number>();
  const fed = new Map<string, Set<number>>();
  const controller = new AbortController();
  const ctx: StageContext = { signal: controller.signal, heartbeat: async () => {} };

  // What the worker does with a stage result: publish outputs and dead letters, then commit.
  async function deliver(result: StageResult): Promise<void> {
    const now = new Date(clock.now());
    for (const m of [...result.outputs, ...result.rejected.map((r) => deadLetterMessage(stage.name, r, now))]) {
      const list = published.get(m.topic) ?? [];
      list.push(m);
      published.set(m.topic, list);
    }
    await result.commit?.();
  }

  const valueOf = (v: unknown): Buffer | null => (v === null ? null : Buffer.isBuffer(v) ? v : Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)));

  return {
    async pipe(topic, records) {
      const byPartition = new Map<number, InRecord[]>();
      for (const r of records) {
        const partition = r.partition ?? 0;
        const tp = `${topic}:${partition}`;
        const offset = nextOffset.get(tp) ?? 0;
        nextOffset.set(tp, offset + 1);
        const batch = byPartition.get(partition) ?? [];
        batch.push({ topic, partition, offset: String(offset), key: r.key, value: valueOf(r.value), timestamp: clock.now() });
        byPartition.set(partition, batch);
        const parts = fed.get(topic) ?? new Set<number>();
        parts.add(partition);
        fed.set(topic, parts);
      }
      for (const batch of byPartition.values()) await deliver(await stage.handle(batch, ctx));
    },
    async tick(assigned) {
      if (!stage.tick) return;
      const all = assigned ?? new Map([...fed].map(([t, ps]) => [t, [...ps].sort((a, b) => a - b)]));
      await deliver(await stage.tick(all, ctx));
    },
    read: (topic) => [...(published.get(topic) ?? [])],
    readValues: <T,>(topic: string) => (published.get(topic) ?? []).map((m) => (m.value === null ? null : (JSON.parse(String(m.value)) as T))),
    deadLetters: (topic) =>
      (published.get(dlqTopic(topic)) ?? []).map((m) => JSON.parse(String(m.value)) as { error_code: string; reason: string; source: { offset: string } }),
    abort: () => controller.abort(),
  };
}
