import { describe, expect, it } from 'vitest';
import { ConfigError, configTable, loadConfig, redactConfig } from '../../src/config.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('config', () => {
  it('has defaults and parses types', () => {
    const c = loadConfig({ PINRICH_KAFKA_BROKERS: 'a:1, b:2', PINRICH_ENRICH_TOP_K: '7', PINRICH_ENRICH_MINE_PAIRS: 'true' });
    expect(c.kafkaBrokers).toEqual(['a:1', 'b:2']);
    expect(c.enrichTopK).toBe(7);
    expect(c.enrichMinePairs).toBe(true);
    expect(c.topicPartitions).toBe(4);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reports every problem at once, by variable name, without secret values', () => {
    let err: unknown;
    try {
      loadConfig({ PINRICH_ENRICH_TOP_K: '0', PINRICH_TOPIC_PARTITIONS: 'many', PINRICH_LOG_LEVEL: 'loud', PINRICH_KAFKA_SASL_MECHANISM: 'scram-sha-512', PINRICH_KAFKA_SASL_PASSWORD: 'hunter2-secret' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.join('\n');
    for (const name of ['PINRICH_ENRICH_TOP_K', 'PINRICH_TOPIC_PARTITIONS', 'PINRICH_LOG_LEVEL', 'PINRICH_KAFKA_SASL_USERNAME']) expect(problems).toContain(name);
    expect((err as Error).message).not.toContain('hunter2-secret');
  });

  it('reads a JSON file, with the environment winning, and rejects unknown keys', () => {
    const file = join(tmpdir(), `pinrich-config-${process.pid}.json`);
    writeFileSync(file, JSON.stringify({ PINRICH_ENRICH_TOP_K: 5, PINRICH_S3_BUCKET: 'from-file' }));
    const c = loadConfig({ PINRICH_CONFIG_FILE: file, PINRICH_S3_BUCKET: 'from-env' });
    expect(c.enrichTopK).toBe(5);
    expect(c.s3Bucket).toBe('from-env');
    writeFileSync(file, JSON.stringify({ PINRICH_NOPE: 1 }));
    expect(() => loadConfig({ PINRICH_CONFIG_FILE: file })).toThrow(/PINRICH_NOPE/);
  });

  it('masks secrets when shown', () => {
    const c = loadConfig({ PINRICH_REDIS_URL: 'redis://:hunter2@cache:6379', PINRICH_VLM_API_KEY: 'sk-live-abc', PINRICH_KAFKA_SASL_MECHANISM: 'plain', PINRICH_KAFKA_SASL_USERNAME: 'u', PINRICH_KAFKA_SASL_PASSWORD: 'pw-123' });
    const shown = JSON.stringify(redactConfig(c));
    for (const secret of ['hunter2', 'sk-live-abc', 'pw-123']) expect(shown).not.toContain(secret);
    expect(shown).toContain('cache:6379');
  });

  it('has the current option table in the README (`npx pinrich config readme` updates it)', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(`<!-- config-table:start -->\n${configTable()}\n<!-- config-table:end -->`);
  });

  it('documents every option in the table', () => {
    const table = configTable();
    expect(table).toContain('`PINRICH_KAFKA_BROKERS`');
    expect(table).toContain('(secret)');
  });
});
