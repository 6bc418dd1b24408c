/**
 * The score stage's look-ahead window (src/stages/score/stage.ts): a batch's pins read their
 * documents only as slots come free, not all before the first model call, and a pin whose
 * document is not there yet waits outside the window without holding the others up. In-memory
 * ports, no Redis or model server.
 */
import { describe, expect, it } from 'vitest';
import type { Teacher } from '../../src/adapters/openai/teacher.js';
import type { CachedLabel, LabelCache } from '../../src/adapters/redis/label-cache.js';
import { topics } from '../../src/config.js';
import { buildDocument } from '../../src/core/document.js';
import { silentLogger } from '../../src/runtime/log.js';
import { createScoreStage } from '../../src/stages/score/stage.js';
import { createStageDriver, type DriverInput } from '../support/stage-driver.js';

const T = topics({ topicPrefix: '' });

const pinIdOf = (p: number) => `pin-${String(p).padStart(6, '0')}`;

function documentOf(pinId: string): string {
  const content = buildDocument(
    pinId,
    {
      pin: { title: `${pinId} lemon pasta`, description: 'A quick dinner.', image_key: null, link_url: null, link_title: 'Weeknight pasta', link_description: 'Ready fast.', language: 'en' },
      caption: null,
      boards: [{ text: 'dinner ideas', count: 3 }],
      queries: [{ text: 'easy pasta', count: 2 }],
      engagementCount: 5,
    },
    10,
  );
  return JSON.stringify({ ...content, version: 1, updated_at: '2026-01-01T00:00:00.000Z' });
}

function pairInput(n: number, pin: number, query: string): DriverInput {
  return { key: pinIdOf(pin), value: { schema: 'pair', schema_version: 1, pair_id: n.toString(16).padStart(32, '0'), pin_id: pinIdOf(pin), query, source: 'search_engagement', language: 'en', created_at: '2026-01-01T00:00:00.000Z' } };
}

/** Score `pins` pins (2 pairs each) with `concurrency` slots; what was read before the first call. */
async function run(opts: { pins: number; concurrency: number; missing?: Set<number>; docMaxAttempts?: number; callMs?: number; putMs?: number }) {
  // What happened, in order: `call <pin>` as a model call starts, `put <pin>` as a cache write ends.
  const events: string[] = [];
  const pinOfHash = new Map<string, string>();
  const reads: string[] = [];
  let readsAtFirstCall: number | undefined;
  const teacher: Teacher = {
    model: 'fake',
    params: { temperature: 0, max_tokens: 1, top_logprobs: 5 },
    async score(prompt) {
      readsAtFirstCall ??= reads.length;
      const pin = /pin-\d+/.exec(JSON.stringify(prompt))![0];
      pinOfHash.set(prompt.hash, pin);
      events.push(`call ${pin}`);
      await new Promise((r) => (opts.callMs ? setTimeout(r, opts.callMs) : setImmediate(r)));
      return { content: '4', topLogprobs: null, usage: null, latencyMs: 1 };
    },
  };
  const cached = new Map<string, CachedLabel>();
  const cache: LabelCache = {
    getMany: async (keys) => keys.map((k) => cached.get(k.promptHash) ?? null),
    put: async (k, v) => {
      if (opts.putMs) await new Promise((r) => setTimeout(r, opts.putMs));
      cached.set(k.promptHash, v);
      events.push(`put ${pinOfHash.get(k.promptHash)}`);
    },
  };
  const missing = opts.missing ?? new Set<number>();
  // Pins with a missing document between their first read and their last, and the most at once.
  const waiting = new Set<string>();
  let mostWaiting = 0;
  const stage = createScoreStage({
    teacher,
    cache,
    documents: {
      async getDocument(pinId) {
        reads.push(pinId);
        if (!missing.has(Number(pinId.slice(4)))) return documentOf(pinId);
        if (reads.filter((r) => r === pinId).length < (opts.docMaxAttempts ?? 3)) waiting.add(pinId);
        else waiting.delete(pinId);
        mostWaiting = Math.max(mostWaiting, waiting.size);
        return null;
      },
    },
    limiter: { acquire: async () => {} },
    retry: { maxAttempts: 1, baseMs: 1, maxMs: 1, timeoutMs: 5_000 },
    concurrency: opts.concurrency,
    docMaxAttempts: opts.docMaxAttempts ?? 3,
    docRetryBaseMs: 5,
    maxRecordBytes: 256 * 1024,
    topics: T,
    clock: { now: () => Date.UTC(2026, 0, 1) },
    log: silentLogger,
  });
  const pairs: DriverInput[] = [];
  for (let p = 0; p < opts.pins; p++) for (const q of ['easy pasta', 'lemon dinner']) pairs.push(pairInput(pairs.length, p, q));
  const driver = createStageDriver(stage);
  await driver.pipe(T.pairs, pairs); // one batch: every pair is on partition 0
  return { labels: driver.read(T.labels), deadLetters: driver.deadLetters(T.pairs), reads, readsAtFirstCall, mostWaiting, stats: stage.stats(), events };
}

describe('score stage: documents read as slots come free', () => {
  it('reads at most the window of documents before its first model call', async () => {
    const { labels, deadLetters, readsAtFirstCall, reads } = await run({ pins: 300, concurrency: 4 });
    expect(labels).toHaveLength(600);
    expect(deadLetters).toHaveLength(0);
    expect(reads).toHaveLength(300);
    // One window of pins (4) may have read ahead; reading all 300 first is the burst it prevents.
    expect(readsAtFirstCall).toBeGreaterThan(0);
    expect(readsAtFirstCall).toBeLessThanOrEqual(8);
  });

  it('lets a pin whose document is not there yet wait outside the window', async () => {
    // 40 of 50 pins have no document (3 reads, 5 and 10 ms apart): inside a window of 2 their
    // waits would run 2 at a time; outside it they all wait at once, beside the others.
    const missing = new Set(Array.from({ length: 40 }, (_, i) => i));
    const { labels, deadLetters, reads, mostWaiting } = await run({ pins: 50, concurrency: 2, missing });
    expect(labels).toHaveLength(20);
    expect(deadLetters).toHaveLength(80);
    expect(new Set(deadLetters.map((d) => d.error_code))).toEqual(new Set(['doc_not_found']));
    expect(reads).toHaveLength(40 * 3 + 10);
    expect(mostWaiting).toBeGreaterThan(20);
  });

  it('counts the time in model calls and the time pins held a slot', async () => {
    // 8 pins x 2 calls of 20 ms, 4 slots: 16 calls, each pin in its slot for its two calls.
    const { labels, stats } = await run({ pins: 8, concurrency: 4, callMs: 20 });
    expect(labels).toHaveLength(16);
    expect(stats.modelCalls).toBe(16);
    expect(stats.modelMs).toBeGreaterThanOrEqual(16 * 19);
    expect(stats.modelMs).toBeLessThan(16 * 20 * 5);
    // A slot is held for the pin's calls and its cache reads and writes, nothing else.
    expect(stats.slotMs).toBeGreaterThanOrEqual(stats.modelMs);
    expect(stats.slotMs).toBeLessThan(stats.modelMs + 8 * 20);
  });

  it('hands a pin\'s slot on before its cache writes are done', async () => {
    // One slot, cache writes of 30 ms: the next pin's first call starts while the first pin's
    // last label is still being written (a slot held for it would idle a Redis round trip per pin).
    const { labels, events } = await run({ pins: 2, concurrency: 1, putMs: 30 });
    expect(labels).toHaveLength(4);
    const firstPinDone = events.lastIndexOf(`put ${pinIdOf(0)}`);
    const secondPinCalls = events.indexOf(`call ${pinIdOf(1)}`);
    expect(firstPinDone).toBeGreaterThan(-1);
    expect(secondPinCalls).toBeGreaterThan(-1);
    expect(secondPinCalls).toBeLessThan(firstPinDone);
  });
});
