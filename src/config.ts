/**
 * The one place that reads the environment. Every option is declared once below (environment
 * variable, zod type, default, doc, secret flag); `loadConfig` parses them all, reports every
 * problem at once by variable name, and returns a deep-frozen object. The README's
 * configuration table is generated from the same list (`pinrich config doc`).
 *
 * Sources, later wins: defaults, the JSON file named by PINRICH_CONFIG_FILE (keys are the
 * variable names), the environment.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';

const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const num = (min: number, max: number) => z.coerce.number().min(min).max(max);
const list = z.string().transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean));
const str = z.string().min(1);
const optStr = z.string().optional();
/** Five distinct levels 1-5, comma-separated: the relevance level of classifier class 0..4. */
const classLevels = z.string().transform((v, ctx) => {
  const levels = v.split(',').map((x) => Number(x.trim()));
  if (levels.length !== 5 || levels.some((l) => !Number.isInteger(l) || l < 1 || l > 5) || new Set(levels).size !== 5) {
    ctx.addIssue({ code: 'custom', message: 'expected five distinct levels 1-5, comma-separated: the level of class 0, 1, 2, 3, 4' });
    return z.NEVER;
  }
  return levels as Array<1 | 2 | 3 | 4 | 5>;
});

interface Option<T extends z.ZodType = z.ZodType> {
  env: string;
  type: T;
  default?: string;
  doc: string;
  secret?: boolean;
}
const opt = <T extends z.ZodType>(o: Option<T>) => o;

/** Every option pinrich has. Keep docs short; they become the README table. */
export const OPTIONS = {
  // Kafka
  kafkaBrokers: opt({ env: 'PINRICH_KAFKA_BROKERS', type: list, default: '127.0.0.1:9092', doc: 'Comma-separated bootstrap brokers' }),
  kafkaClientId: opt({ env: 'PINRICH_KAFKA_CLIENT_ID', type: str, default: 'pinrich', doc: 'Kafka client id' }),
  kafkaSsl: opt({ env: 'PINRICH_KAFKA_SSL', type: bool, default: 'false', doc: 'Use TLS to the brokers' }),
  kafkaSaslMechanism: opt({ env: 'PINRICH_KAFKA_SASL_MECHANISM', type: z.enum(['none', 'plain', 'scram-sha-256', 'scram-sha-512']), default: 'none', doc: 'SASL mechanism' }),
  kafkaSaslUsername: opt({ env: 'PINRICH_KAFKA_SASL_USERNAME', type: optStr, doc: 'SASL user name' }),
  kafkaSaslPassword: opt({ env: 'PINRICH_KAFKA_SASL_PASSWORD', type: optStr, doc: 'SASL password', secret: true }),
  kafkaSslCaFile: opt({ env: 'PINRICH_KAFKA_SSL_CA_FILE', type: optStr, doc: "PEM file of the CA that signed the brokers' certificates (implies TLS); unset = the system CAs" }),
  topicPrefix: opt({ env: 'PINRICH_TOPIC_PREFIX', type: z.string(), default: '', doc: 'Prefix for every topic name (tests use a random one)' }),
  topicPartitions: opt({ env: 'PINRICH_TOPIC_PARTITIONS', type: int(1, 1024), default: '4', doc: 'Partitions for `topics create` (all enrich inputs share it: co-partitioning)' }),
  topicReplication: opt({ env: 'PINRICH_TOPIC_REPLICATION', type: int(1, 16), default: '1', doc: 'Replication factor for `topics create`' }),
  groupPrefix: opt({ env: 'PINRICH_GROUP_PREFIX', type: z.string(), default: 'pinrich', doc: 'Consumer group id prefix; group = <prefix>.<worker>' }),
  kafkaSessionTimeoutMs: opt({ env: 'PINRICH_KAFKA_SESSION_TIMEOUT_MS', type: int(6_000, 300_000), default: '30000', doc: 'Consumer session timeout: how long a crashed instance holds its partitions' }),
  kafkaFetchMinBytes: opt({ env: 'PINRICH_KAFKA_FETCH_MIN_BYTES', type: int(1, 64 * 1024 * 1024), default: '1', doc: 'Bytes a consumer fetch waits for (up to PINRICH_KAFKA_FETCH_MAX_WAIT_MS) before the broker answers: higher means fewer, fuller fetches (less CPU at moderate rates, more latency)' }),
  kafkaFetchMaxWaitMs: opt({ env: 'PINRICH_KAFKA_FETCH_MAX_WAIT_MS', type: int(0, 30_000), default: '5000', doc: 'Longest a consumer fetch waits at the broker for PINRICH_KAFKA_FETCH_MIN_BYTES' }),
  kafkaWaitMs: opt({ env: 'PINRICH_KAFKA_WAIT_MS', type: int(1_000, 3_600_000), default: '120000', doc: 'How long a worker waits for an unreachable Kafka cluster (at start-up, or to rejoin its group after a crash) before it gives up: exits, or reports itself dead on /healthz' }),
  maxRecordBytes: opt({ env: 'PINRICH_MAX_RECORD_BYTES', type: int(1_024, 16 * 1024 * 1024), default: String(256 * 1024), doc: 'Larger input records are dead-lettered as oversized_record' }),
  // Redis
  redisUrl: opt({ env: 'PINRICH_REDIS_URL', type: str, default: 'redis://127.0.0.1:6379', doc: 'Redis URL (redis:// or rediss:// for TLS; may hold a password)', secret: true }),
  redisTlsCaFile: opt({ env: 'PINRICH_REDIS_TLS_CA_FILE', type: optStr, doc: 'PEM file of the CA that signed the Redis server certificate (with rediss://); unset = the system CAs' }),
  redisCluster: opt({ env: 'PINRICH_REDIS_CLUSTER', type: bool, default: 'false', doc: 'PINRICH_REDIS_URL names seed nodes of a Redis Cluster (comma-separated URLs or host:port; AUTH and TLS from the URL that carries them)' }),
  redisKeyPrefix: opt({ env: 'PINRICH_REDIS_PREFIX', type: z.string(), default: 'pinrich:', doc: 'Prefix of every Redis key' }),
  redisWaitMs: opt({ env: 'PINRICH_REDIS_WAIT_MS', type: int(1_000, 3_600_000), default: '120000', doc: 'How long a worker waits at start-up for an unreachable Redis before it exits (it warns within 2 s, naming the address)' }),
  // S3
  s3Endpoint: opt({ env: 'PINRICH_S3_ENDPOINT', type: optStr, doc: 'S3 endpoint URL; unset means AWS' }),
  s3Region: opt({ env: 'PINRICH_S3_REGION', type: str, default: 'us-east-1', doc: 'S3 region' }),
  s3Bucket: opt({ env: 'PINRICH_S3_BUCKET', type: str, default: 'pinrich', doc: 'Bucket for label dumps' }),
  s3Prefix: opt({ env: 'PINRICH_S3_PREFIX', type: z.string(), default: '', doc: 'Key prefix inside the bucket' }),
  s3AccessKeyId: opt({ env: 'PINRICH_S3_ACCESS_KEY_ID', type: optStr, doc: 'Static S3 access key (local stacks, MinIO); unset = AWS default credential chain (env, profile, instance/pod role)' }),
  s3SecretAccessKey: opt({ env: 'PINRICH_S3_SECRET_ACCESS_KEY', type: optStr, doc: 'Static S3 secret key', secret: true }),
  s3ForcePathStyle: opt({ env: 'PINRICH_S3_FORCE_PATH_STYLE', type: bool, default: 'true', doc: 'Path-style addressing (needed by s3rver/MinIO)' }),
  // Vision model (captions)
  vlmBaseUrl: opt({ env: 'PINRICH_VLM_BASE_URL', type: optStr, doc: 'OpenAI-compatible base URL of the VLM; unset = the built-in stand-in server (demo only)' }),
  vlmApiKey: opt({ env: 'PINRICH_VLM_API_KEY', type: z.string(), default: 'not-needed', doc: 'API key for the VLM', secret: true }),
  vlmModel: opt({ env: 'PINRICH_VLM_MODEL', type: str, default: 'pinrich-standin-vlm', doc: 'VLM model name' }),
  vlmMaxTokens: opt({ env: 'PINRICH_VLM_MAX_TOKENS', type: int(8, 1024), default: '80', doc: 'Caption length limit in tokens' }),
  vlmConcurrency: opt({ env: 'PINRICH_VLM_CONCURRENCY', type: int(1, 1024), default: '16', doc: 'In-flight caption requests per worker' }),
  vlmRequestsPerSecond: opt({ env: 'PINRICH_VLM_RPS', type: num(0, 1e6), default: '0', doc: 'Shared request-rate limit across instances (0 = none)' }),
  vlmTokensPerMinute: opt({ env: 'PINRICH_VLM_TPM', type: num(0, 1e9), default: '0', doc: 'Shared token-rate limit across instances (0 = none)' }),
  // Teacher LLM (scores)
  teacherBaseUrl: opt({ env: 'PINRICH_TEACHER_BASE_URL', type: optStr, doc: 'OpenAI-compatible base URL of the teacher; unset = the built-in stand-in server (demo only)' }),
  teacherApiKey: opt({ env: 'PINRICH_TEACHER_API_KEY', type: z.string(), default: 'not-needed', doc: 'API key for the teacher', secret: true }),
  teacherModel: opt({ env: 'PINRICH_TEACHER_MODEL', type: str, default: 'pinrich-standin-teacher', doc: 'Teacher model name' }),
  teacherConcurrency: opt({ env: 'PINRICH_TEACHER_CONCURRENCY', type: int(1, 4096), default: '64', doc: 'In-flight teacher requests per worker (with PINRICH_TEACHER_API=completions each carries up to PINRICH_TEACHER_BATCH pairs)' }),
  teacherRequestsPerSecond: opt({ env: 'PINRICH_TEACHER_RPS', type: num(0, 1e6), default: '0', doc: 'Shared request-rate limit (0 = none)' }),
  teacherTokensPerMinute: opt({ env: 'PINRICH_TEACHER_TPM', type: num(0, 1e9), default: '0', doc: 'Shared token-rate limit (0 = none)' }),
  // Model calls
  modelTimeoutMs: opt({ env: 'PINRICH_MODEL_TIMEOUT_MS', type: int(100, 600_000), default: '30000', doc: 'Per-request timeout' }),
  modelMaxAttempts: opt({ env: 'PINRICH_MODEL_MAX_ATTEMPTS', type: int(1, 20), default: '5', doc: 'Attempts per model call (429/5xx/timeouts)' }),
  modelBackoffBaseMs: opt({ env: 'PINRICH_MODEL_BACKOFF_BASE_MS', type: int(1, 60_000), default: '200', doc: 'First backoff; doubles per attempt, full jitter' }),
  modelBackoffMaxMs: opt({ env: 'PINRICH_MODEL_BACKOFF_MAX_MS', type: int(1, 600_000), default: '10000', doc: 'Backoff cap (Retry-After may ask for longer, up to 60 s)' }),
  // Image URL policy
  imageAllowedSchemes: opt({ env: 'PINRICH_IMAGE_SCHEMES', type: list, default: 'https', doc: 'URL schemes allowed for images' }),
  imageAllowedHosts: opt({ env: 'PINRICH_IMAGE_HOSTS', type: list, default: '', doc: 'Host allowlist (suffix match, e.g. pinimg.com); empty = any public host' }),
  // Enrich
  enrichTopK: opt({ env: 'PINRICH_ENRICH_TOP_K', type: int(1, 100), default: '10', doc: 'Board titles and engaged queries kept per pin' }),
  enrichWindowMs: opt({ env: 'PINRICH_ENRICH_WINDOW_MS', type: int(0, 3_600_000), default: '1000', doc: 'Changes to a pin within this window become one new document version' }),
  enrichDedupTtlSeconds: opt({ env: 'PINRICH_ENRICH_DEDUP_TTL_S', type: int(60, 90 * 86_400), default: String(7 * 86_400), doc: 'How long an engagement event_id is remembered for deduplication' }),
  enrichBufferBytes: opt({ env: 'PINRICH_ENRICH_BUFFER_BYTES', type: int(65_536, 1024 * 1024 * 1024), default: String(16 * 1024 * 1024), doc: 'Input bytes the enrich worker holds in memory between two state flushes (all partitions); when full, consuming waits for the next flush' }),
  enrichCatchUpWindowMs: opt({ env: 'PINRICH_ENRICH_CATCHUP_WINDOW_MS', type: int(0, 3_600_000), default: '5000', doc: 'Coalescing window while the enrich worker catches up on a backlog (its buffer filled up): fewer document versions per event; never shorter than PINRICH_ENRICH_WINDOW_MS' }),
  enrichTransactions: opt({ env: 'PINRICH_ENRICH_TRANSACTIONS', type: bool, default: 'true', doc: 'Publish each input partition\'s documents in that partition\'s Kafka transaction (transactional id <topic prefix><group prefix>.enrich-p<partition>), so an instance that lost the partition cannot publish them; readers of pins.enriched must read committed (kafkajs consumers do by default; Java consumers need isolation.level=read_committed)' }),
  enrichMinePairs: opt({ env: 'PINRICH_ENRICH_MINE_PAIRS', type: bool, default: 'false', doc: 'Publish one relevance.pairs record per pin and new normalised search query' }),
  // Score
  teacherApi: opt({ env: 'PINRICH_TEACHER_API', type: z.enum(['chat', 'completions', 'classify']), default: 'chat', doc: "Teacher endpoint: chat (one prompt per request), completions (prompt arrays: several pairs per request, for servers such as vLLM and llama-server that take them) or classify (vLLM's /classify: a sequence-classification teacher whose class probabilities are the soft label)" }),
  teacherBatch: opt({ env: 'PINRICH_TEACHER_BATCH', type: int(1, 256), default: '16', doc: 'Prompts per request at most with PINRICH_TEACHER_API=completions' }),
  teacherTopLogprobs: opt({ env: 'PINRICH_TEACHER_TOP_LOGPROBS', type: int(0, 20), default: '20', doc: 'Alternatives asked for the answer token (soft labels); 0 = hard labels only' }),
  teacherMaxTokens: opt({ env: 'PINRICH_TEACHER_MAX_TOKENS', type: int(1, 256), default: '8', doc: 'Output tokens per generative teacher answer: room for a short answer ("The relevance is 4") when the server does not constrain decoding; a constrained answer stops after its digit' }),
  teacherConstrain: opt({ env: 'PINRICH_TEACHER_CONSTRAIN', type: z.enum(['auto', 'grammar', 'structured_outputs', 'none']), default: 'auto', doc: "Constrain generative teacher answers to the five levels: grammar (llama.cpp), structured_outputs (vLLM choice), auto (both; dropped for good when the server rejects them, as OpenAI does) or none" }),
  teacherClassLevels: opt({ env: 'PINRICH_TEACHER_CLASS_LEVELS', type: classLevels, default: '1,2,3,4,5', doc: 'With PINRICH_TEACHER_API=classify: the relevance level (1-5) of each class index 0..4 of the classifier (e.g. 5,4,3,2,1 when class 0 is "highly relevant")' }),
  scoreDocMaxAttempts: opt({ env: 'PINRICH_SCORE_DOC_ATTEMPTS', type: int(1, 20), default: '3', doc: "Reads of a pin's missing document before its pairs are dead-lettered (doc_not_found)" }),
  scoreDocRetryMs: opt({ env: 'PINRICH_SCORE_DOC_RETRY_MS', type: int(0, 60_000), default: '1000', doc: 'Wait before re-reading a missing document; doubles per read' }),
  scoreCacheTtlSeconds: opt({ env: 'PINRICH_SCORE_CACHE_TTL_S', type: int(60, 365 * 86_400), default: String(30 * 86_400), doc: 'How long a teacher label stays in the label cache' }),
  // Dump & labels
  dumpFlushRows: opt({ env: 'PINRICH_DUMP_FLUSH_ROWS', type: int(1, 10_000_000), default: '50000', doc: 'Offsets per dump object: objects cover aligned offset blocks of this size (the commit granularity)' }),
  dumpFlushAgeMs: opt({ env: 'PINRICH_DUMP_FLUSH_AGE_MS', type: int(100, 86_400_000), default: '60000', doc: 'Unflushed rows older than this are written as a partial object (superseded when the block fills)' }),
  labelsCache: opt({ env: 'PINRICH_LABELS_CACHE', type: str, default: '~/.cache/pinrich/labels', doc: 'Local cache of label dumps for `labels sync/query/eval/export` (~ = home directory)' }),
  // Runtime
  logLevel: opt({ env: 'PINRICH_LOG_LEVEL', type: z.enum(['debug', 'info', 'warn', 'error']), default: 'info', doc: 'Log level' }),
  metricsPort: opt({ env: 'PINRICH_METRICS_PORT', type: int(0, 65_535), default: '9464', doc: 'HTTP port of /metrics (Prometheus), /healthz and /readyz, one per process (0 = off)' }),
} as const;

type Options = typeof OPTIONS;
export type Config = { readonly [K in keyof Options]: z.output<Options[K]['type']> };

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
}

/**
 * Parse every option from `env` (and the JSON file PINRICH_CONFIG_FILE names, if any).
 * Throws ConfigError listing every problem; the values of secrets never appear in it.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const problems: string[] = [];
  let file: Record<string, unknown> = {};
  const path = env.PINRICH_CONFIG_FILE;
  if (path) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
      file = parsed as Record<string, unknown>;
      for (const key of Object.keys(file)) {
        if (!Object.values(OPTIONS).some((o) => o.env === key)) problems.push(`${key} (in ${path}): unknown option`);
      }
    } catch (err) {
      problems.push(`PINRICH_CONFIG_FILE: cannot read ${path}: ${(err as Error).message}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, o] of Object.entries(OPTIONS) as Array<[string, Option]>) {
    const raw = env[o.env] ?? (file[o.env] === undefined ? undefined : String(file[o.env])) ?? o.default;
    const parsed = o.type.safeParse(raw);
    if (parsed.success) out[key] = parsed.data;
    else {
      const shown = o.secret || raw === undefined ? '' : ` (got ${JSON.stringify(raw.slice(0, 80))})`;
      problems.push(`${o.env}: ${parsed.error.issues.map((i) => i.message).join('; ')}${shown}`);
    }
  }
  if (out.kafkaSaslMechanism !== 'none' && (!out.kafkaSaslUsername || !out.kafkaSaslPassword)) {
    problems.push('PINRICH_KAFKA_SASL_USERNAME/PINRICH_KAFKA_SASL_PASSWORD: required when PINRICH_KAFKA_SASL_MECHANISM is set');
  }
  if (problems.length) throw new ConfigError(problems);
  return Object.freeze(out) as Config;
}

/** The config with secrets masked, for logs and `pinrich config show`. */
export function redactConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, o] of Object.entries(OPTIONS) as Array<[keyof Config, Option]>) {
    const v = config[key];
    out[o.env] = o.secret && v !== undefined ? redactSecret(String(v)) : v;
  }
  return out;
}

/**
 * The secret strings of a config, for scrubbing text that leaves the process (logs, error
 * messages, dead-letter reasons): every secret option's value, or for a URL its password
 * (raw and percent-decoded). Placeholders shorter than 6 characters and option defaults
 * (`not-needed`) are left out: they are not secrets and would mangle ordinary text.
 */
export function secretValues(config: Config): string[] {
  const out = new Set<string>();
  for (const [key, o] of Object.entries(OPTIONS) as Array<[keyof Config, Option]>) {
    const v = config[key];
    if (!o.secret || typeof v !== 'string' || v === o.default) continue;
    // PINRICH_REDIS_URL may list several cluster seed URLs, each of which may carry the password.
    for (const item of key === 'redisUrl' ? v.split(',') : [v]) {
      let parts = [item];
      try {
        const u = new URL(item);
        if (u.protocol !== 'http:' && u.protocol !== 'https:' && !u.protocol.startsWith('redis')) throw new Error('not a service URL');
        parts = [u.password, decodeURIComponent(u.password)];
      } catch {
        // not a URL: the whole value is the secret
      }
      for (const p of parts) if (p.length >= 6) out.add(p);
    }
  }
  return [...out];
}

/** "redis://:hunter2@host" -> "redis://:***@host"; any other secret -> "***". */
function redactSecret(value: string): string {
  // A list of Redis Cluster seed URLs: each one masked on its own.
  if (value.includes(',') && value.startsWith('redis')) return value.split(',').map(redactSecret).join(',');
  try {
    const u = new URL(value);
    if (u.password || u.username) {
      if (u.password) u.password = '***';
      return u.toString();
    }
    if (u.protocol.startsWith('redis')) return value;
  } catch {
    // not a URL: fall through
  }
  return value ? '***' : value;
}

/** Markdown table of every option (README). */
export function configTable(): string {
  const rows = Object.values(OPTIONS).map(
    (o: Option) => `| \`${o.env}\` | ${o.default === undefined ? '—' : `\`${o.default}\``} | ${o.doc}${o.secret ? ' (secret)' : ''} |`,
  );
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
}

/** Topic names, with the configured prefix. All enrich inputs share one partition count. */
export function topics(config: Pick<Config, 'topicPrefix'>) {
  const p = config.topicPrefix;
  return {
    pinEvents: `${p}pins.events`,
    engagement: `${p}pins.engagement`,
    captions: `${p}pins.captions`,
    enriched: `${p}pins.enriched`,
    pairs: `${p}relevance.pairs`,
    labels: `${p}relevance.labels`,
  } as const;
}
export type Topics = ReturnType<typeof topics>;
export const dlqTopic = (topic: string) => `${topic}.dlq`;
