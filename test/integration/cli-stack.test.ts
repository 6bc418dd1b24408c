/**
 * The CLI finds the local stack by itself: after `pinrich stack up` (here: the stack global
 * setup started or reused), a command run with no PINRICH_* service variables talks to that
 * stack and says so in one line on stderr; a variable that is set wins, per variable. And an
 * unreachable Redis is named (password masked) within seconds instead of after ~25 s of silence.
 *
 * Every command runs as a real child process of `bin/pinrich.js`, as a user would run it.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, inject, it } from 'vitest';
import { freePort } from '../../src/stack/process.js';
import { runPinrich } from '../support/cli.js';

const stack = inject('stack');

/** The directory global setup's stackUp used (the same default as src/stack/index.ts). */
const stackDir = resolve(process.env.PINRICH_STACK_DIR || join(process.env.PINRICH_CACHE_DIR || join(homedir(), '.cache', 'pinrich'), 'stack'));

/** This process's environment without any PINRICH_* setting, as on a newcomer's shell. */
function bareEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('PINRICH_')) env[k] = v;
  return { ...env, PINRICH_STACK_DIR: stackDir, PINRICH_METRICS_PORT: '0', ...extra };
}

const pinrich = runPinrich;

const noticeLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('pinrich: using the local stack'));

describe.skipIf(!stack)('the CLI uses the local stack when nothing else is configured', () => {
  it('topics create, with no PINRICH_* service variables, creates the topics on the local stack and says so in one line', async () => {
    const prefix = `test.clistack.${randomUUID().slice(0, 8)}.`;
    const r = await pinrich(['topics', 'create'], bareEnv({ PINRICH_TOPIC_PREFIX: prefix }));
    expect(r.code, r.stderr).toBe(0);
    const notice = noticeLines(r.stderr);
    expect(notice).toHaveLength(1);
    expect(notice[0]).toContain(`in ${stackDir}:`);
    expect(notice[0]).toContain(`Kafka ${stack.kafkaBrokers.join(',')}`);
    expect(notice[0]).toContain(`Redis ${stack.redisUrl}`);
    expect(notice[0]).toContain(`S3 ${stack.s3.endpoint}`);

    // The topics exist on the stack's broker (not on a default 127.0.0.1:9092).
    const admin = new Kafka({ clientId: 'cli-stack-test', brokers: stack.kafkaBrokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const topics = await admin.listTopics();
      expect(topics).toEqual(expect.arrayContaining([`${prefix}pins.events`, `${prefix}pins.events.dlq`, `${prefix}pins.enriched`, `${prefix}relevance.labels`]));
    } finally {
      await admin.disconnect();
    }
  });

  it('labels sync reads the local S3 (not AWS) when nothing else is configured', async () => {
    const r = await pinrich(['labels', 'sync'], bareEnv({ PINRICH_S3_PREFIX: `test/clistack/${randomUUID()}/`, PINRICH_LABELS_CACHE: join('/tmp', `pinrich-clistack-${randomUUID()}`) }));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(noticeLines(r.stderr)[0]).toContain(`S3 ${stack.s3.endpoint}`);
    expect(r.stdout + r.stderr).not.toMatch(/CredentialsProviderError/);
  });

  it('a variable that is set wins, per variable: explicit Redis and AWS S3 (empty endpoint), Kafka from the stack', async () => {
    const r = await pinrich(['config', 'show'], bareEnv({ PINRICH_REDIS_URL: 'redis://:pw@redis.example:6380', PINRICH_S3_ENDPOINT: '' }));
    expect(r.code, r.stderr).toBe(0);
    const shown = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(shown.PINRICH_KAFKA_BROKERS).toEqual(stack.kafkaBrokers);
    expect(shown.PINRICH_REDIS_URL).toBe('redis://:***@redis.example:6380');
    // An S3 endpoint that is set (even to "": AWS) also keeps s3rver's keys and bucket away.
    expect(shown.PINRICH_S3_ENDPOINT).toBe(''); // "": AWS (src/adapters/s3/client.ts passes no endpoint)
    expect(shown.PINRICH_S3_ACCESS_KEY_ID).toBeUndefined();
    expect(shown.PINRICH_S3_BUCKET).toBe('pinrich'); // the default, not read from the stack
    const notice = noticeLines(r.stderr);
    expect(notice).toHaveLength(1);
    expect(notice[0]).toContain(`Kafka ${stack.kafkaBrokers.join(',')}`);
    expect(notice[0]).toContain('PINRICH_REDIS_URL, PINRICH_S3_ENDPOINT as configured');
    expect(notice[0]).not.toContain('Redis redis://');
  });

  it('PINRICH_STACK=none ignores the local stack', async () => {
    const r = await pinrich(['config', 'show'], bareEnv({ PINRICH_STACK: 'none' }));
    expect(r.code, r.stderr).toBe(0);
    expect(noticeLines(r.stderr)).toEqual([]);
    expect((JSON.parse(r.stdout) as Record<string, unknown>).PINRICH_KAFKA_BROKERS).toEqual(['127.0.0.1:9092']);
  });

  it('stack up, topics create, run all: every worker joins its group with no setting at all (model: the stack\'s stand-in)', async () => {
    expect(stack.modelStandIn, 'the stack runs the stand-in model server').toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    const id = randomUUID().slice(0, 8);
    const env = bareEnv({ PINRICH_TOPIC_PREFIX: `test.clistack.${id}.`, PINRICH_GROUP_PREFIX: `test-clistack-${id}`, PINRICH_REDIS_PREFIX: `test:clistack:${id}:` });
    expect((await pinrich(['topics', 'create'], env)).code).toBe(0);
    const child = spawn(process.execPath, ['bin/pinrich.js', 'run', 'all'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
    try {
      await new Promise<void>((done, fail) => {
        const timer = setTimeout(() => fail(new Error(`not every worker joined within 90 s; stderr:\n${stderr}`)), 90_000);
        child.stderr!.on('data', (d: Buffer) => {
          stderr += d.toString();
          const joined = new Set(
            stderr
              .split('\n')
              .filter((l) => l.startsWith('{') && l.includes('joined group'))
              .map((l) => JSON.parse(l) as { msg?: string; worker?: string })
              .filter((l) => l.msg === 'joined group')
              .map((l) => l.worker),
          );
          if (['caption', 'enrich', 'score', 'dump'].every((w) => joined.has(w))) {
            clearTimeout(timer);
            done();
          }
        });
        void exited.then((code) => fail(new Error(`run all exited (${code}); stderr:\n${stderr}`)));
      });
      const notice = noticeLines(stderr);
      expect(notice).toHaveLength(1);
      expect(notice[0]).toContain(`model STAND-IN ${stack.modelStandIn} for VLM + TEACHER`);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('an unreachable Redis is reported within seconds with its address, password masked, and waited for until SIGTERM', async () => {
    const port = await freePort(); // nothing listens there
    const child = spawn(process.execPath, ['bin/pinrich.js', 'run', 'enrich'], {
      env: bareEnv({ PINRICH_REDIS_URL: `redis://:sekret-pw@127.0.0.1:${port}`, PINRICH_TOPIC_PREFIX: `test.clistack.${randomUUID().slice(0, 8)}.` }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    try {
      const warnings = await new Promise<Array<Record<string, unknown>>>((done, fail) => {
        const timer = setTimeout(() => fail(new Error(`no second "unreachable" warning; stderr:\n${stderr}`)), 60_000);
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
          const found = stderr
            .split('\n')
            .filter((l) => l.includes('is unreachable; waiting'))
            .map((l) => JSON.parse(l) as Record<string, unknown>);
          // Two warnings: the first one early, and the process still waiting after it.
          if (found.length >= 2) {
            clearTimeout(timer);
            done(found);
          }
        });
        child.on('exit', (code) => fail(new Error(`exited (${code}) instead of waiting; stderr:\n${stderr}`)));
      });
      expect(warnings[0]!.msg).toBe(`Redis at redis://:***@127.0.0.1:${port} is unreachable; waiting`);
      expect(warnings[0]!.error).toMatch(/ECONNREFUSED/);
      // "Within seconds", as measured by the process itself (ioredis alone would say nothing for ~25 s).
      expect(warnings[0]!.waitedMs as number).toBeLessThan(5_000);
      expect(stderr).not.toContain('sekret-pw');
      // SIGTERM ends the wait (nothing joined a group yet): a clean exit, well before PINRICH_REDIS_WAIT_MS.
      const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(stderr).toContain('stopped during start-up, before any worker joined its group');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
