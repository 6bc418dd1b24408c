/**
 * localStackOverlay (src/stack/index.ts): which PINRICH_* variables the CLI takes from a recorded
 * local stack, and what it says. A hand-written state.json in a temp dir; "alive" services carry
 * this process's pid with an empty marker (always in its command line), dead ones a pid that
 * cannot exist. No services run here; the real path is test/integration/cli-stack.test.ts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { localStackOverlay } from '../../src/stack/index.js';

const DEAD_PID = 2 ** 22 + 12_345; // above Linux's pid_max ceiling

function stackDir(services: Array<{ name: string; port: number; alive?: boolean }>, complete = true): string {
  const dir = mkdtempSync(join(tmpdir(), 'pinrich-overlay-test-'));
  const state = {
    version: 1,
    complete,
    createdAt: new Date().toISOString(),
    bucket: 'pinrich',
    services: services.map((s) => ({ name: s.name, port: s.port, pid: s.alive === false ? DEAD_PID : process.pid, marker: '', logFile: '/dev/null' })),
  };
  writeFileSync(join(dir, 'state.json'), JSON.stringify(state));
  return dir;
}

const FULL = [
  { name: 'redis', port: 7001 },
  { name: 's3', port: 7002 },
  { name: 'kafka', port: 7003 },
];

describe('localStackOverlay', () => {
  it('fills every unset service variable from the stack and names them in one line', () => {
    const dir = stackDir(FULL);
    const o = localStackOverlay({ PINRICH_STACK_DIR: dir });
    expect(o.env).toEqual({
      PINRICH_KAFKA_BROKERS: '127.0.0.1:7003',
      PINRICH_REDIS_URL: 'redis://127.0.0.1:7001',
      PINRICH_S3_ENDPOINT: 'http://127.0.0.1:7002',
      PINRICH_S3_BUCKET: 'pinrich',
      PINRICH_S3_ACCESS_KEY_ID: 'S3RVER',
      PINRICH_S3_SECRET_ACCESS_KEY: 'S3RVER',
      PINRICH_S3_FORCE_PATH_STYLE: 'true',
    });
    expect(o.notice).toBe(
      `pinrich: using the local stack in ${dir}: Kafka 127.0.0.1:7003, Redis redis://127.0.0.1:7001, S3 http://127.0.0.1:7002 (PINRICH_STACK=none: ignore it)`,
    );
  });

  it('keeps what PINRICH_CONFIG_FILE sets, like the environment', () => {
    const dir = stackDir(FULL);
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ PINRICH_KAFKA_BROKERS: 'kafka.example:9092' }));
    const o = localStackOverlay({ PINRICH_STACK_DIR: dir, PINRICH_CONFIG_FILE: file });
    expect(o.env.PINRICH_KAFKA_BROKERS).toBeUndefined();
    expect(o.env.PINRICH_REDIS_URL).toBe('redis://127.0.0.1:7001');
    expect(o.notice).toContain('; PINRICH_KAFKA_BROKERS as configured');
  });

  it('an explicit S3 endpoint also keeps the bucket and s3rver keys away; an explicit bucket is kept', () => {
    const dir = stackDir(FULL);
    expect(localStackOverlay({ PINRICH_STACK_DIR: dir, PINRICH_S3_ENDPOINT: '' }).env).toEqual({
      PINRICH_KAFKA_BROKERS: '127.0.0.1:7003',
      PINRICH_REDIS_URL: 'redis://127.0.0.1:7001',
    });
    expect(localStackOverlay({ PINRICH_STACK_DIR: dir, PINRICH_S3_BUCKET: 'mine' }).env.PINRICH_S3_BUCKET).toBeUndefined();
  });

  it('a stack whose processes are gone is not used, and the line says so', () => {
    const dir = stackDir([{ name: 'redis', port: 7001 }, { name: 's3', port: 7002 }, { name: 'kafka', port: 7003, alive: false }]);
    const o = localStackOverlay({ PINRICH_STACK_DIR: dir });
    expect(o.env).toEqual({});
    expect(o.notice).toBe(`pinrich: the local stack in ${dir} is not running (kafka gone); not using it — start it with \`npx pinrich stack up\``);
  });

  it('an incomplete stack (still starting) is not used', () => {
    const o = localStackOverlay({ PINRICH_STACK_DIR: stackDir(FULL, false) });
    expect(o.env).toEqual({});
    expect(o.notice).toMatch(/still starting/);
  });

  it('no recorded stack, or PINRICH_STACK=none: nothing added, nothing said', () => {
    expect(localStackOverlay({ PINRICH_STACK_DIR: mkdtempSync(join(tmpdir(), 'pinrich-overlay-empty-')) })).toEqual({ env: {} });
    expect(localStackOverlay({ PINRICH_STACK_DIR: stackDir(FULL), PINRICH_STACK: 'none' })).toEqual({ env: {} });
  });

  it('the Redis Cluster is used only when PINRICH_REDIS_CLUSTER=true, by its seed nodes', () => {
    const dir = stackDir([...FULL, { name: 'redis-cluster', port: 7101 }, { name: 'redis-cluster', port: 7102 }, { name: 'redis-cluster', port: 7103 }]);
    expect(localStackOverlay({ PINRICH_STACK_DIR: dir }).env.PINRICH_REDIS_URL).toBe('redis://127.0.0.1:7001');
    const o = localStackOverlay({ PINRICH_STACK_DIR: dir, PINRICH_REDIS_CLUSTER: 'true' });
    expect(o.env.PINRICH_REDIS_URL).toBe('redis://127.0.0.1:7101,redis://127.0.0.1:7102,redis://127.0.0.1:7103');
    expect(o.notice).toContain('Redis Cluster redis://127.0.0.1:7101,');
  });

  it('the stand-in model server fills only unset model URLs, is named STAND-IN, and its absence disables nothing else', () => {
    const dir = stackDir([...FULL, { name: 'model', port: 7200 }]);
    const o = localStackOverlay({ PINRICH_STACK_DIR: dir, PINRICH_TEACHER_BASE_URL: 'https://vllm.example/v1' });
    expect(o.env.PINRICH_VLM_BASE_URL).toBe('http://127.0.0.1:7200/v1');
    expect(o.env.PINRICH_TEACHER_BASE_URL).toBeUndefined();
    expect(o.notice).toContain("model STAND-IN http://127.0.0.1:7200/v1 for VLM (pinrich's test server, not a real model)");

    const gone = localStackOverlay({ PINRICH_STACK_DIR: stackDir([...FULL, { name: 'model', port: 7200, alive: false }]) });
    expect(gone.env.PINRICH_VLM_BASE_URL).toBeUndefined();
    expect(gone.env.PINRICH_KAFKA_BROKERS).toBe('127.0.0.1:7003');
  });
});
