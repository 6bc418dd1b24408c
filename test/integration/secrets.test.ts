/**
 * Secrets never leave the process: `pinrich run all` as a real process, with recognisable
 * secret values in every secret option and a model server that (like some real ones) echoes the
 * API key back in its 401 errors. Every log line, every published record (captions, dead
 * letters), the /metrics page, `pinrich config show` and a config error are searched for them.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { pairIdOf } from '../../src/core/document.js';
import { startModelServer, type ModelServer } from '../../src/model-server/server.js';
import { produce, readUntil, setupTopics, stack, testEnv } from '../support/harness.js';
import { freePort, scrape } from '../support/prometheus.js';

const SECRETS = {
  vlm: 'sk-SECRET-vlm-7f3a9c0d',
  teacher: 'sk-SECRET-teacher-2b8e41',
  redis: 'redisSECRETpw42',
  sasl: 'saslSECRET-9d1c77',
};
const leaks = (text: string) => Object.values(SECRETS).filter((s) => text.includes(s));

let server: ModelServer;
beforeAll(async () => {
  server = await startModelServer();
});
afterAll(async () => {
  await server.close();
});

function secretEnv(extra: Record<string, string> = {}): Record<string, string> {
  const redis = new URL(stack().redisUrl);
  redis.password = SECRETS.redis; // the local Redis has no password: it accepts AUTH and warns
  return testEnv({
    PINRICH_VLM_BASE_URL: server.baseUrl,
    PINRICH_TEACHER_BASE_URL: server.baseUrl,
    PINRICH_VLM_API_KEY: SECRETS.vlm,
    PINRICH_TEACHER_API_KEY: SECRETS.teacher,
    PINRICH_REDIS_URL: redis.toString(),
    // Not used with mechanism "none" (the local broker has no SASL), but loaded and logged.
    PINRICH_KAFKA_SASL_USERNAME: 'pinrich',
    PINRICH_KAFKA_SASL_PASSWORD: SECRETS.sasl,
    PINRICH_LOG_LEVEL: 'debug',
    PINRICH_MODEL_MAX_ATTEMPTS: '2',
    PINRICH_SCORE_DOC_RETRY_MS: '300',
    PINRICH_SCORE_DOC_ATTEMPTS: '8',
    ...extra,
  });
}

describe('secrets', () => {
  it('never appear in logs, published records or /metrics of a running pipeline', async () => {
    const port = await freePort();
    const env = secretEnv({ PINRICH_METRICS_PORT: String(port) });
    const config = loadConfig(env);
    const t = await setupTopics(config);
    // A hostile (or merely verbose) model server: every call fails with the caller's key in the message.
    server.script({ kind: 'caption', times: Infinity, reply: { status: 401, message: `Incorrect API key provided: ${SECRETS.vlm}` } });
    server.script({ kind: 'teacher', times: Infinity, reply: { status: 401, message: `Incorrect API key provided: ${SECRETS.teacher}` } });

    await produce(config, t.pinEvents, [
      {
        key: 'p1',
        value: { schema: 'pin_event', schema_version: 1, type: 'created', pin_id: 'p1', event_time: new Date().toISOString(), title: 'Lemon pasta', description: 'Quick dinner', image_url: 'https://images.example.com/p1.jpg', language: 'en' },
      },
      { key: 'bad', value: '{"broken' },
    ]);
    await produce(config, t.pairs, [
      { key: 'p1', value: { schema: 'pair', schema_version: 1, pair_id: pairIdOf('p1', 'lemon pasta'), pin_id: 'p1', query: 'lemon pasta', source: 'manual', language: 'en', created_at: new Date().toISOString() } },
    ]);

    const child = spawn(process.execPath, ['bin/pinrich.js', 'run', 'all'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    try {
      const captions = await readUntil(config, t.captions, (r) => r.length >= 1);
      const pairDlq = await readUntil(config, `${t.pairs}.dlq`, (r) => r.length >= 1, 90_000);
      const eventDlq = await readUntil(config, `${t.pinEvents}.dlq`, (r) => r.length >= 1);
      const metrics = await scrape(port);

      // The failures happened, and their reasons made it out (minus the secret).
      const caption = JSON.parse(captions[0]!.value!);
      expect(caption.status).toBe('failed');
      expect(caption.error_code).toBe('model_rejected_request');
      expect(caption.reason).toMatch(/401.*Incorrect API key provided: \[REDACTED\]/);
      const dead = JSON.parse(pairDlq[0]!.value!);
      expect(dead.error_code).toBe('model_rejected_request');
      expect(dead.reason).toMatch(/Incorrect API key provided: \[REDACTED\]/);
      expect(metrics.value('pinrich_dead_letters_total', { code: 'model_rejected_request' })).toBe(1);

      for (const r of [...captions, ...pairDlq, ...eventDlq]) expect(leaks(JSON.stringify(r))).toEqual([]);
      expect(leaks(metrics.text)).toEqual([]);
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    // Logs: the start-up line with the whole config, kafkajs and model-retry debug lines, shutdown.
    expect(output).toMatch(/"msg":"starting"/);
    expect(output).toMatch(/"msg":"stopped"/);
    expect(output).toContain('PINRICH_REDIS_URL');
    expect(leaks(output)).toEqual([]);
  });

  it('never appear in `config show` or in a configuration error', () => {
    const env = { ...process.env, ...secretEnv() };
    const show = spawnSync(process.execPath, ['bin/pinrich.js', 'config', 'show'], { env, encoding: 'utf8' });
    expect(show.status).toBe(0);
    expect(JSON.parse(show.stdout).PINRICH_VLM_API_KEY).toBe('***');
    expect(leaks(show.stdout + show.stderr)).toEqual([]);

    const bad = spawnSync(process.execPath, ['bin/pinrich.js', 'run', 'enrich'], {
      env: { ...env, PINRICH_KAFKA_SASL_MECHANISM: 'scram-sha-512', PINRICH_KAFKA_SASL_USERNAME: '', PINRICH_METRICS_PORT: 'not-a-port' },
      encoding: 'utf8',
    });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/PINRICH_METRICS_PORT/);
    expect(bad.stderr).toMatch(/PINRICH_KAFKA_SASL_USERNAME\/PINRICH_KAFKA_SASL_PASSWORD: required/);
    expect(leaks(bad.stdout + bad.stderr)).toEqual([]);
  });

  it('are not echoed when a worker cannot start (Redis refuses the connection)', () => {
    const url = new URL(stack().redisUrl);
    url.password = SECRETS.redis;
    url.port = '1'; // nothing listens there
    // The worker waits for an unreachable Redis (PINRICH_REDIS_WAIT_MS), warning with the address,
    // then exits: both the warning and the fatal error name the URL, and neither may carry the password.
    const env = { ...process.env, ...secretEnv({ PINRICH_REDIS_URL: url.toString(), PINRICH_REDIS_WAIT_MS: '4000' }) };
    const res = spawnSync(process.execPath, ['bin/pinrich.js', 'run', 'enrich'], { env, encoding: 'utf8', timeout: 90_000 });
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1 is unreachable; waiting/);
    expect(res.stderr).toMatch(/Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1 did not answer for \d+ s/);
    expect(leaks(res.stdout + res.stderr)).toEqual([]);
  });
});

