/**
 * untilRedisAnswers (src/adapters/redis/wait.ts) with a scripted client: it warns early with the
 * address (password masked), keeps waiting, gives up with a typed error after its timeout, and
 * does not wait out an error that waiting cannot fix. Short real timers (tens of ms) keep the
 * fake honest about ordering without fake clocks.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { redactRedisAddress, untilRedisAnswers, type Pingable } from '../../src/adapters/redis/wait.js';
import type { Logger } from '../../src/runtime/log.js';

function recordingLogger(): { log: Logger; lines: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> } {
  const lines: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> = [];
  const log: Logger = {
    debug: (msg, fields) => lines.push({ level: 'debug', msg, fields }),
    info: (msg, fields) => lines.push({ level: 'info', msg, fields }),
    warn: (msg, fields) => lines.push({ level: 'warn', msg, fields }),
    error: (msg, fields) => lines.push({ level: 'error', msg, fields }),
    child: () => log,
  };
  return { log, lines };
}

/** A client whose PINGs hang until `answer()`; emits connection errors like ioredis. */
function scriptedRedis(): Pingable & { answer(): void; emitError(err: Error): void; pings: number } {
  const events = new EventEmitter();
  const waiting: Array<() => void> = [];
  const client = {
    pings: 0,
    ping: () => {
      client.pings++;
      return new Promise<unknown>((resolve) => waiting.push(() => resolve('PONG')));
    },
    on: (e: 'error', l: (err: Error) => void) => events.on(e, l),
    off: (e: 'error', l: (err: Error) => void) => events.off(e, l),
    answer: () => waiting.splice(0).forEach((w) => w()),
    emitError: (err: Error) => events.emit('error', err),
  };
  return client;
}

describe('untilRedisAnswers', () => {
  it('warns early, naming the address with the password masked and the last error, then returns once Redis answers', async () => {
    const redis = scriptedRedis();
    const { log, lines } = recordingLogger();
    const waiting = untilRedisAnswers(redis, 'redis://:hunter2@10.0.0.7:6380', { log, timeoutMs: 10_000, reportAfterMs: 20 });
    redis.emitError(new Error('connect ECONNREFUSED 10.0.0.7:6380'));
    await new Promise((r) => setTimeout(r, 80));
    expect(lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual(['Redis at redis://:***@10.0.0.7:6380 is unreachable; waiting']);
    expect(lines[0]!.fields?.error).toBe('connect ECONNREFUSED 10.0.0.7:6380');
    redis.answer();
    await waiting;
    expect(lines.at(-1)!.msg).toBe('Redis at redis://:***@10.0.0.7:6380 answers');
    expect(JSON.stringify(lines)).not.toContain('hunter2');
  });

  it('says nothing when Redis answers at once', async () => {
    const redis = scriptedRedis();
    const { log, lines } = recordingLogger();
    const waiting = untilRedisAnswers(redis, 'redis://127.0.0.1:6379', { log, timeoutMs: 10_000, reportAfterMs: 1_000 });
    redis.answer();
    await waiting;
    expect(lines).toEqual([]);
  });

  it('gives up after its timeout with state_unavailable naming the address', async () => {
    const redis = scriptedRedis();
    const { log } = recordingLogger();
    const waiting = untilRedisAnswers(redis, 'rediss://u:pw@cache.example:6380', { log, timeoutMs: 60, reportAfterMs: 20 });
    redis.emitError(new Error('getaddrinfo ENOTFOUND cache.example'));
    await expect(waiting).rejects.toMatchObject({
      code: 'state_unavailable',
      retriable: true,
      message: expect.stringMatching(/^Redis at rediss:\/\/u:\*\*\*@cache\.example:6380 did not answer for 0 s: getaddrinfo ENOTFOUND cache\.example$/),
    });
  });

  it('does not wait out an error reply (e.g. a wrong password)', async () => {
    const { log } = recordingLogger();
    const wrongPass = Object.assign(new Error('WRONGPASS invalid username-password pair'), { name: 'ReplyError' });
    const redis: Pingable = { ping: () => Promise.reject(wrongPass), on: () => undefined, off: () => undefined };
    await expect(untilRedisAnswers(redis, 'redis://:pw@h:1', { log, timeoutMs: 10_000 })).rejects.toMatchObject({
      code: 'state_unavailable',
      message: 'Redis at redis://:***@h:1 refused PING: WRONGPASS invalid username-password pair',
    });
  });

  it('stops waiting when its signal aborts, with code aborted', async () => {
    const redis = scriptedRedis();
    const { log } = recordingLogger();
    const abort = new AbortController();
    const waiting = untilRedisAnswers(redis, 'redis://h:1', { log, timeoutMs: 60_000, signal: abort.signal });
    setTimeout(() => abort.abort(), 20);
    await expect(waiting).rejects.toMatchObject({ code: 'aborted' });
  });

  it('sends a new PING when ioredis gives up on one, and returns when that one is answered', async () => {
    const { log } = recordingLogger();
    let calls = 0;
    const redis: Pingable = {
      ping: () => (++calls === 1 ? Promise.reject(new Error('Reached the max retries per request limit')) : Promise.resolve('PONG')),
      on: () => undefined,
      off: () => undefined,
    };
    await untilRedisAnswers(redis, 'redis://h:1', { log, timeoutMs: 10_000 });
    expect(calls).toBe(2);
  });
});

describe('redactRedisAddress', () => {
  it.each([
    ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379'],
    ['redis://:hunter2@h:6379', 'redis://:***@h:6379'],
    ['rediss://user:p%40ss@h:6380/2', 'rediss://user:***@h:6380/2'],
    ['redis://:a@h1:1,redis://:a@h2:2', 'redis://:***@h1:1,redis://:***@h2:2'],
    ['user:pw@h1:7000', '***@h1:7000'],
  ])('%s -> %s', (raw, shown) => {
    expect(redactRedisAddress(raw)).toBe(shown);
  });
});
