import { describe, expect, it } from 'vitest';
import { PinrichError } from '../../src/errors.js';
import { backoffDelay, withRetries } from '../../src/runtime/retry.js';
import { retryAfterMs } from '../../src/adapters/openai/client.js';

const policy = { maxAttempts: 4, baseMs: 1, maxMs: 4, timeoutMs: 1_000 };

describe('retry policy', () => {
  it('retries retriable errors and returns the attempt count', async () => {
    let n = 0;
    const r = await withRetries(policy, async () => {
      if (++n < 3) throw new PinrichError('model_server_error', '500', { retriable: true });
      return 'ok';
    });
    expect(r).toEqual({ value: 'ok', attempts: 3 });
  });

  it('does not retry non-retriable errors', async () => {
    let n = 0;
    await expect(
      withRetries(policy, async () => {
        n++;
        throw new PinrichError('model_rejected_request', '400');
      }),
    ).rejects.toMatchObject({ code: 'model_rejected_request' });
    expect(n).toBe(1);
  });

  it('gives up after maxAttempts', async () => {
    let n = 0;
    await expect(
      withRetries(policy, async () => {
        n++;
        throw new PinrichError('model_server_error', '503', { retriable: true });
      }),
    ).rejects.toMatchObject({ code: 'model_server_error' });
    expect(n).toBe(4);
  });

  it('waits at least Retry-After', async () => {
    const delays: number[] = [];
    let n = 0;
    await withRetries(
      policy,
      async () => {
        if (++n === 1) throw new PinrichError('model_rate_limited', '429', { retriable: true, retryAfterMs: 30 });
        return 1;
      },
      { onRetry: (_e, _a, d) => delays.push(d) },
    );
    expect(delays[0]).toBeGreaterThanOrEqual(30);
  });

  it('gives each attempt a signal that fires at the timeout', async () => {
    const start = Date.now();
    await expect(
      withRetries({ ...policy, maxAttempts: 1, timeoutMs: 50 }, (signal) => new Promise((_r, reject) => signal.addEventListener('abort', () => reject(new PinrichError('model_timeout', 't'))))),
    ).rejects.toMatchObject({ code: 'model_timeout' });
    expect(Date.now() - start).toBeGreaterThanOrEqual(45);
  });

  it('backs off exponentially with full jitter, capped', () => {
    expect(backoffDelay(1, 100, 1_000, () => 1)).toBe(100);
    expect(backoffDelay(3, 100, 1_000, () => 1)).toBe(400);
    expect(backoffDelay(10, 100, 1_000, () => 1)).toBe(1_000);
    expect(backoffDelay(3, 100, 1_000, () => 0)).toBe(0);
  });

  it('parses Retry-After in seconds, ms and HTTP dates', () => {
    expect(retryAfterMs(new Headers({ 'retry-after': '2' }))).toBe(2_000);
    expect(retryAfterMs(new Headers({ 'retry-after-ms': '150' }))).toBe(150);
    expect(retryAfterMs(new Headers({ 'retry-after': new Date(10_000).toUTCString() }), 5_000)).toBe(5_000);
    expect(retryAfterMs(new Headers({}))).toBeUndefined();
  });
});
