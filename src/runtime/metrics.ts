/**
 * pinrich's Prometheus registry, on prom-client: counters, gauges and histograms with labels,
 * collectors that read a value at scrape time (stage stats), and prom-client's default Node.js
 * metrics (process CPU, memory and start time, event-loop lag, GC, heap) beside them, in the
 * text exposition format 0.0.4 that operators' scrapers and dashboards expect.
 *
 * The interface is pinrich's own (the stages and the runtime never see prom-client): every
 * instrument is a prom-client one, plus a synchronous `get` for progress reports and tests, and
 * a gauge `remove` by partial labels (partitions no longer assigned), which prom-client lacks.
 */
import { collectDefaultMetrics, Counter as PromCounter, Gauge as PromGauge, Histogram as PromHistogram, Registry as PromRegistry } from 'prom-client';

export type Labels = Readonly<Record<string, string | number>>;

export interface Counter {
  inc(labels?: Labels, by?: number): void;
  /** Current value (tests, progress reports). */
  get(labels?: Labels): number;
}

export interface Gauge {
  set(labels: Labels | undefined, value: number): void;
  inc(labels?: Labels, by?: number): void;
  dec(labels?: Labels, by?: number): void;
  get(labels?: Labels): number;
  /** Drop every series whose labels include all of `match` (e.g. partitions no longer assigned). */
  remove(match: Labels): void;
}

export interface Histogram {
  /** One observation, in the histogram's unit (seconds for durations). */
  observe(labels: Labels | undefined, value: number): void;
}

/** A value read at scrape time. */
export interface Sample {
  labels?: Labels;
  value: number;
}

export interface Registry {
  counter(name: string, help: string, labelNames?: readonly string[]): Counter;
  gauge(name: string, help: string, labelNames?: readonly string[]): Gauge;
  histogram(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]): Histogram;
  /** A family whose samples `collect` returns at each scrape. A collector that throws is skipped. */
  collector(name: string, help: string, kind: 'counter' | 'gauge', collect: () => Sample[]): void;
  /** Every family in the text exposition format 0.0.4. */
  expose(): Promise<string>;
}

export const EXPOSITION_CONTENT_TYPE: string = PromRegistry.PROMETHEUS_CONTENT_TYPE;

/** Latency buckets in seconds, from a cached answer (5 ms) to a slow VLM call (60 s). */
export const LATENCY_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** The prom-client registry behind each of ours (for the default metrics). */
const promOf = new WeakMap<Registry, PromRegistry>();

export function createRegistry(): Registry {
  const prom = new PromRegistry();
  const names = new Set<string>();

  function claim(name: string, labelNames: readonly string[]): void {
    // Our messages, checked before prom-client's: callers and tests rely on them.
    if (names.has(name)) throw new Error(`metric ${name} registered twice`);
    for (const l of labelNames) if (!LABEL.test(l) || l === 'le') throw new Error(`invalid label ${l} on ${name}`);
    names.add(name);
  }

  /**
   * The label sets and values of one family, keyed by label values in `labelNames` order: what
   * `get` and `remove` read (prom-client has no synchronous read), and the check that every
   * label is given (prom-client would silently record a partial label set).
   */
  function series(name: string, labelNames: readonly string[]) {
    const map = new Map<string, { labels: Record<string, string | number>; v: number }>();
    const keyOf = (labels: Labels | undefined) => {
      let key = '';
      for (const l of labelNames) {
        const v = labels?.[l];
        if (v === undefined) throw new Error(`metric ${name}: label ${l} missing`);
        key += String(v) + '\u0000';
      }
      return key;
    };
    return {
      map,
      entry(labels: Labels | undefined) {
        const key = keyOf(labels);
        let e = map.get(key);
        if (!e) map.set(key, (e = { labels: pick(labels, labelNames), v: 0 }));
        return e;
      },
      peek: (labels: Labels | undefined) => map.get(keyOf(labels))?.v ?? 0,
    };
  }

  const registry: Registry = {
    counter(name, help, labelNames = []) {
      claim(name, labelNames);
      const c = new PromCounter({ name, help, labelNames: [...labelNames], registers: [prom] });
      const s = series(name, labelNames);
      return {
        inc(labels, by = 1) {
          if (by < 0) throw new Error(`counter ${name} cannot decrease`);
          const e = s.entry(labels);
          e.v += by;
          c.inc(e.labels, by);
        },
        get: (labels) => s.peek(labels),
      };
    },
    gauge(name, help, labelNames = []) {
      claim(name, labelNames);
      const g = new PromGauge({ name, help, labelNames: [...labelNames], registers: [prom] });
      const s = series(name, labelNames);
      const set = (labels: Labels | undefined, value: number) => {
        const e = s.entry(labels);
        e.v = value;
        g.set(e.labels, value);
      };
      return {
        set,
        inc: (labels, by = 1) => set(labels, s.peek(labels) + by),
        dec: (labels, by = 1) => set(labels, s.peek(labels) - by),
        get: (labels) => s.peek(labels),
        remove(match) {
          for (const [key, { labels }] of s.map) {
            if (Object.entries(match).every(([k, v]) => String(labels[k]) === String(v))) {
              s.map.delete(key);
              g.remove(labels);
            }
          }
        },
      };
    },
    histogram(name, help, labelNames, buckets) {
      claim(name, labelNames);
      const h = new PromHistogram({ name, help, labelNames: [...labelNames], buckets: [...buckets].sort((a, b) => a - b), registers: [prom] });
      const s = series(name, labelNames);
      return { observe: (labels, value) => h.observe(s.entry(labels).labels, value) };
    },
    collector(name, help, kind, collect) {
      claim(name, []);
      // A metric object of prom-client's shape whose values are read at scrape time; its label
      // names are whatever the samples carry (the stages' counters are not known up front).
      prom.registerMetric({
        name,
        help,
        type: kind,
        aggregator: 'sum',
        async get() {
          let samples: Sample[];
          try {
            samples = collect();
          } catch {
            samples = []; // a broken collector must not break the scrape; its family is left empty
          }
          return { name, help, type: kind, aggregator: 'sum', values: samples.map((sm) => ({ labels: { ...(sm.labels ?? {}) }, value: sm.value })) };
        },
        reset() {},
      } as unknown as Parameters<PromRegistry['registerMetric']>[0]);
    },
    expose: () => prom.metrics(),
  };
  promOf.set(registry, prom);
  return registry;
}

function pick(labels: Labels | undefined, names: readonly string[]): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const n of names) out[n] = labels![n]!;
  return out;
}

/**
 * The instruments every pinrich process has. Label `worker` is the stage name, so `run all`
 * serves every worker on one port and dashboards still split by worker.
 */
export function createPipelineMetrics(registry: Registry = createRegistry()) {
  return {
    registry,
    recordsIn: registry.counter('pinrich_records_in_total', 'Records consumed (handed to the stage and committed past), by input topic', ['worker', 'topic']),
    recordsOut: registry.counter('pinrich_records_out_total', 'Records published by the stage (acks=all), by output topic; dead letters excluded', ['worker', 'topic']),
    deadLetters: registry.counter('pinrich_dead_letters_total', 'Records dead-lettered to <topic>.dlq, by source topic and error code', ['worker', 'topic', 'code']),
    batchDuration: registry.histogram('pinrich_batch_duration_seconds', 'Time to process, publish and commit one batch (chunk) of records, retries included', ['worker'], LATENCY_BUCKETS),
    batchRetries: registry.counter('pinrich_batch_retries_total', 'Batches (or offset commits) retried after an infrastructure error (Redis, Kafka, S3)', ['worker']),
    consumerLag: registry.gauge('pinrich_consumer_lag', 'Records behind the partition high watermark after the last processed batch (the consumer\'s own view)', ['worker', 'topic', 'partition']),
    workerJoined: registry.gauge('pinrich_consumer_joined', '1 while the worker\'s consumer is a member of its group, else 0', ['worker']),
    modelLatency: registry.histogram('pinrich_model_request_duration_seconds', 'Duration of one model HTTP request, by outcome (ok or the error code)', ['worker', 'model', 'outcome'], LATENCY_BUCKETS),
    modelTokens: registry.counter('pinrich_model_tokens_total', 'Tokens reported by the model server, by kind (prompt, completion, cached_prompt)', ['worker', 'model', 'kind']),
    modelInFlight: registry.gauge('pinrich_model_requests_in_flight', 'Model requests currently awaiting an answer', ['worker', 'model']),
  };
}
export type PipelineMetrics = ReturnType<typeof createPipelineMetrics>;

/**
 * prom-client's default Node.js metrics on `registry`: process_cpu_seconds_total,
 * process_resident_memory_bytes, process_start_time_seconds, process_open_fds, ...,
 * nodejs_eventloop_lag_* (event-loop lag), nodejs_gc_duration_seconds (GC pauses by kind),
 * nodejs_heap_size_*_bytes and nodejs_heap_space_size_*_bytes (V8 heap), and more. Once per
 * registry; read at scrape time.
 */
export function registerProcessMetrics(registry: Registry): void {
  const prom = promOf.get(registry);
  if (!prom) throw new Error('registerProcessMetrics needs a registry from createRegistry()');
  collectDefaultMetrics({ register: prom });
}
