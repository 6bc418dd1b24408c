/**
 * How PINRICH_REDIS_URL / PINRICH_REDIS_CLUSTER become ioredis options: seed nodes, the
 * cluster's AUTH and TLS, and secrets in a list of seed URLs masked and scrubbed like one URL.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { clusterOptions } from '../../src/adapters/redis/client.js';
import { loadConfig, redactConfig, secretValues } from '../../src/config.js';

describe('Redis Cluster client options (PINRICH_REDIS_CLUSTER=true)', () => {
  it('takes seed nodes from comma-separated URLs and bare host:port', () => {
    const { seeds, options } = clusterOptions('redis://10.0.0.1:7000, 10.0.0.2:7001,redis://node-c');
    expect(seeds).toEqual([
      { host: '10.0.0.1', port: 7000 },
      { host: '10.0.0.2', port: 7001 },
      { host: 'node-c', port: 6379 },
    ]);
    expect(options.redisOptions?.password).toBeUndefined();
    expect(options.redisOptions?.tls).toBeUndefined();
    expect(options.enableAutoPipelining).toBe(false);
  });

  it('applies the AUTH of the URL that carries it to every node, percent-decoded', () => {
    const { options } = clusterOptions('redis://a:7000,redis://pinrich:s%40cret-pw@b:7001');
    expect(options.redisOptions).toMatchObject({ username: 'pinrich', password: 's@cret-pw' });
  });

  it('uses TLS for every node with rediss://, with the CA file when one is given', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pinrich-ca-'));
    writeFileSync(join(dir, 'ca.pem'), 'PEM');
    expect(clusterOptions('rediss://a:7000,rediss://b:7001').options.redisOptions?.tls).toEqual({});
    expect(clusterOptions('rediss://a:7000', { tlsCaFile: join(dir, 'ca.pem') }).options.redisOptions?.tls).toEqual({ ca: ['PEM'] });
  });

  it('rejects an empty seed list with a typed error', () => {
    expect(() => clusterOptions(' , ')).toThrow(expect.objectContaining({ code: 'config_invalid' }) as Error);
  });

  it('masks and scrubs the password in a list of seed URLs', () => {
    const config = loadConfig({ PINRICH_REDIS_CLUSTER: 'true', PINRICH_REDIS_URL: 'redis://:hunter22@a:7000,redis://:hunter22@b:7001' });
    expect(config.redisCluster).toBe(true);
    expect(secretValues(config)).toContain('hunter22');
    const shown = String(redactConfig(config).PINRICH_REDIS_URL);
    expect(shown).not.toContain('hunter22');
    expect(shown).toContain('a:7000');
    expect(shown).toContain('b:7001');
  });
});
