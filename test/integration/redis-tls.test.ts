/**
 * PINRICH_REDIS_TLS_CA_FILE reaches every command that builds its Redis client from config:
 * `enrich rebuild` and `labels export` reach a `rediss://` Redis whose certificate is signed by
 * a private CA only through that file. The TLS endpoint is a small TLS terminator in front of
 * the local stack's Redis, with a CA and server certificate made by openssl for this test.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedis, createRedisFromConfig } from '../../src/adapters/redis/client.js';
import { redisKeys } from '../../src/adapters/redis/keys.js';
import { loadConfig, type Config } from '../../src/config.js';
import { redisPinTexts } from '../../src/labels/export.js';
import { silentLogger } from '../../src/runtime/log.js';
import { rebuildEnrichState } from '../../src/stages/enrich/rebuild.js';
import { setupTopics, stack, testEnv } from '../support/harness.js';

const dir = mkdtempSync(join(tmpdir(), 'pinrich-redis-tls-'));
const ca = join(dir, 'ca.pem');

/** A private CA and a certificate for 127.0.0.1 signed by it (openssl, ~100 ms). */
function makeCertificates(): { key: string; cert: string } {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=pinrich test CA');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  execFileSync('sh', ['-c', 'printf "subjectAltName=IP:127.0.0.1,DNS:localhost\\n" > san.ext'], { cwd: dir });
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext');
  return { key: readFileSync(join(dir, 'server.key'), 'utf8'), cert: readFileSync(join(dir, 'server.pem'), 'utf8') };
}

describe.skipIf(!inject('stack'))('Redis over TLS with a private CA (PINRICH_REDIS_TLS_CA_FILE)', () => {
  let server: Server;
  let tlsUrl: string;
  /** Config whose Redis is the TLS endpoint, with the CA file set (`withCa`) or not. */
  let configOf: (withCa: boolean) => Config;

  beforeAll(async () => {
    const plain = new URL(stack().redisUrl);
    server = createServer(makeCertificates(), (socket) => {
      const upstream = createConnection({ host: plain.hostname, port: Number(plain.port || 6379) });
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    tlsUrl = `rediss://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const env = testEnv({ PINRICH_REDIS_URL: tlsUrl });
    configOf = (withCa) => loadConfig(withCa ? { ...env, PINRICH_REDIS_TLS_CA_FILE: ca } : env);
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('createRedisFromConfig passes the CA to ioredis', () => {
    const redis = createRedisFromConfig({ redisUrl: tlsUrl, redisTlsCaFile: ca });
    try {
      expect(redis.options.tls).toEqual({ ca: [readFileSync(ca, 'utf8')] });
    } finally {
      redis.disconnect();
    }
  });

  it('labels export reads pin texts over TLS with the CA, and cannot without it', async () => {
    const config = configOf(true);
    const plain = createRedis(stack().redisUrl);
    try {
      const doc = { pin_text: 'Tarte aux pommes', version: 3, content_hash: 'h1' };
      await plain.set(redisKeys(config.redisKeyPrefix).document('pin-tls'), JSON.stringify(doc));
      // Control: the endpoint really demands the private CA (system CAs do not know it).
      expect(await redisPinTexts(configOf(false), 2_000)).toBeUndefined();
      const source = await redisPinTexts(config, 10_000);
      expect(source).toBeDefined();
      try {
        expect((await source!.get(['pin-tls'])).get('pin-tls')).toEqual({ pinText: 'Tarte aux pommes', version: 3, contentHash: 'h1' });
      } finally {
        source!.close();
      }
    } finally {
      await plain.del(redisKeys(config.redisKeyPrefix).document('pin-tls'));
      plain.disconnect();
    }
  });

  it('enrich rebuild writes its state over TLS with the CA', async () => {
    const config = configOf(true);
    // setupTopics returns once every partition has a serving leader: the rebuild reads end offsets.
    await setupTopics(config);
    const report = await rebuildEnrichState(config, silentLogger);
    expect(report.documents).toBe(0);
    // The state marker the rebuild ends with is in Redis (read back over the plain port).
    const plain = createRedis(stack().redisUrl);
    try {
      expect(await plain.exists(redisKeys(config.redisKeyPrefix).enrich.stateMarker())).toBe(1);
    } finally {
      plain.disconnect();
    }
  }, 60_000);
});
