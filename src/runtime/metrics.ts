/**
 * A small Prometheus registry: counters, gauges and histograms with labels, plus collectors
 * that read a value at scrape time (stage stats, process figures), rendered in the text
 * exposition format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).
 *
 * Why not prom-client: pinrich needs a dozen series, no default Node.js metrics beyond three
 * process figures, and no push gateway; this file is the whole dependency. Updates on the hot
 * path are one Map lookup keyed by the joined label values; nothing is formatted until a scrape.
 */

export type Labels = Readonly<Record<string, string | number>>;

type Kind = 'counter' | 'gauge' | 'histogram';

interface Family {
  name: string;
  help: string;
  kind: Kind;
  render(out: string[]): void;
}

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
  expose(): string;
}

export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Latency buckets in seconds, from a cached answer (5 ms) to a slow VLM call (60 s). */
export const LATENCY_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function createRegistry(): Registry {
  const families = new Map<string, Family>();

  function add(f: Family): void {
    if (!NAME.test(f.name)) throw new Error(`invalid metric name ${f.name}`);
    if (families.has(f.name)) throw new Error(`metric ${f.name} registered twice`);
    families.set(f.name, f);
  }

  function checkLabelNames(name: string, labelNames: readonly string[]): void {
    for (const l of labelNames) if (!LABEL.test(l) || l === 'le') throw new Error(`invalid label ${l} on ${name}`);
  }

  /** Series of one family, keyed by label values in `labelNames` order. */
  function series<T>(name: string, labelNames: readonly string[], init: () => T) {
    const map = new Map<string, { labels: Labels; value: T }>();
    const keyOf = (labels: Labels | undefined) => {
      if (labelNames.length === 0) return '';
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
      get(labels: Labels | undefined): T {
        const key = keyOf(labels);
        let s = map.get(key);
        if (!s) map.set(key, (s = { labels: pick(labels, labelNames), value: init() }));
        return s.value;
      },
      peek: (labels: Labels | undefined) => map.get(keyOf(labels))?.value,
    };
  }

  return {
    counter(name, help, labelNames = []) {
      checkLabelNames(name, labelNames);
      const s = series(name, labelNames, () => ({ v: 0 }));
      add({ name, help, kind: 'counter', render: (out) => s.map.forEach(({ labels, value }) => out.push(line(name, labels, value.v))) });
      return {
        inc(labels, by = 1) {
          if (by < 0) throw new Error(`counter ${name} cannot decrease`);
          s.get(labels).v += by;
        },
        get: (labels) => s.peek(labels)?.v ?? 0,
      };
    },
    gauge(name, help, labelNames = []) {
      checkLabelNames(name, labelNames);
      const s = series(name, labelNames, () => ({ v: 0 }));
      add({ name, help, kind: 'gauge', render: (out) => s.map.forEach(({ labels, value }) => out.push(line(name, labels, value.v))) });
      return {
        set: (labels, value) => void (s.get(labels).v = value),
        inc: (labels, by = 1) => void (s.get(labels).v += by),
        dec: (labels, by = 1) => void (s.get(labels).v -= by),
        get: (labels) => s.peek(labels)?.v ?? 0,
        remove(match) {
          for (const [key, { labels }] of s.map) {
            if (Object.entries(match).every(([k, v]) => String(labels[k]) === String(v))) s.map.delete(key);
          }
        },
      };
    },
    histogram(name, help, labelNames, buckets) {
      checkLabelNames(name, labelNames);
      const bounds = [...buckets].sort((a, b) => a - b);
      const s = series(name, labelNames, () => ({ counts: new Array<number>(bounds.length).fill(0), sum: 0, count: 0 }));
      add({
        name,
        help,
        kind: 'histogram',
        render(out) {
          s.map.forEach(({ labels, value }) => {
            let cumulative = 0;
            bounds.forEach((b, i) => {
              cumulative += value.counts[i]!;
              out.push(line(`${name}_bucket`, { ...labels, le: formatNumber(b) }, cumulative));
            });
            out.push(line(`${name}_bucket`, { ...labels, le: '+Inf' }, value.count));
            out.push(line(`${name}_sum`, labels, value.sum));
            out.push(line(`${name}_count`, labels, value.count));
          });
        },
      });
      return {
        observe(labels, v) {
          const h = s.get(labels);
          // Buckets are stored per bound (not cumulative) so an observation touches one slot.
          const i = bounds.findIndex((b) => v <= b);
          if (i >= 0) h.counts[i]!++;
          h.sum += v;
          h.count++;
        },
      };
    },
    collector(name, help, kind, collect) {
      add({
        name,
        help,
        kind,
        render(out) {
          let samples: Sample[];
          try {
            samples = collect();
          } catch {
            return; // a broken collector must not break the scrape; its family is left empty
          }
          for (const sm of samples) out.push(line(name, sm.labels ?? {}, sm.value));
        },
      });
    },
    expose() {
      const out: string[] = [];
      for (const f of families.values()) {
        out.push(`# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
        out.push(`# TYPE ${f.name} ${f.kind}`);
        f.render(out);
      }
      return out.join('\n') + '\n';
    },
  };
}

function pick(labels: Labels | undefined, names: readonly string[]): Labels {
  const out: Record<string, string | number> = {};
  for (const n of names) out[n] = labels![n]!;
  return out;
}

function line(name: string, labels: Labels, value: number): string {
  const entries = Object.entries(labels);
  const ls = entries.length ? `{${entries.map(([k, v]) => `${k}="${escapeLabel(String(v))}"`).join(',')}}` : '';
  return `${name}${ls} ${formatNumber(value)}`;
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

function formatNumber(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
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

/** process_* figures that every Prometheus client exposes; read at scrape time. */
export function registerProcessMetrics(registry: Registry, now: () => number = Date.now): void {
  const startSeconds = (now() - process.uptime() * 1000) / 1000;
  registry.collector('process_start_time_seconds', 'Start time of the process since unix epoch in seconds', 'gauge', () => [{ value: Math.round(startSeconds) }]);
  registry.collector('process_resident_memory_bytes', 'Resident memory size in bytes', 'gauge', () => [{ value: process.memoryUsage.rss() }]);
  registry.collector('process_cpu_seconds_total', 'Total user and system CPU time spent in seconds', 'counter', () => {
    const u = process.cpuUsage();
    return [{ value: (u.user + u.system) / 1e6 }];
  });
}
