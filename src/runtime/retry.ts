/**
 * The one retry policy for model calls: per-attempt timeout, exponential backoff with full
 * jitter, Retry-After honoured (capped), and only errors marked retriable are retried
 * (429, 5xx, timeouts, connection errors). Everything else fails at once.
 */
import type { Config } from '../config.js';
import { isPinrichError, PinrichError } from '../errors.js';

export interface RetryPolicy {
  maxAttempts: number;
  baseMs: number;
  maxMs: number;
  /** Longest Retry-After we are willing to wait. */
  maxRetryAfterMs?: number;
  /** Per-attempt timeout; the attempt's AbortSignal fires when it passes. */
  timeoutMs: number;
}

/** The model-call retry policy from the config (shared by the caption and score workers). */
export function retryPolicyOf(config: Config): RetryPolicy {
  return {
    maxAttempts: config.modelMaxAttempts,
    baseMs: config.modelBackoffBaseMs,
    maxMs: config.modelBackoffMaxMs,
    timeoutMs: config.modelTimeoutMs,
  };
}

/** Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(attempt-1))]. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  return random() * cap;
}

/** Sleep that wakes early (rejecting) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new PinrichError('aborted', 'aborted'));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new PinrichError('aborted', 'aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Options of {@link withRetries}. */
export interface RetryOptions {
  /** The caller's cancellation (shutdown, revoked partition): never retried. */
  signal?: AbortSignal;
  /**
   * Back-pressure to wait out before each attempt, e.g. a shared rate limit. It runs under the
   * caller's signal only: the attempt's timeout starts after it, when the request itself starts,
   * so a long queue behind a rate limit never turns into a timed-out (or aborted) request.
   */
  beforeAttempt?: (signal: AbortSignal, attempt: number) => Promise<void>;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  random?: () => number;
}

/**
 * Run `fn` under the policy. `fn` gets a signal combining the caller's and the attempt timeout,
 * whose clock starts when `fn` is called (after `beforeAttempt`).
 * Throws the last error (a PinrichError when the adapter classified it).
 */
export async function withRetries<T>(
  policy: RetryPolicy,
  fn: (signal: AbortSignal, attempt: number) => Promise<T>,
  opts: RetryOptions = {},
): Promise<{ value: T; attempts: number }> {
  // Waiting is not failing: an abort of the caller's signal is the only way out of this wait.
  const waitSignal = opts.signal ?? new AbortController().signal;
  for (let attempt = 1; ; attempt++) {
    if (opts.beforeAttempt) {
      try {
        await opts.beforeAttempt(waitSignal, attempt);
      } catch (err) {
        if (opts.signal?.aborted) throw new PinrichError('aborted', 'aborted', { cause: err });
        throw err;
      }
    }
    const attemptSignal = attemptAbort(policy.timeoutMs, opts.signal);
    try {
      const value = await fn(attemptSignal.signal, attempt);
      return { value, attempts: attempt };
    } catch (err) {
      attemptSignal.release();
      if (opts.signal?.aborted) throw new PinrichError('aborted', 'aborted', { cause: err });
      const retriable = isPinrichError(err) && err.retriable;
      if (!retriable || attempt >= policy.maxAttempts) throw err;
      const jitter = backoffDelay(attempt, policy.baseMs, policy.maxMs, opts.random);
      const delay = err.retryAfterMs !== undefined ? Math.min(Math.max(err.retryAfterMs, jitter), policy.maxRetryAfterMs ?? 60_000) : jitter;
      opts.onRetry?.(err, attempt, delay);
      await sleep(delay, opts.signal);
    } finally {
      attemptSignal.release();
    }
  }
}

/**
 * One attempt's signal: aborted by its timeout (reason: a TimeoutError DOMException, as
 * AbortSignal.timeout gives) or by the caller's signal. Released when the attempt ends: the
 * timer is cleared and the listener on the caller's long-lived signal removed. AbortSignal.any
 * and AbortSignal.timeout cost more per call (weak dependents, an unref'd timer each) and keep
 * every finished attempt tied to the caller's signal until GC — with listeners the HTTP client
 * added to it, all fired at once when the worker's signal aborts at shutdown.
 */
function attemptAbort(timeoutMs: number, parent?: AbortSignal): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), timeoutMs);
  // Like AbortSignal.timeout's: an attempt in flight does not keep the process alive by itself.
  timer.unref();
  const onAbort = () => controller.abort(parent!.reason);
  if (parent?.aborted) controller.abort(parent.reason);
  else parent?.addEventListener('abort', onAbort, { once: true });
  return {
    signal: controller.signal,
    release: () => {
      clearTimeout(timer);
      parent?.removeEventListener('abort', onAbort);
    },
  };
}
