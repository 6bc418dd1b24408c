import { describe, expect, it } from 'vitest';
import { PinrichError } from '../../src/errors.js';
import { backoffDelay, withRetries } from '../../src/runtime/retry.js';
import { retryAfterMs } from '../../src/adapters/openai/client.js';
import { isTransientKafkaError, untilKafkaAnswers } from '../../src/adapters/kafka/transient.js';
import { createLogger } from '../../src/runtime/log.js';
import {
  KafkaJSConnectionError,
  KafkaJSGroupCoordinatorNotFound,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
  KafkaJSSASLAuthenticationError,
} from 'kafkajs';

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

  it('starts the attempt timeout after beforeAttempt: a long wait for a rate limit does not spend the request timeout', async () => {
    const waits: number[] = [];
    const r = await withRetries(
      { ...policy, maxAttempts: 1, timeoutMs: 10 },
      async (signal) => (signal.aborted ? 'spent' : 'fresh'),
      { beforeAttempt: (_signal, attempt) => new Promise<void>((resolve) => (waits.push(attempt), setTimeout(resolve, 60))) },
    );
    expect(r.value).toBe('fresh');
    expect(waits).toEqual([1]);
  });

  it('beforeAttempt runs before every attempt, and only the caller signal ends its wait', async () => {
    const waits: number[] = [];
    let n = 0;
    await withRetries(
      policy,
      async () => {
        if (++n < 3) throw new PinrichError('model_server_error', '500', { retriable: true });
        return 'ok';
      },
      { beforeAttempt: async (signal, attempt) => void waits.push(attempt + (signal.aborted ? 100 : 0)) },
    );
    expect(waits).toEqual([1, 2, 3]);
    const controller = new AbortController();
    const pending = withRetries(policy, async () => 'never', { signal: controller.signal, beforeAttempt: (signal) => new Promise((_r, reject) => signal.addEventListener('abort', () => reject(new Error('stopped')))) });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: 'aborted' });
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

describe('waiting out an unreachable Kafka cluster', () => {
  const warnings: string[] = [];
  const log = createLogger('warn', {}, (line) => warnings.push(line));
  // kafkajs' type declarations give its error classes no constructor arguments; the JS takes them.
  const make = (cls: unknown, ...args: unknown[]): Error => new (cls as new (...a: unknown[]) => Error)(...args);
  const noBroker = () => make(KafkaJSConnectionError, 'connect ECONNREFUSED 127.0.0.1:9');

  it('classifies by the kafkajs error chain, not by the retriable flag alone', () => {
    // What kafkajs throws during a broker restart: some of it is marked non-retriable.
    expect(isTransientKafkaError(make(KafkaJSGroupCoordinatorNotFound, 'Failed to find group coordinator'))).toBe(true);
    expect(isTransientKafkaError(noBroker())).toBe(true);
    expect(isTransientKafkaError(make(KafkaJSNumberOfRetriesExceeded, noBroker(), { retryCount: 8, retryTime: 10_000 }))).toBe(true);
    expect(isTransientKafkaError(make(KafkaJSProtocolError, { type: 'LEADER_NOT_AVAILABLE', code: 5, retriable: true, message: 'no leader' }))).toBe(true);
    // What waiting does not fix.
    expect(isTransientKafkaError(make(KafkaJSSASLAuthenticationError, 'SASL PLAIN authentication failed'))).toBe(false);
    expect(isTransientKafkaError(make(KafkaJSProtocolError, { type: 'TOPIC_AUTHORIZATION_FAILED', code: 29, retriable: false, message: 'not authorized' }))).toBe(false);
    expect(isTransientKafkaError(make(KafkaJSNonRetriableError, 'Cannot subscribe to topic while consumer is running'))).toBe(false);
    expect(isTransientKafkaError(new Error('ECONNREFUSED'))).toBe(false);
    expect(isTransientKafkaError(new PinrichError('state_unavailable', 'Redis is unreachable', { retriable: true }))).toBe(false);
  });

  it('retries transient errors until the call succeeds', async () => {
    let calls = 0;
    const value = await untilKafkaAnswers(
      'connect',
      async () => {
        if (++calls < 3) throw make(KafkaJSGroupCoordinatorNotFound, 'Failed to find group coordinator');
        return 'joined';
      },
      { log, timeoutMs: 30_000 },
    );
    expect({ value, calls }).toEqual({ value: 'joined', calls: 3 });
    // Each wait is logged, so an operator sees why the worker is not up yet.
    expect(warnings.filter((w) => w.includes('connect: Kafka is unreachable; waiting'))).toHaveLength(2);
  });

  it('throws other errors at once, naming what it was doing', async () => {
    let calls = 0;
    const failing = untilKafkaAnswers(
      'producer: connect',
      async () => {
        calls++;
        throw make(KafkaJSSASLAuthenticationError, 'SASL PLAIN authentication failed');
      },
      { log, timeoutMs: 30_000 },
    );
    await expect(failing).rejects.toThrow('producer: connect: failed: SASL PLAIN authentication failed');
    expect(calls).toBe(1);
  });

  it('gives up after its time, with a hint when a topic is missing', async () => {
    let calls = 0;
    const missing = make(KafkaJSProtocolError, { type: 'UNKNOWN_TOPIC_OR_PARTITION', code: 3, retriable: true, message: 'This server does not host this topic-partition' });
    const failing = untilKafkaAnswers(
      'subscribe to pins.events',
      async () => {
        calls++;
        throw make(KafkaJSNumberOfRetriesExceeded, missing, { retryCount: 8, retryTime: 1 });
      },
      { log, timeoutMs: 1_000 },
    );
    await expect(failing).rejects.toThrow(/subscribe to pins\.events: Kafka did not answer for 1 s: .*host this topic-partition \(a topic is missing: run `pinrich topics create`\)/);
    expect(calls).toBeGreaterThanOrEqual(2);
  });
});
