/**
 * Security settings reach the clients (Kafka TLS/SASL, Redis TLS), secrets are scrubbed from
 * text that leaves the process, and the image URL policy holds for the tricky address forms.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LIMITS } from '../../schemas/common.js';
import { kafkaClientConfig } from '../../src/adapters/kafka/client.js';
import { redisOptions } from '../../src/adapters/redis/client.js';
import { loadConfig, redactConfig, secretValues } from '../../src/config.js';
import { checkImageUrl } from '../../src/core/url-policy.js';
import { silentLogger } from '../../src/runtime/log.js';
import { createRedactor, REDACTED, redactingPublisher } from '../../src/runtime/redact.js';
import type { OutMessage } from '../../src/adapters/kafka/client.js';

const dir = mkdtempSync(join(tmpdir(), 'pinrich-sec-'));
const caFile = join(dir, 'ca.pem');
writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nMIIB-test-ca\n-----END CERTIFICATE-----\n');

describe('Kafka security settings', () => {
  it('passes SASL/SCRAM credentials and TLS to kafkajs', () => {
    const config = loadConfig({
      PINRICH_KAFKA_SSL: 'true',
      PINRICH_KAFKA_SASL_MECHANISM: 'scram-sha-512',
      PINRICH_KAFKA_SASL_USERNAME: 'pinrich',
      PINRICH_KAFKA_SASL_PASSWORD: 'scram-SECRET-1',
    });
    const kc = kafkaClientConfig(config, silentLogger);
    expect(kc.ssl).toBe(true);
    expect(kc.sasl).toEqual({ mechanism: 'scram-sha-512', username: 'pinrich', password: 'scram-SECRET-1' });
  });

  it('verifies brokers against a private CA from PINRICH_KAFKA_SSL_CA_FILE', () => {
    const kc = kafkaClientConfig(loadConfig({ PINRICH_KAFKA_SSL_CA_FILE: caFile }), silentLogger);
    expect(kc.ssl).toEqual({ ca: [expect.stringContaining('MIIB-test-ca')] });
    expect(kafkaClientConfig(loadConfig({}), silentLogger).ssl).toBe(false);
    expect(kafkaClientConfig(loadConfig({}), silentLogger).sasl).toBeUndefined();
  });

  it('refuses SASL without credentials', () => {
    expect(() => loadConfig({ PINRICH_KAFKA_SASL_MECHANISM: 'scram-sha-256' })).toThrow(/required when PINRICH_KAFKA_SASL_MECHANISM/);
  });
});

describe('Redis security settings', () => {
  it('uses TLS with the given CA for rediss:// URLs only', () => {
    expect(redisOptions('rediss://:pw@redis.example:6380', { tlsCaFile: caFile }).tls).toEqual({ ca: [expect.stringContaining('MIIB-test-ca')] });
    expect(redisOptions('redis://127.0.0.1:6379', { tlsCaFile: caFile }).tls).toBeUndefined();
    // Without a CA file ioredis itself turns TLS on for rediss:// (system CAs).
    expect(redisOptions('rediss://redis.example:6380').tls).toBeUndefined();
  });
});

describe('secrets', () => {
  const env = {
    PINRICH_REDIS_URL: 'rediss://default:redis%2FSECRET%40x@redis.example:6380',
    PINRICH_VLM_API_KEY: 'sk-SECRET-vlm-123',
    PINRICH_TEACHER_API_KEY: 'sk-SECRET-teacher-456',
    PINRICH_KAFKA_SASL_MECHANISM: 'plain',
    PINRICH_KAFKA_SASL_USERNAME: 'pinrich',
    PINRICH_KAFKA_SASL_PASSWORD: 'kafka"SECRET\\789',
  };

  it('lists every secret value, URL passwords raw and decoded, never defaults', () => {
    expect(secretValues(loadConfig(env)).sort()).toEqual(['kafka"SECRET\\789', 'redis%2FSECRET%40x', 'redis/SECRET@x', 'sk-SECRET-teacher-456', 'sk-SECRET-vlm-123'].sort());
    expect(secretValues(loadConfig({}))).toEqual([]); // not-needed keys, password-less Redis URL
  });

  it('are masked by config show and scrubbed from text, JSON-escaped forms included', () => {
    const config = loadConfig(env);
    expect(JSON.stringify(redactConfig(config))).not.toMatch(/SECRET/);
    const redact = createRedactor(secretValues(config));
    const line = JSON.stringify({ msg: 'model said: Incorrect API key provided: sk-SECRET-vlm-123', sasl: 'kafka"SECRET\\789', url: config.redisUrl });
    expect(redact(line)).not.toMatch(/SECRET/);
    expect(redact(line)).toContain(REDACTED);
    expect(JSON.parse(redact(line)).msg).toBe(`model said: Incorrect API key provided: ${REDACTED}`);
    expect(createRedactor([])('sk-SECRET')).toBe('sk-SECRET');
  });

  it('are scrubbed from published string values', async () => {
    const sent: OutMessage[] = [];
    const pub = redactingPublisher({ publish: async (m) => void sent.push(...m), close: async () => {} }, createRedactor(['sk-SECRET-1']));
    const raw = Buffer.from('sk-SECRET-1');
    await pub.publish([
      { topic: 'a.dlq', key: 'k', value: JSON.stringify({ reason: 'rejected (401): key sk-SECRET-1' }) },
      { topic: 'b', key: 'k', value: raw },
    ]);
    expect(sent[0]!.value).toBe(JSON.stringify({ reason: `rejected (401): key ${REDACTED}` }));
    expect(sent[1]!.value).toBe(raw); // raw input bytes are upstream's, passed as they came
  });
});

describe('image URL policy: limits and embedded addresses', () => {
  const policy = { allowedSchemes: ['https'], allowedHosts: [] as string[], maxLength: LIMITS.url };
  it('rejects URLs longer than the limit', () => {
    const long = `https://i.pinimg.com/${'a'.repeat(LIMITS.url)}.jpg`;
    expect(checkImageUrl(long, policy)).toEqual({ ok: false, reason: `URL longer than ${LIMITS.url} characters` });
  });
  it.each([
    ['https://[::127.0.0.1]/', false], // IPv4-compatible
    ['https://[64:ff9b::169.254.169.254]/', false], // NAT64 of the metadata address
    ['https://[2002:a9fe:a9fe::]/', false], // 6to4 of the metadata address
    ['https://[::ffff:169.254.169.254]/', false],
    ['https://[fec0::1]/', false], // site-local
    ['https://0177.0.0.1/', false], // octal loopback
    ['https://[2606:4700::1111]/', true],
    ['https://[64:ff9b::8.8.8.8]/', true],
  ])('%s -> %s', (url, ok) => {
    expect(checkImageUrl(url, policy).ok).toBe(ok);
  });
});
