/** The Prometheus registry, the ops endpoint and the model-call decorators, without any service. */
import { describe, expect, it } from 'vitest';
import type { Captioner } from '../../src/adapters/openai/captioner.js';
import { PinrichError } from '../../src/errors.js';
import { instrumentCaptioner } from '../../src/runtime/instrument.js';
import { createPipelineMetrics, createRegistry, EXPOSITION_CONTENT_TYPE, registerProcessMetrics } from '../../src/runtime/metrics.js';
import { startOpsServer } from '../../src/runtime/ops-server.js';

describe('metrics registry (prom-client, text format 0.0.4)', () => {
  it('renders counters and gauges with HELP, TYPE and escaped labels', async () => {
    const r = createRegistry();
    const c = r.counter('x_total', 'Things\ncounted', ['topic']);
    c.inc({ topic: 'a' });
    c.inc({ topic: 'a' }, 2);
    c.inc({ topic: 'we"ird\\\n' });
    const g = r.gauge('lag', 'Lag', ['p']);
    g.set({ p: 1 }, 7);
    g.set({ p: 2 }, 3);
    g.remove({ p: 2 });
    expect(await r.expose()).toBe(
      [
        '# HELP x_total Things\\ncounted',
        '# TYPE x_total counter',
        'x_total{topic="a"} 3',
        'x_total{topic="we\\"ird\\\\\\n"} 1',
        '',
        '# HELP lag Lag',
        '# TYPE lag gauge',
        'lag{p="1"} 7',
        '',
      ].join('\n'),
    );
    expect(c.get({ topic: 'a' })).toBe(3);
    expect(() => c.inc({ topic: 'a' }, -1)).toThrow(/cannot decrease/);
    expect(() => c.inc({})).toThrow(/label topic missing/);
    expect(() => r.counter('x_total', 'again')).toThrow(/twice/);
  });

  it('renders histograms with cumulative buckets, +Inf, _sum and _count', async () => {
    const r = createRegistry();
    const h = r.histogram('d_seconds', 'Durations', ['w'], [0.1, 1]);
    for (const v of [0.05, 0.1, 0.5, 3]) h.observe({ w: 'x' }, v);
    expect((await r.expose()).split('\n').filter((l) => !l.startsWith('#') && l)).toEqual([
      'd_seconds_bucket{le="0.1",w="x"} 2',
      'd_seconds_bucket{le="1",w="x"} 3',
      'd_seconds_bucket{le="+Inf",w="x"} 4',
      'd_seconds_sum{w="x"} 3.65',
      'd_seconds_count{w="x"} 4',
    ]);
  });

  it('reads collectors at scrape time and skips a broken one', async () => {
    const r = createRegistry();
    let n = 1;
    r.collector('hits_total', 'Hits', 'counter', () => [{ labels: { worker: 'caption' }, value: n }]);
    r.collector('broken', 'Broken', 'gauge', () => {
      throw new Error('boom');
    });
    n = 5;
    const text = await r.expose();
    expect(text).toContain('hits_total{worker="caption"} 5');
    expect(text).toContain('# TYPE broken gauge');
  });

  it("serves prom-client's default Node.js metrics beside pinrich's series, under their usual names", async () => {
    const m = createPipelineMetrics();
    registerProcessMetrics(m.registry);
    m.recordsIn.inc({ worker: 'enrich', topic: 'pins.events' }, 3);
    const text = await m.registry.expose();
    const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, name, kind]) => [name!, kind!]));
    // pinrich's own series, names and kinds unchanged
    expect(types.get('pinrich_records_in_total')).toBe('counter');
    expect(types.get('pinrich_batch_duration_seconds')).toBe('histogram');
    expect(text).toContain('pinrich_records_in_total{worker="enrich",topic="pins.events"} 3');
    // the process figures pinrich served before, and event-loop lag, GC and heap
    for (const [name, kind] of [
      ['process_cpu_seconds_total', 'counter'],
      ['process_resident_memory_bytes', 'gauge'],
      ['process_start_time_seconds', 'gauge'],
      ['nodejs_eventloop_lag_seconds', 'gauge'],
      ['nodejs_eventloop_lag_p99_seconds', 'gauge'],
      ['nodejs_gc_duration_seconds', 'histogram'],
      ['nodejs_heap_size_used_bytes', 'gauge'],
      ['nodejs_heap_size_total_bytes', 'gauge'],
    ] as const) expect(types.get(name), name).toBe(kind);
    expect(Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1])).toBeGreaterThan(0);
    expect(() => registerProcessMetrics(createRegistry())).not.toThrow();
  });
});

describe('model-call decorators', () => {
  it('time every call by outcome, count tokens and track in-flight requests', async () => {
    const m = createPipelineMetrics();
    let fail = false;
    let inFlightSeen = -1;
    const bare: Captioner = {
      model: 'vlm',
      promptVersion: 'v1',
      async describe() {
        inFlightSeen = m.modelInFlight.get({ worker: 'caption', model: 'vlm' });
        if (fail) throw new PinrichError('model_rejected_request', 'no');
        return { text: 'a cat', usage: { prompt_tokens: 100, completion_tokens: 5, total_tokens: 105, cached_prompt_tokens: 40 } };
      },
    };
    const c = instrumentCaptioner(bare, m);
    const signal = new AbortController().signal;
    await c.describe('https://x/1.jpg', { signal });
    fail = true;
    await expect(c.describe('https://x/2.jpg', { signal })).rejects.toThrow();
    expect(inFlightSeen).toBe(1);
    expect(m.modelInFlight.get({ worker: 'caption', model: 'vlm' })).toBe(0);
    expect(m.modelTokens.get({ worker: 'caption', model: 'vlm', kind: 'prompt' })).toBe(100);
    expect(m.modelTokens.get({ worker: 'caption', model: 'vlm', kind: 'cached_prompt' })).toBe(40);
    const text = await m.registry.expose();
    expect(text).toContain('pinrich_model_request_duration_seconds_count{worker="caption",model="vlm",outcome="ok"} 1');
    expect(text).toContain('pinrich_model_request_duration_seconds_count{worker="caption",model="vlm",outcome="model_rejected_request"} 1');
  });
});

describe('ops server', () => {
  it('serves /metrics, and /healthz and /readyz from their checks', async () => {
    const r = createRegistry();
    r.counter('up_total', 'Up').inc();
    let joined = false;
    const ops = await startOpsServer({
      port: 0,
      host: '127.0.0.1',
      registry: r,
      liveness: { loop: () => null },
      readiness: { caption: () => (joined ? null : 'not joined'), slow: () => new Promise<null>((res) => setTimeout(() => res(null), 10)) },
    });
    try {
      const base = `http://127.0.0.1:${ops.port}`;
      const metrics = await fetch(`${base}/metrics`);
      expect(metrics.headers.get('content-type')).toBe(EXPOSITION_CONTENT_TYPE);
      expect(await metrics.text()).toContain('up_total 1');
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const notReady = await fetch(`${base}/readyz`);
      expect(notReady.status).toBe(503);
      expect(await notReady.json()).toEqual({ status: 'failing', checks: { caption: 'not joined', slow: 'ok' } });
      joined = true;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect((await fetch(`${base}/nope`)).status).toBe(404);
      expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
    } finally {
      await ops.close();
    }
  });

  it('fails start-up with a clear message when the port is taken', async () => {
    const first = await startOpsServer({ port: 0, host: '127.0.0.1', registry: createRegistry(), liveness: {}, readiness: {} });
    try {
      await expect(startOpsServer({ port: first.port, host: '127.0.0.1', registry: createRegistry(), liveness: {}, readiness: {} })).rejects.toThrow(
        /PINRICH_METRICS_PORT \d+ is in use/,
      );
    } finally {
      await first.close();
    }
  });
});
