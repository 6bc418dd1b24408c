/**
 * The caption stage's logic on the in-memory stage driver (test/support/stage-driver.ts): no
 * broker, Redis or model server; fake ports and a fake clock.
 */
import { describe, expect, it } from 'vitest';
import type { Caption } from '../../schemas/caption.js';
import { topics } from '../../src/config.js';
import { deadLetterCodeOf, PinrichError } from '../../src/errors.js';
import { buildDocument } from '../../src/core/document.js';
import { silentLogger } from '../../src/runtime/log.js';
import { createCaptionStage } from '../../src/stages/caption/stage.js';
import { pinFieldsOf } from '../../src/stages/enrich/stage.js';
import type { PinEvent } from '../../schemas/pin-event.js';
import {
  createFakeClock,
  createMemoryCaptionCache,
  createMemoryRateLimiter,
  createScriptedCaptioner,
  createStageDriver,
  type FakeClock,
} from '../support/stage-driver.js';
import type { RateLimiter } from '../../src/adapters/redis/rate-limit.js';
import { ODDLY_SPELLED_REJECTED_URLS } from '../support/urls.js';

const t = topics({ topicPrefix: '' });
const policy = { allowedSchemes: ['https'], allowedHosts: [], maxLength: 2_048 };

const pinEvent = (id: string, imageUrl: string): Extract<PinEvent, { type: 'created' }> => ({
  schema: 'pin_event',
  schema_version: 1,
  type: 'created',
  pin_id: id,
  event_time: '2026-01-01T00:00:00.000Z',
  title: `Title of ${id}`,
  description: 'Une recette facile de tarte aux pommes',
  image_url: imageUrl,
  language: 'fr',
});

function captionStage(opts: { clock: FakeClock; limiter?: RateLimiter; timeoutMs?: number; concurrency?: number; script?: Parameters<typeof createScriptedCaptioner>[0] }) {
  const captioner = createScriptedCaptioner(opts.script);
  const stage = createCaptionStage({
    captioner,
    cache: createMemoryCaptionCache(),
    limiter: opts.limiter ?? createMemoryRateLimiter(opts.clock, { requestsPerSecond: 0, tokensPerMinute: 0 }),
    policy,
    retry: { maxAttempts: 3, baseMs: 1, maxMs: 2, timeoutMs: opts.timeoutMs ?? 10_000 },
    concurrency: opts.concurrency ?? 4,
    maxRecordBytes: 262_144,
    topics: t,
    clock: opts.clock,
    log: silentLogger,
  });
  return { stage, captioner, driver: createStageDriver(stage, { clock: opts.clock }) };
}

/** caption_status of the document enrich builds for `event` once it has applied `caption`. */
function captionStatusOf(event: Extract<PinEvent, { type: 'created' }>, caption: Caption): string {
  const state = { pin: pinFieldsOf(event), caption: { image_key: caption.image_key, status: caption.status, text: caption.text }, boards: [], queries: [], engagementCount: 0 };
  return buildDocument(event.pin_id, state, 10).caption_status;
}

describe('caption stage: one image key for a rejected URL and its pin', () => {
  // URLs whose parsed (canonical) form differs from the string as written, all rejected.
  const rejected = [...ODDLY_SPELLED_REJECTED_URLS, 'not a url at all'];

  it.each(rejected)('%s: failed caption (url_rejected) that enrich matches to the pin', async (url) => {
    const clock = createFakeClock();
    const { driver, captioner } = captionStage({ clock });
    const event = pinEvent('p1', url);
    await driver.pipe(t.pinEvents, [{ key: 'p1', value: event }]);
    const [caption] = driver.readValues<Caption>(t.captions);
    expect(caption).toMatchObject({ pin_id: 'p1', status: 'failed', error_code: 'url_rejected' });
    expect(caption!.image_key).toBe(pinFieldsOf(event).image_key);
    expect(captionStatusOf(event, caption!)).toBe('failed');
    expect(captioner.calls).toHaveLength(0);
  });

  it('an accepted URL written in a non-canonical form is captioned once and matches its pin', async () => {
    const clock = createFakeClock();
    const { driver, captioner } = captionStage({ clock });
    const a = pinEvent('a', 'HTTPS://Images.Example.com:443/x.jpg#top');
    const b = pinEvent('b', 'https://images.example.com/x.jpg');
    await driver.pipe(t.pinEvents, [
      { key: 'a', value: a },
      { key: 'b', value: b },
    ]);
    const captions = driver.readValues<Caption>(t.captions);
    expect(captions.map((c) => c!.status)).toEqual(['ok', 'ok']);
    expect(captioner.calls.map((c) => c.url)).toEqual(['https://images.example.com/x.jpg']);
    expect(captionStatusOf(a, captions[0]!)).toBe('ok');
    expect(captionStatusOf(b, captions[1]!)).toBe('ok');
  });
});

describe('caption stage: waiting for the shared rate limit is back-pressure', () => {
  it('a request queued behind the rate limit for longer than the model timeout is captioned, not aborted', async () => {
    const clock = createFakeClock();
    // 1 request/s: the second image waits one (fake) second for its token.
    const limiter = createMemoryRateLimiter(clock, { requestsPerSecond: 1, tokensPerMinute: 0 });
    const { driver, captioner } = captionStage({ clock, limiter, timeoutMs: 5 });
    const done = driver.pipe(t.pinEvents, [
      { key: 'a', value: pinEvent('a', 'https://images.example.com/a.jpg') },
      { key: 'b', value: pinEvent('b', 'https://images.example.com/b.jpg') },
    ]);
    // The second request is queued behind the limiter.
    while (clock.sleepers === 0) await new Promise((r) => setImmediate(r));
    // Let real time pass well beyond the 5 ms per-request timeout while it waits.
    await new Promise((r) => setTimeout(r, 50));
    clock.advance(1_000);
    await done;
    const captions = driver.readValues<Caption>(t.captions);
    expect(captions.map((c) => [c!.pin_id, c!.status, c!.error_code])).toEqual([
      ['a', 'ok', null],
      ['b', 'ok', null],
    ]);
    // Counting, not timing: exactly one wait, two grants, two model calls, none with a spent signal.
    expect(limiter.waits).toBe(1);
    expect(limiter.granted).toBe(2);
    expect(captioner.calls).toHaveLength(2);
    expect(captioner.calls.map((c) => c.abortedAtCall)).toEqual([false, false]);
  });

  it('the limiter lets through exactly the burst, then one request per refilled token', async () => {
    const clock = createFakeClock();
    const limiter = createMemoryRateLimiter(clock, { requestsPerSecond: 2, tokensPerMinute: 0 });
    const { driver } = captionStage({ clock, limiter, concurrency: 8 });
    const done = driver.pipe(
      t.pinEvents,
      Array.from({ length: 6 }, (_, i) => ({ key: `p${i}`, value: pinEvent(`p${i}`, `https://images.example.com/${i}.jpg`) })),
    );
    const settle = async () => {
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    };
    await settle();
    expect(limiter.granted).toBe(2); // the burst: capacity = 2
    const after: number[] = [];
    for (let step = 0; step < 4; step++) {
      clock.advance(500); // one token per 500 ms
      await settle();
      after.push(limiter.granted);
    }
    await done;
    expect(after).toEqual([3, 4, 5, 6]);
    expect(driver.readValues<Caption>(t.captions).every((c) => c!.status === 'ok')).toBe(true);
  });

  it('a shutdown during the wait aborts the batch instead of failing the caption', async () => {
    const clock = createFakeClock();
    const limiter = createMemoryRateLimiter(clock, { requestsPerSecond: 1, tokensPerMinute: 0 });
    const { driver } = captionStage({ clock, limiter });
    const done = driver.pipe(t.pinEvents, [
      { key: 'a', value: pinEvent('a', 'https://images.example.com/a.jpg') },
      { key: 'b', value: pinEvent('b', 'https://images.example.com/b.jpg') },
    ]);
    while (clock.sleepers === 0) await new Promise((r) => setImmediate(r));
    driver.abort();
    await expect(done).rejects.toMatchObject({ code: 'aborted' });
    expect(driver.read(t.captions)).toHaveLength(0);
  });
});

describe('caption stage: failed captions take their code from the one mapping (deadLetterCodeOf)', () => {
  const cases: Array<[string, PinrichError, string]> = [
    ['persistent 5xx', new PinrichError('model_server_error', 'model server error 500', { retriable: true }), 'model_unavailable'],
    ['rejected request', new PinrichError('model_rejected_request', 'model server rejected the request (400)'), 'model_rejected_request'],
    ['unparseable answer', new PinrichError('model_answer_unparseable', 'caption answer has no text content'), 'model_answer_unparseable'],
  ];
  it.each(cases)('%s', async (_name, error, code) => {
    const clock = createFakeClock();
    const { driver, captioner } = captionStage({ clock, script: () => Promise.reject(error) });
    await driver.pipe(t.pinEvents, [{ key: 'p1', value: pinEvent('p1', 'https://images.example.com/a.jpg') }]);
    const [caption] = driver.readValues<Caption>(t.captions);
    expect(caption).toMatchObject({ status: 'failed', error_code: code });
    expect(caption!.error_code).toBe(deadLetterCodeOf(error));
    expect(captioner.calls).toHaveLength(error.retriable ? 3 : 1); // retriable errors used every attempt
  });
});
