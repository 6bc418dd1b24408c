/**
 * Caption stage: pins.events -> VLM -> pins.captions.
 *
 * For each created/updated pin with an image: check the URL policy, look the image up in the
 * caption cache, describe the misses (each distinct image once per batch, bounded concurrency,
 * shared rate limits, the retry policy), and publish one caption record per pin event. A caption
 * that fails for good is published with status "failed" and its reason, so the pin is still
 * enriched. Invalid events are dead-lettered. A model outage (unreachable, 429s, timeouts past
 * the retry policy) is not a failure of the pin: it fails the batch, which the worker retries
 * with its offsets held, so an outage delays captions but never changes them.
 */
import type { Caption } from '../../../schemas/caption.js';
import { LIMITS } from '../../../schemas/common.js';
import type { OutMessage } from '../../adapters/kafka/client.js';
import type { Captioner, CaptionResult } from '../../adapters/openai/captioner.js';
import type { CaptionCache } from '../../adapters/redis/caption-cache.js';
import type { RateLimiter } from '../../adapters/redis/rate-limit.js';
import type { Topics } from '../../config.js';
import { decodeRecord } from '../../core/decode.js';
import { cleanText, clipText, wellFormed } from '../../core/text.js';
import { imageKeyOf } from '../../core/image-key.js';
import { checkImageUrl, type UrlPolicy } from '../../core/url-policy.js';
import { deadLetterCodeOf, describeError, isModelOutage } from '../../errors.js';
import type { Clock } from '../../runtime/clock.js';
import { createLimit } from '../../runtime/limit.js';
import type { Logger } from '../../runtime/log.js';
import { withRetries, type RetryPolicy } from '../../runtime/retry.js';
import type { InRecord, Rejection, Stage } from '../../runtime/stage.js';

export interface CaptionStageDeps {
  captioner: Captioner;
  cache: CaptionCache;
  limiter: RateLimiter;
  policy: UrlPolicy;
  retry: RetryPolicy;
  concurrency: number;
  maxRecordBytes: number;
  topics: Topics;
  clock: Clock;
  log: Logger;
}

export interface CaptionStats {
  pinsWithImage: number;
  ok: number;
  failed: number;
  cacheHits: number;
  modelCalls: number;
  failedByCode: Record<string, number>;
}

type Outcome = { ok: true; result: CaptionResult; cached: boolean } | { ok: false; code: string; reason: string };

export function createCaptionStage(deps: CaptionStageDeps): Stage & { stats(): CaptionStats } {
  const { captioner, cache, limiter, policy, retry, clock, log } = deps;
  const limit = createLimit(deps.concurrency);
  /**
   * Images being described by this instance, across concurrently handled partitions, so a
   * re-pinned image is described once even when its pins sit in different partitions. (Two
   * instances can still both miss the cache at the same moment: a Redis lock would close that.)
   */
  const inFlight = new Map<string, Promise<Outcome>>();
  const stats: CaptionStats = { pinsWithImage: 0, ok: 0, failed: 0, cacheHits: 0, modelCalls: 0, failedByCode: {} };

  async function describe(url: string, signal: AbortSignal): Promise<Outcome> {
    try {
      const { value } = await withRetries(
        retry,
        async (attemptSignal) => {
          stats.modelCalls++;
          return captioner.describe(url, { signal: attemptSignal });
        },
        {
          signal,
          // The shared rate limit is waited for before the attempt's timeout starts (back-pressure).
          // ~85 tokens for a low-detail image plus the prompt: a fair estimate for the token limit.
          beforeAttempt: (waitSignal) => limiter.acquire(150, waitSignal),
          onRetry: (err, attempt, delayMs) => log.debug('caption retry', { attempt, delayMs: Math.round(delayMs), error: describeError(err) }),
        },
      );
      const text = clipText(cleanText(value.text), LIMITS.caption);
      if (!text) return { ok: false, code: 'model_answer_unparseable', reason: 'caption is empty after normalisation' };
      return { ok: true, result: { ...value, text }, cached: false };
    } catch (err) {
      // An outage (down, 429, timeouts) fails the batch so the worker holds it; see isModelOutage.
      if (signal.aborted || isModelOutage(err)) throw err;
      const code = deadLetterCodeOf(err);
      return { ok: false, code, reason: wellFormed(clipText(`captioning failed: ${describeError(err)}`, 1_000)) };
    }
  }

  return {
    name: 'caption',
    stats: () => ({ ...stats, failedByCode: { ...stats.failedByCode } }),
    async handle(batch: InRecord[], ctx) {
      const rejected: Rejection[] = [];
      const jobs: Array<{ pinId: string; imageKey: string; url: string | null; verdictReason?: string }> = [];
      for (const record of batch) {
        const decoded = decodeRecord('pin_event', record.value, deps.maxRecordBytes);
        if (!decoded.ok) {
          rejected.push({ record, code: decoded.code, reason: decoded.reason });
          continue;
        }
        const event = decoded.value;
        if (event.type === 'deleted' || !event.image_url) continue;
        const verdict = checkImageUrl(event.image_url, { ...policy, maxLength: LIMITS.url });
        // Keyed by the event's URL whatever the verdict: enrich keys the pin's image the same way.
        const imageKey = imageKeyOf(event.image_url);
        if (!verdict.ok) jobs.push({ pinId: event.pin_id, imageKey, url: null, verdictReason: verdict.reason });
        else jobs.push({ pinId: event.pin_id, imageKey, url: verdict.url });
      }

      // One outcome per distinct image: cache first, then the model for the misses.
      const outcomes = new Map<string, Promise<Outcome>>();
      const allowed = [...new Map(jobs.filter((j) => j.url).map((j) => [j.imageKey, j.url!])).entries()];
      const cached = await cache.getMany(allowed.map(([k]) => k));
      allowed.forEach(([imageKey, url], i) => {
        const hit = cached[i];
        if (hit) {
          stats.cacheHits++;
          outcomes.set(imageKey, Promise.resolve({ ok: true, cached: true, result: { text: hit.text, usage: null } }));
        } else if (inFlight.has(imageKey)) {
          // Another partition's batch is describing this image right now: share its answer.
          stats.cacheHits++;
          outcomes.set(imageKey, inFlight.get(imageKey)!.then((o) => (o.ok ? { ...o, cached: true } : o)));
        } else {
          const call = limit(async () => {
            const outcome = await describe(url, ctx.signal);
            if (outcome.ok) await cache.put(imageKey, { text: outcome.result.text, model: captioner.model, prompt_version: captioner.promptVersion });
            return outcome;
          }).finally(() => inFlight.delete(imageKey));
          inFlight.set(imageKey, call);
          outcomes.set(imageKey, call);
        }
      });
      // Model calls can outlast the session timeout: keep heartbeating while they run.
      const beat = setInterval(() => void ctx.heartbeat().catch(() => {}), 3_000);
      try {
        // Let every call finish (successes are cached) before failing the batch for a retry.
        const failed = (await Promise.allSettled(outcomes.values())).find((o): o is PromiseRejectedResult => o.status === 'rejected');
        if (failed) throw failed.reason;
      } finally {
        clearInterval(beat);
      }

      const now = new Date(clock.now()).toISOString();
      const outputs: OutMessage[] = [];
      const reportedCacheHit = new Set<string>();
      for (const job of jobs) {
        stats.pinsWithImage++;
        const outcome: Outcome = job.url
          ? await outcomes.get(job.imageKey)!
          : { ok: false, code: 'url_rejected', reason: `image URL rejected by policy: ${job.verdictReason}` };
        // The first pin of a freshly described image in this batch paid for it; later ones are cache hits.
        let fromCache = outcome.ok && outcome.cached;
        if (outcome.ok && !outcome.cached) {
          if (reportedCacheHit.has(job.imageKey)) {
            fromCache = true;
            stats.cacheHits++;
          }
          reportedCacheHit.add(job.imageKey);
        }
        const caption: Caption = {
          schema: 'caption',
          schema_version: 1,
          pin_id: job.pinId,
          image_key: job.imageKey,
          status: outcome.ok ? 'ok' : 'failed',
          text: outcome.ok ? outcome.result.text : null,
          error_code: outcome.ok ? null : outcome.code,
          reason: outcome.ok ? null : outcome.reason,
          model: captioner.model,
          prompt_version: captioner.promptVersion,
          cached: fromCache,
          usage: outcome.ok && !fromCache ? outcome.result.usage : null,
          created_at: now,
        };
        if (outcome.ok) stats.ok++;
        else {
          stats.failed++;
          stats.failedByCode[outcome.code] = (stats.failedByCode[outcome.code] ?? 0) + 1;
        }
        outputs.push({ topic: deps.topics.captions, key: job.pinId, value: JSON.stringify(caption) });
      }
      return { outputs, rejected };
    },
    async close() {},
  };
}
