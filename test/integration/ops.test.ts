/**
 * The ops endpoint of a running app on the real stack: /metrics reflects the records a worker
 * consumed, published and dead-lettered, model calls and cache hits; /readyz turns 200 once the
 * consumer has joined its group; /healthz answers throughout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp } from '../../src/app.js';
import { silentLogger } from '../../src/runtime/log.js';
import { startModelServer, type ModelServer } from '../../src/model-server/server.js';
import { produce, readUntil, setupTopics, testConfig, waitFor } from '../support/harness.js';
import { freePort, scrape } from '../support/prometheus.js';

const pinEvent = (id: string, image_url: string) => ({
  schema: 'pin_event',
  schema_version: 1,
  type: 'created',
  pin_id: id,
  event_time: '2026-11-28T00:00:00.000Z',
  title: `Title of ${id}`,
  description: 'Lemon pasta for a weeknight',
  image_url,
  language: 'en',
});

let server: ModelServer;
beforeAll(async () => {
  server = await startModelServer();
});
afterAll(async () => {
  await server.close();
});

describe('ops endpoint', () => {
  it('serves metrics that count records, outputs, dead letters by reason, model calls and cache hits', async () => {
    const port = await freePort();
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl, PINRICH_METRICS_PORT: String(port) });
    const t = await setupTopics(config);
    const shared = 'https://images.example.com/shared.jpg';
    await produce(config, t.pinEvents, [
      { key: 'a', value: pinEvent('a', shared) },
      { key: 'b', value: pinEvent('b', shared) }, // same image: one model call, one cache hit
      { key: 'c', value: pinEvent('c', 'https://images.example.com/c.jpg') },
      { key: 'd', value: pinEvent('d', 'https://169.254.169.254/latest/meta-data/') }, // url_rejected
      { key: 'e', value: '{"not json' }, // malformed_json
      { key: 'f', value: { schema: 'pin_event', schema_version: 99 } }, // unknown_schema_version
    ]);
    const app = await startApp(config, ['caption'], silentLogger, { serveOps: true });
    try {
      expect(app.ops?.port).toBe(port);
      const base = `http://127.0.0.1:${port}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      await waitFor('readiness', async () => (await fetch(`${base}/readyz`)).status === 200, 60_000);
      await readUntil(config, t.captions, (r) => r.length >= 4);
      await readUntil(config, `${t.pinEvents}.dlq`, (r) => r.length >= 2);

      // Counters move after the offset commit; wait for the batch to be fully accounted.
      const m = await waitFor('metrics', async () => {
        const s = await scrape(port);
        return s.value('pinrich_records_in_total', { worker: 'caption' }) >= 6 && s;
      });
      expect(m.value('pinrich_records_in_total', { worker: 'caption', topic: t.pinEvents })).toBe(6);
      expect(m.value('pinrich_records_out_total', { worker: 'caption', topic: t.captions })).toBe(4);
      expect(m.value('pinrich_dead_letters_total', { worker: 'caption', topic: t.pinEvents, code: 'malformed_json' })).toBe(1);
      expect(m.value('pinrich_dead_letters_total', { worker: 'caption', topic: t.pinEvents, code: 'unknown_schema_version' })).toBe(1);
      expect(m.value('pinrich_dead_letters_total')).toBe(2);
      expect(m.value('pinrich_caption_failures_total', { worker: 'caption', code: 'url_rejected' })).toBe(1);
      expect(m.value('pinrich_model_request_duration_seconds_count', { worker: 'caption', outcome: 'ok' })).toBe(2);
      expect(m.value('pinrich_model_tokens_total', { worker: 'caption', kind: 'prompt' })).toBeGreaterThan(0);
      expect(m.value('pinrich_model_requests_in_flight', { worker: 'caption' })).toBe(0);
      expect(m.value('pinrich_cache_hits_total', { worker: 'caption' })).toBe(1);
      expect(m.value('pinrich_consumer_joined', { worker: 'caption' })).toBe(1);
      expect(m.value('pinrich_consumer_lag', { worker: 'caption' })).toBe(0);
      expect(m.value('pinrich_batch_duration_seconds_count', { worker: 'caption' })).toBeGreaterThanOrEqual(1);
      expect(m.value('pinrich_stage_events_total', { worker: 'caption', event: 'ok' })).toBe(3);
      expect(m.value('process_resident_memory_bytes')).toBeGreaterThan(0);
    } finally {
      await app.stop();
    }
    // Stopped: the port is released.
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });

  it('serves no endpoint unless asked (demo, benchmarks, tests)', async () => {
    // A real port is configured (the harness's default 0 would mean "off" by itself): only the
    // missing serveOps keeps the endpoint closed.
    const port = await freePort();
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl, PINRICH_METRICS_PORT: String(port) });
    await setupTopics(config);
    const app = await startApp(config, ['caption'], silentLogger);
    try {
      expect(app.ops).toBeUndefined();
      await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
    } finally {
      await app.stop();
    }
    // Control: the same config with serveOps does answer on that port.
    const served = await startApp(config, ['caption'], silentLogger, { serveOps: true });
    try {
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    } finally {
      await served.stop();
    }
  });
});
