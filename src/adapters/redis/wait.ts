/**
 * Waiting out an unreachable Redis at start-up, the way `untilKafkaAnswers` waits out Kafka.
 *
 * ioredis queues a command while it reconnects and rejects it only after
 * `maxRetriesPerRequest` reconnects (about 25 s with our retry strategy), so a bare PING is
 * silent for that long and then gives a message without the address. Here the first warning
 * comes after `reportAfterMs` (2 s), naming the address (password masked) and the last
 * connection error, and the wait goes on, with warnings at growing intervals, until
 * `timeoutMs`: a Redis that is restarting, failing over or still booting is waited for, not
 * given up on.
 */
import { PinrichError, describeError } from '../../errors.js';
import type { Logger } from '../../runtime/log.js';
import { sleep } from '../../runtime/retry.js';

/** What this needs from a client: PING and its error events (ioredis Redis and Cluster both). */
export interface Pingable {
  ping(): Promise<unknown>;
  on(event: 'error', listener: (err: Error) => void): unknown;
  off(event: 'error', listener: (err: Error) => void): unknown;
}

/**
 * A Redis URL (or a comma-separated list of them, for cluster seeds) with passwords masked,
 * fit for logs: `redis://:secret@host:6379` -> `redis://:***@host:6379`.
 */
export function redactRedisAddress(urls: string): string {
  return urls
    .split(',')
    .map((raw) => {
      const u = raw.trim();
      // A bare host:port seed (possibly user:pw@host:port) is no URL: "user:" would parse as a scheme.
      if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(u)) return u.replace(/^[^@]*@/, '***@');
      try {
        const parsed = new URL(u);
        if (parsed.password) parsed.password = '***';
        return parsed.toString().replace(/\/$/, '');
      } catch {
        // Unparseable: mask anything before an '@'.
        return u.replace(/^[^@]*@/, '***@');
      }
    })
    .join(',');
}

/** Options of {@link untilRedisAnswers}. */
export interface RedisWaitOptions {
  log: Logger;
  /** Give up (throw) after this long without an answer. */
  timeoutMs: number;
  /** First warning after this long without an answer. Default 2,000 ms. */
  reportAfterMs?: number;
  signal?: AbortSignal;
}

/** Redis errors that waiting cannot fix: a wrong password, a missing ACL, a refused command. */
function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError';
}

/**
 * Resolves once Redis answers PING. Logs a warning naming `address` (redacted) within
 * `reportAfterMs` of not getting an answer, and again at growing intervals while it waits.
 *
 * @throws PinrichError `state_unavailable` (retriable) after `timeoutMs` without an answer, or
 *   at once when Redis answers with an error (e.g. WRONGPASS), naming the address.
 */
export async function untilRedisAnswers(redis: Pingable, address: string, opts: RedisWaitOptions): Promise<void> {
  const shown = redactRedisAddress(address);
  const started = Date.now();
  const deadline = started + opts.timeoutMs;
  let lastError: string | undefined;
  const onError = (err: Error) => {
    lastError = describeError(err);
  };
  redis.on('error', onError);
  try {
    let nextReport = started + (opts.reportAfterMs ?? 2_000);
    let reports = 0;
    for (;;) {
      // One PING in flight at a time: ioredis sends it as soon as the connection is back.
      let settled: { ok: true } | { ok: false; err: unknown } | undefined;
      const ping = redis.ping().then(
        () => (settled = { ok: true }),
        (err: unknown) => (settled = { ok: false, err }),
      );
      while (!settled) {
        const now = Date.now();
        const waitMs = Math.max(0, Math.min(nextReport, deadline) - now);
        await Promise.race([ping, sleep(waitMs, opts.signal)]);
        if (settled) break;
        if (opts.signal?.aborted) throw new PinrichError('aborted', `stopped while waiting for Redis at ${shown}`);
        const waited = Date.now() - started;
        if (Date.now() >= deadline) {
          throw new PinrichError('state_unavailable', `Redis at ${shown} did not answer for ${Math.round(waited / 1000)} s${lastError ? `: ${lastError}` : ''}`, {
            retriable: true,
          });
        }
        if (Date.now() >= nextReport) {
          reports++;
          opts.log.warn(`Redis at ${shown} is unreachable; waiting`, { waitedMs: waited, error: lastError ?? 'no answer to PING' });
          // 2 s, then 5, 10, 20, 30, 30 … between warnings: visible at once, not a flood.
          nextReport = Date.now() + Math.min(30_000, 5_000 * 2 ** (reports - 1));
        }
      }
      if (settled.ok) {
        if (reports > 0) opts.log.info(`Redis at ${shown} answers`, { waitedMs: Date.now() - started });
        return;
      }
      if (isReplyError(settled.err)) {
        throw new PinrichError('state_unavailable', `Redis at ${shown} refused PING: ${describeError(settled.err)}`, { cause: settled.err });
      }
      // ioredis gave up on this PING (MaxRetriesPerRequestError, closed connection): send another.
      lastError = describeError(settled.err);
      await sleep(Math.min(500, Math.max(0, deadline - Date.now())), opts.signal);
    }
  } finally {
    redis.off('error', onError);
  }
}
