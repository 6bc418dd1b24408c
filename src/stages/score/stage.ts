/**
 * Score stage: relevance.pairs -> the pin's enriched document -> teacher prompt -> teacher LLM
 * -> relevance.labels.
 *
 * For each batch (one partition): decode the pairs (invalid ones are dead-lettered), group them
 * by pin, and for every pin — pins in parallel, bounded by the in-flight limit — load the pin's
 * latest document (waiting a bounded time for one that is not there yet, then dead-lettering its
 * pairs as doc_not_found), look every prompt up in the label cache, and send the misses to the
 * teacher one after another. Sequential within a pin is deliberate: the prompt puts the rubric
 * and the pin text before the query, so a serving stack with prefix caching reuses the pin's
 * prefix for each next query, and the label records the cached prompt tokens it got.
 *
 * Failures per pair: an answer from which no level can be read (core/teacher-answer.ts reads a
 * level answer, a short answer naming a level, or the first token's top candidates; a classifier
 * teacher's class probabilities are always a label) gets one more try, then goes to the DLQ as
 * model_answer_unparseable with its text; a request the server rejects (4xx) goes as model_rejected_request;
 * 5xx answers are retried under the shared retry policy and, once it gives up, go as
 * model_unavailable (as the caption stage does: one sick pair must not hold its partition).
 * 429s, timeouts and an unreachable server are an outage, not the pair's fault: once the policy
 * gives up they fail the batch, and the worker retries it with its offsets held.
 * Redis errors are infrastructure: they fail the batch, which the worker retries whole; the
 * labels finished before the failure are in the cache, so the retry does not pay for them again.
 */
import type { TokenUsage } from '../../../schemas/common.js';
import { EnrichedDocument } from '../../../schemas/enriched-document.js';
import { Label } from '../../../schemas/label.js';
import type { Pair } from '../../../schemas/pair.js';
import type { OutMessage } from '../../adapters/kafka/client.js';
import type { Teacher, TeacherReply } from '../../adapters/openai/teacher.js';
import type { CachedLabel, LabelCache, LabelCacheKey } from '../../adapters/redis/label-cache.js';
import type { RateLimiter } from '../../adapters/redis/rate-limit.js';
import type { Topics } from '../../config.js';
import { decodeRecord, summariseIssues } from '../../core/decode.js';
import { labelFromLevelProbs, parseTeacherAnswer } from '../../core/teacher-answer.js';
import { buildTeacherCompletionPrompt, buildTeacherPrompt, DEFAULT_PROMPT_LIMITS, type PromptLimits, type TeacherPrompt } from '../../core/teacher-prompt.js';
import type { DeadLetterCode } from '../../../schemas/dead-letter.js';
import { deadLetterCodeOf, describeError, isPinrichError, PinrichError, type ErrorCode } from '../../errors.js';
import type { Clock } from '../../runtime/clock.js';
import { createLimit } from '../../runtime/limit.js';
import type { Logger } from '../../runtime/log.js';
import { sleep, withRetries, type RetryPolicy } from '../../runtime/retry.js';
import type { InRecord, Rejection, Stage, StageResult } from '../../runtime/stage.js';
import type { DocumentReader } from './ports.js';

export interface ScoreStageDeps {
  teacher: Teacher;
  cache: LabelCache;
  /** Where the enrich worker keeps each pin's last published document (JSON), or null. */
  documents: Pick<DocumentReader, 'getDocument'> & Partial<Pick<DocumentReader, 'stateReady'>>;
  limiter: RateLimiter;
  retry: RetryPolicy;
  /** Pins whose pairs are at the teacher at once, across all partitions of this instance. */
  concurrency: number;
  /** Reads of a missing document before its pairs are dead-lettered (at least 1). */
  docMaxAttempts: number;
  /** Wait before the 2nd read of a missing document; doubles per read. */
  docRetryBaseMs: number;
  /** Tries per pair when the answer is not a level (2: exactly one retry, then the pair is dead-lettered). */
  answerAttempts?: number;
  maxRecordBytes: number;
  topics: Topics;
  clock: Clock;
  log: Logger;
  promptLimits?: PromptLimits;
  /** How often to heartbeat the group while a batch is at the model. */
  heartbeatMs?: number;
}

export interface ScoreStats {
  pairs: number;
  labels: number;
  cacheHits: number;
  modelCalls: number;
  /** Second tries after an answer that was not a level. */
  answerRetries: number;
  /** Extra reads of documents that were not there yet. */
  docRetries: number;
  /** Label cache reads repeated right before a model call (the pin's lookup was older than RECHECK_AFTER_MS). */
  cacheRechecks: number;
  hardOnly: number;
  promptTokens: number;
  cachedPromptTokens: number;
  /** Milliseconds spent in model calls (sum over calls, answered or not): / modelCalls = the latency this worker sees. */
  modelMs: number;
  /** Milliseconds pins held an in-flight slot (sum over pins): / (concurrency x time) = how full the slots were kept. */
  slotMs: number;
  rejectedByCode: Record<string, number>;
}

type Scored = { ok: true; entry: CachedLabel; cached: boolean } | { ok: false; code: DeadLetterCode; reason: string };

interface PairJob {
  record: InRecord;
  pair: Pair;
  result?: { ok: true; doc: EnrichedDocument; prompt: TeacherPrompt; scored: Scored } | { ok: false; code: DeadLetterCode; reason: string };
}

/**
 * Errors of one model call that condemn only that pair; anything else fails the batch. An
 * outage (unreachable, 429, timeouts: see isModelOutage) is deliberately not here: it fails
 * the batch, which the worker retries with its offsets held, so pairs wait out the outage
 * instead of being dead-lettered as model_unavailable.
 */
const PAIR_ERRORS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'model_rejected_request',
  'model_answer_unparseable',
  'model_server_error',
]);

const ZERO_USAGE: TokenUsage = Object.freeze({ prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cached_prompt_tokens: 0 });

export function createScoreStage(deps: ScoreStageDeps): Stage & { stats(): ScoreStats } {
  const { teacher, cache, documents, limiter, retry, clock, log } = deps;
  const limit = createLimit(deps.concurrency);
  /**
   * Pins that have read their document and wait for a slot, at most as many as there are slots.
   * Without this window a batch read and parsed every document and built every prompt before
   * its first model call: one burst of work that held the event loop ~200 ms per 1,000-pair
   * batch while the answers of the calls in flight waited (the 200 ms server's slots idle).
   */
  const ahead = createLimit(deps.concurrency);
  const answerAttempts = Math.max(1, deps.answerAttempts ?? 2);
  const limits = deps.promptLimits ?? DEFAULT_PROMPT_LIMITS;
  const params = teacher.params;
  // The completions and classify teachers take the plain-text rendering (its own prompt version and cache keys).
  const buildPrompt = teacher.api === 'completions' || teacher.api === 'classify' ? buildTeacherCompletionPrompt : buildTeacherPrompt;
  // A constrained answer may differ from an unconstrained one: the constraint is part of the key.
  const paramsTag = `t${params.temperature}-m${params.max_tokens}-k${params.top_logprobs}${params.constrain && params.constrain !== 'none' ? `-c${params.constrain}` : ''}${teacher.api === 'classify' ? '-classify' : ''}`;
  const stats: ScoreStats = {
    pairs: 0,
    labels: 0,
    cacheHits: 0,
    modelCalls: 0,
    answerRetries: 0,
    docRetries: 0,
    cacheRechecks: 0,
    hardOnly: 0,
    promptTokens: 0,
    cachedPromptTokens: 0,
    modelMs: 0,
    slotMs: 0,
    rejectedByCode: {},
  };
  /** Model calls in progress in this instance, by cache key: concurrent duplicates wait for them. */
  const inflight = new Map<string, Promise<Scored>>();
  const cacheKey = (prompt: TeacherPrompt): LabelCacheKey => ({ model: teacher.model, promptVersion: prompt.version, params: paramsTag, promptHash: prompt.hash });

  type DocLoad = { ok: true; doc: EnrichedDocument } | { ok: false; code: DeadLetterCode; reason: string };
  const docAttempts = Math.max(1, deps.docMaxAttempts);

  /**
   * Reads `from` to `to` of the pin's document, waiting a little before each read after the
   * first (a pair may have been mined from engagement a moment before the enrich flush published
   * the document), a bounded time, so the partition keeps moving. Undefined: not there after
   * read `to`, and reads are left for later.
   */
  async function loadDocument(pinId: string, signal: AbortSignal, from: number, to = docAttempts): Promise<DocLoad | undefined> {
    for (let attempt = from; attempt <= to; attempt++) {
      if (attempt > 1) {
        stats.docRetries++;
        await sleep(deps.docRetryBaseMs * 2 ** (attempt - 2), signal);
      }
      const raw = await documents.getDocument(pinId);
      if (raw === null && documents.stateReady && !(await documents.stateReady())) {
        // Redis lost the enrich state: "no document" means nothing then. Hold the batch (the
        // worker retries it, offsets held) rather than dead-letter pairs as doc_not_found.
        throw new PinrichError('state_unavailable', 'enrich state is missing from Redis (state marker absent); waiting for `pinrich enrich rebuild` before reading documents', { retriable: true });
      }
      if (raw === null) continue;
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch (err) {
        return { ok: false, code: 'processing_error', reason: `stored document of ${pinId} is not JSON: ${describeError(err)}` };
      }
      const parsed = EnrichedDocument.safeParse(json);
      if (!parsed.success) return { ok: false, code: 'processing_error', reason: `stored document of ${pinId} is invalid: ${summariseIssues(parsed.error.issues)}` };
      return { ok: true, doc: parsed.data };
    }
    if (to < docAttempts) return undefined;
    return { ok: false, code: 'doc_not_found', reason: `no enriched document for pin ${pinId} after ${docAttempts} reads (not enriched yet, unknown or deleted)` };
  }

  /** One pair at the teacher: the retry policy per call, one more call for a non-level answer. */
  async function callTeacher(prompt: TeacherPrompt, signal: AbortSignal): Promise<Scored> {
    // ~4 characters per token, plus the output token: a fair estimate for the token limit.
    const estimate = Math.ceil((prompt.text?.length ?? prompt.messages.reduce((n, m) => n + m.content.length, 0)) / 4) + params.max_tokens;
    const usage: TokenUsage = { ...ZERO_USAGE };
    let lastReason = '';
    for (let attempt = 1; attempt <= answerAttempts; attempt++) {
      if (attempt > 1) stats.answerRetries++;
      let reply: TeacherReply;
      try {
        ({ value: reply } = await withRetries(
          retry,
          async (attemptSignal) => {
            stats.modelCalls++;
            const started = performance.now();
            try {
              return await teacher.score(prompt, { signal: attemptSignal });
            } finally {
              stats.modelMs += performance.now() - started;
            }
          },
          // The shared rate limit is back-pressure: waited for before the attempt's timeout starts.
          { signal, beforeAttempt: (waitSignal) => limiter.acquire(estimate, waitSignal), onRetry: (err, n, delayMs) => log.debug('teacher retry', { attempt: n, delayMs: Math.round(delayMs), error: describeError(err) }) },
        ));
      } catch (err) {
        if (signal.aborted || !isPinrichError(err) || !PAIR_ERRORS.has(err.code)) throw err;
        if (err.code === 'model_answer_unparseable') {
          lastReason = describeError(err);
          continue;
        }
        return { ok: false, code: deadLetterCodeOf(err), reason: `teacher call failed: ${describeError(err)}`.slice(0, 1_000) };
      }
      if (reply.usage) {
        usage.prompt_tokens += reply.usage.prompt_tokens;
        usage.completion_tokens += reply.usage.completion_tokens;
        usage.total_tokens += reply.usage.total_tokens;
        usage.cached_prompt_tokens += reply.usage.cached_prompt_tokens;
        stats.promptTokens += reply.usage.prompt_tokens;
        stats.cachedPromptTokens += reply.usage.cached_prompt_tokens;
      }
      const parsed = reply.levelProbs
        ? labelFromLevelProbs(reply.levelProbs)
        : parseTeacherAnswer({ content: reply.content, topLogprobs: reply.topLogprobs, positions: reply.positions, constrained: reply.constrained });
      if (!parsed.ok) {
        lastReason = parsed.reason;
        log.debug('teacher answer is not a level', { attempt, reason: parsed.reason });
        continue;
      }
      return {
        ok: true,
        cached: false,
        entry: {
          label: parsed.label,
          distribution: parsed.distribution,
          expected_score: parsed.expectedScore,
          label_source: parsed.source,
          // What this label cost: every call it took (an unparseable first answer included).
          usage,
          latency_ms: Math.round(reply.latencyMs * 1000) / 1000,
          labeled_at: new Date(clock.now()).toISOString(),
        },
      };
    }
    return { ok: false, code: 'model_answer_unparseable', reason: `${lastReason} (after ${answerAttempts} tries)`.slice(0, 1_000) };
  }

  /**
   * Every pair of one pin: document (read in the look-ahead window), prompts, then — once the
   * pin has an in-flight slot — the cache, then the misses one after another. The cache is read
   * in the slot, not before: a pin can queue for a slot longer than RECHECK_AFTER_MS, and a
   * lookup made before the wait would have to be repeated (one more Redis round trip per pair)
   * right before the first call.
   */
  async function scorePin(jobs: PairJob[], signal: AbortSignal, done: Map<string, CachedLabel>): Promise<void> {
    const pinId = jobs[0]!.pair.pin_id;
    let work: Promise<void> | undefined;
    // The first read in the look-ahead window, which the pin leaves once it holds its slot; a
    // document that is not there yet is waited for outside it, so it holds no one up.
    const first = await ahead(async () => {
      const loaded = await loadDocument(pinId, signal, 1, 1);
      if (loaded?.ok) {
        let inSlot!: () => void;
        const entered = new Promise<void>((resolve) => (inSlot = resolve));
        work = scoreInSlot(jobs, loaded.doc, signal, done, inSlot);
        await Promise.race([entered, work]);
      }
      return loaded;
    });
    // Reads 2.. up to the last one always end in a document or a verdict.
    const loaded = first ?? (await loadDocument(pinId, signal, 2))!;
    if (!loaded.ok) {
      for (const job of jobs) job.result = loaded;
      return;
    }
    await (work ?? scoreInSlot(jobs, loaded.doc, signal, done, () => {}));
  }

  /** The pin's pairs in an in-flight slot: the label cache, then the misses at the teacher. */
  async function scoreInSlot(jobs: PairJob[], doc: EnrichedDocument, signal: AbortSignal, done: Map<string, CachedLabel>, inSlot: () => void): Promise<void> {
    const prompts = jobs.map((job) => buildPrompt(doc, job.pair.query, limits));
    // Cache writes of this pin's labels run behind its next calls and are awaited once it has
    // left its slot (the slot goes to the next pin a Redis round trip sooner), before it is done.
    const puts: Array<Promise<void>> = [];
    try {
      await limit(async () => {
        const heldFrom = performance.now();
        inSlot();
        try {
          const hits = await cache.getMany(prompts.map(cacheKey));
          const lookedUpAt = performance.now();
          for (const [i, job] of jobs.entries()) {
            const prompt = prompts[i]!;
            job.result = { ok: true, doc, prompt, scored: await scoreOne(prompt, hits[i] ?? null, signal, done, lookedUpAt, puts) };
          }
        } finally {
          stats.slotMs += performance.now() - heldFrom;
        }
      });
    } finally {
      const failed = (await Promise.allSettled(puts)).find((p): p is PromiseRejectedResult => p.status === 'rejected');
      if (failed) throw failed.reason;
    }
  }

  /** A batch-level cache lookup younger than this is not repeated right before the model call. */
  const RECHECK_AFTER_MS = 250;

  /**
   * One prompt: the cache first, then the model. A miss is checked again — in this instance's
   * in-flight calls and in Redis — right before the call: the same records can be handled twice
   * at once (a rebalance hands a partition over while the old owner is still at the model, or a
   * retried batch), and a second call would pay twice for one label. Across instances the
   * window is the length of one call; a lock would cost more than the rare duplicate call.
   */
  async function scoreOne(
    prompt: TeacherPrompt,
    hit: CachedLabel | null,
    signal: AbortSignal,
    done: Map<string, CachedLabel>,
    lookedUpAt: number,
    puts: Array<Promise<void>>,
  ): Promise<Scored> {
    const key = cacheKey(prompt);
    const id = `${key.model}\n${key.promptVersion}\n${key.params}\n${key.promptHash}`;
    // A duplicate pair earlier in this batch (or another pin with identical text) already paid.
    const known = hit ?? done.get(id);
    if (known) return { ok: true, entry: known, cached: true };
    const pending = inflight.get(id);
    if (pending) {
      const other = await pending;
      if (other.ok) return { ok: true, entry: other.entry, cached: true };
    }
    // The pin's lookup is still fresh unless it waited for an in-flight slot (or earlier pairs).
    if (performance.now() - lookedUpAt > RECHECK_AFTER_MS) {
      stats.cacheRechecks++;
      const [fresh] = await cache.getMany([key]);
      if (fresh) return { ok: true, entry: fresh, cached: true };
    }

    const call = (async (): Promise<Scored> => {
      const scored = await callTeacher(prompt, signal);
      if (scored.ok) {
        puts.push(cache.put(key, scored.entry));
        done.set(id, scored.entry);
      }
      return scored;
    })();
    inflight.set(id, call);
    try {
      return await call;
    } finally {
      inflight.delete(id);
    }
  }

  function labelOf(job: PairJob, doc: EnrichedDocument, prompt: TeacherPrompt, entry: CachedLabel, cached: boolean, now: string): Label {
    return {
      schema: 'label',
      schema_version: 1,
      pair_id: job.pair.pair_id,
      pin_id: job.pair.pin_id,
      query: job.pair.query,
      language: job.pair.language === 'und' ? doc.language : job.pair.language,
      label: entry.label,
      distribution: entry.distribution,
      expected_score: entry.expected_score,
      label_source: entry.label_source,
      teacher: {
        model: teacher.model,
        prompt_version: prompt.version,
        prompt_hash: prompt.hash,
        temperature: params.temperature,
        max_tokens: params.max_tokens,
        top_logprobs: params.top_logprobs,
      },
      doc_version: doc.version,
      doc_hash: doc.content_hash,
      // A cache hit cost nothing: summing usage over labels gives what the teacher was paid.
      usage: cached ? { ...ZERO_USAGE } : entry.usage,
      latency_ms: cached ? 0 : entry.latency_ms,
      cached,
      labeled_at: now,
    };
  }

  return {
    name: 'score',
    stats: () => ({ ...stats, rejectedByCode: { ...stats.rejectedByCode } }),
    async handle(batch, ctx): Promise<StageResult> {
      const rejected: Rejection[] = [];
      const reject = (record: InRecord, code: DeadLetterCode, reason: string) => {
        rejected.push({ record, code, reason });
        stats.rejectedByCode[code] = (stats.rejectedByCode[code] ?? 0) + 1;
      };
      const jobs: PairJob[] = [];
      const byPin = new Map<string, PairJob[]>();
      for (const record of batch) {
        const decoded = decodeRecord('pair', record.value, deps.maxRecordBytes);
        if (!decoded.ok) {
          reject(record, decoded.code, decoded.reason);
          continue;
        }
        stats.pairs++;
        const job: PairJob = { record, pair: decoded.value };
        jobs.push(job);
        let list = byPin.get(job.pair.pin_id);
        if (!list) byPin.set(job.pair.pin_id, (list = []));
        list.push(job);
      }

      // Model calls and document waits can outlast the session timeout: keep heartbeating.
      const beat = setInterval(() => void ctx.heartbeat().catch(() => {}), deps.heartbeatMs ?? 3_000);
      try {
        const done = new Map<string, CachedLabel>();
        const settled = await Promise.allSettled([...byPin.values()].map((pinJobs) => scorePin(pinJobs, ctx.signal, done)));
        // Let every pin finish (their labels are cached) before failing the batch for a retry.
        const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
        if (failed) throw failed.reason;
      } finally {
        clearInterval(beat);
      }

      const now = new Date(clock.now()).toISOString();
      const outputs: OutMessage[] = [];
      for (const job of jobs) {
        const r = job.result!;
        if (!r.ok) {
          reject(job.record, r.code, r.reason);
          continue;
        }
        if (!r.scored.ok) {
          reject(job.record, r.scored.code, r.scored.reason);
          continue;
        }
        const label = labelOf(job, r.doc, r.prompt, r.scored.entry, r.scored.cached, now);
        // Guard the contract: a label consumers would reject must not reach the topic.
        const checked = Label.safeParse(label);
        if (!checked.success) {
          log.error('built an invalid label; dead-lettering the pair', { pair_id: job.pair.pair_id, issues: summariseIssues(checked.error.issues) });
          reject(job.record, 'processing_error', `label failed its schema: ${summariseIssues(checked.error.issues)}`);
          continue;
        }
        stats.labels++;
        if (r.scored.cached) stats.cacheHits++;
        if (label.label_source === 'hard_only') stats.hardOnly++;
        outputs.push({ topic: deps.topics.labels, key: label.pin_id, value: JSON.stringify(label) });
      }
      return { outputs, rejected };
    },
    async close() {},
  };
}
