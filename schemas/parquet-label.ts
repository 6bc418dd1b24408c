/**
 * The column layout of the label dump files (Parquet, zstd) under
 * s3://<bucket>/labels/dt=YYYY-MM-DD/hour=HH/<topic>-p<partition>-<first>-<last>.parquet.
 * One row per label record; `kafka_*` columns say where the row came from, which makes
 * "exactly one row per label" checkable.
 */
export const PARQUET_LABEL_COLUMNS = [
  { name: 'pair_id', type: 'VARCHAR', doc: 'pair key' },
  { name: 'pin_id', type: 'VARCHAR', doc: 'pin' },
  { name: 'query', type: 'VARCHAR', doc: 'search query as scored' },
  { name: 'language', type: 'VARCHAR', doc: 'BCP-47 or und' },
  { name: 'label', type: 'TINYINT', doc: 'hard label 1-5' },
  { name: 'p1', type: 'DOUBLE', doc: 'P(label=1); NULL when the server gave no logprobs' },
  { name: 'p2', type: 'DOUBLE', doc: 'P(label=2)' },
  { name: 'p3', type: 'DOUBLE', doc: 'P(label=3)' },
  { name: 'p4', type: 'DOUBLE', doc: 'P(label=4)' },
  { name: 'p5', type: 'DOUBLE', doc: 'P(label=5)' },
  { name: 'expected_score', type: 'DOUBLE', doc: 'sum of level x probability' },
  { name: 'label_source', type: 'VARCHAR', doc: 'how the label was obtained: logprobs | constrained | answer_text | top_logprobs | hard_only | classifier (see schemas/label.ts)' },
  { name: 'teacher_model', type: 'VARCHAR', doc: 'model name' },
  { name: 'prompt_version', type: 'VARCHAR', doc: 'teacher prompt version' },
  { name: 'prompt_hash', type: 'VARCHAR', doc: 'sha256 of the exact prompt' },
  { name: 'doc_version', type: 'INTEGER', doc: 'enriched document version the teacher saw' },
  { name: 'doc_hash', type: 'VARCHAR', doc: 'enriched document content hash' },
  { name: 'prompt_tokens', type: 'INTEGER', doc: 'usage' },
  { name: 'completion_tokens', type: 'INTEGER', doc: 'usage' },
  { name: 'cached_prompt_tokens', type: 'INTEGER', doc: 'prompt tokens served from the prefix cache' },
  { name: 'latency_ms', type: 'DOUBLE', doc: 'model call latency' },
  { name: 'labeled_at', type: 'TIMESTAMP', doc: 'UTC' },
  { name: 'kafka_topic', type: 'VARCHAR', doc: 'source topic' },
  { name: 'kafka_partition', type: 'INTEGER', doc: 'source partition' },
  { name: 'kafka_offset', type: 'BIGINT', doc: 'source offset (unique per topic/partition)' },
] as const;
