/**
 * `pinrich labels export --distill OUT.parquet`: a training set for the student model.
 *
 * One row per pair (its latest label, optionally of one model / prompt version): pin text, query,
 * soft label p1..p5, hard label, and provenance (model, prompt version and hash, the document
 * version/hash the teacher saw, labeled_at). Hard-only labels (no logprobs) get a one-hot soft
 * label; `label_source` says which rows those are.
 *
 * The dump rows carry no pin text. It is looked up in Redis, in the enriched document the enrich
 * worker keeps per pin (the DocumentReader of stages/score/ports.ts; field pin_text). That is the pin's *current*
 * document: when its content hash differs from the label's doc_hash the text is newer than what
 * the teacher saw, which `pin_text_matches_label` records. Without Redis, pin_text is NULL.
 */
import { createRedisFromConfig, pingRedis, type Redis } from '../adapters/redis/client.js';
import { createRedisDocumentReader } from '../adapters/redis/documents.js';
import { redisKeys } from '../adapters/redis/keys.js';
import type { Config } from '../config.js';
import type { LabelsDb } from './query.js';

export interface PinTextSource {
  /** Current enriched document text per pin id (absent: no document). */
  get(pinIds: readonly string[]): Promise<Map<string, { pinText: string; version: number; contentHash: string }>>;
  close(): void;
}

/**
 * Pin texts from the enrich worker's documents in the Redis `config` names (URL and TLS CA);
 * undefined when Redis cannot be reached.
 */
export async function redisPinTexts(
  config: Pick<Config, 'redisUrl' | 'redisTlsCaFile' | 'redisKeyPrefix'> & Partial<Pick<Config, 'redisCluster'>>,
  timeoutMs = 3_000,
): Promise<PinTextSource | undefined> {
  const redis: Redis = createRedisFromConfig(config);
  const documents = createRedisDocumentReader(redis, redisKeys(config.redisKeyPrefix));
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([pingRedis(redis), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), timeoutMs)))]);
  } catch {
    redis.disconnect();
    return undefined;
  } finally {
    clearTimeout(timer);
  }
  return {
    async get(pinIds) {
      const out = new Map<string, { pinText: string; version: number; contentHash: string }>();
      for (let i = 0; i < pinIds.length; i += 500) {
        const ids = pinIds.slice(i, i + 500);
        const values = await documents.getDocuments(ids);
        values.forEach((v, j) => {
          if (v === null) return;
          try {
            const doc = JSON.parse(v) as { pin_text?: unknown; version?: unknown; content_hash?: unknown };
            if (typeof doc.pin_text === 'string') {
              out.set(ids[j]!, { pinText: doc.pin_text, version: Number(doc.version), contentHash: String(doc.content_hash ?? '') });
            }
          } catch {
            // a value that is not a document: treated as no document for this pin
          }
        });
      }
      return out;
    },
    close: () => redis.disconnect(),
  };
}

export interface ExportOptions {
  model?: string;
  promptVersion?: string;
}

export interface ExportResult {
  rows: number;
  withPinText: number;
  /** Rows whose current document differs from the one the teacher saw. */
  pinTextChanged: number;
  pinTextSource: 'redis' | 'none';
}

export async function exportDistill(db: LabelsDb, out: string, pinTexts: PinTextSource | undefined, opts: ExportOptions = {}): Promise<ExportResult> {
  const where: string[] = [];
  const params: Record<string, string> = {};
  if (opts.model) (where.push('teacher_model = $model'), (params.model = opts.model));
  if (opts.promptVersion) (where.push('prompt_version = $pv'), (params.pv = opts.promptVersion));
  await db.conn.run(
    `CREATE OR REPLACE TEMP TABLE latest AS SELECT * FROM labels ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
     QUALIFY row_number() OVER (PARTITION BY pair_id ORDER BY labeled_at DESC, kafka_offset DESC) = 1`,
    params,
  );
  await db.conn.run('CREATE OR REPLACE TEMP TABLE pin_texts (pin_id VARCHAR, pin_text VARCHAR, pin_doc_version INTEGER, pin_doc_hash VARCHAR)');
  if (pinTexts) {
    const pinIds = (await db.conn.runAndReadAll('SELECT DISTINCT pin_id FROM temp.latest')).getRowsJS().map((r) => String(r[0]));
    const texts = await pinTexts.get(pinIds);
    const appender = await db.conn.createAppender('pin_texts', 'main', 'temp');
    try {
      for (const [pinId, t] of texts) {
        appender.appendVarchar(pinId);
        appender.appendVarchar(t.pinText);
        if (Number.isFinite(t.version)) appender.appendInteger(t.version);
        else appender.appendNull();
        appender.appendVarchar(t.contentHash);
        appender.endRow();
      }
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
  }
  const onehot = (k: number) => `CASE WHEN l.p1 IS NULL THEN CAST(l.label = ${k} AS DOUBLE) ELSE l.p${k} END AS p${k}`;
  const select = `
    SELECT l.pair_id, l.pin_id, l.query, l.language, t.pin_text,
           ${[1, 2, 3, 4, 5].map(onehot).join(', ')},
           CAST(l.label AS TINYINT) AS hard_label, l.expected_score, l.label_source,
           l.teacher_model, l.prompt_version, l.prompt_hash, l.doc_version, l.doc_hash, l.labeled_at,
           t.pin_doc_version, CASE WHEN t.pin_text IS NULL THEN NULL ELSE t.pin_doc_hash = l.doc_hash END AS pin_text_matches_label
    FROM temp.latest l LEFT JOIN temp.pin_texts t USING (pin_id)
    ORDER BY l.pair_id`;
  await db.conn.run(`COPY (${select}) TO '${out.replace(/'/g, "''")}' (FORMAT parquet, COMPRESSION zstd)`);
  const counts = (
    await db.conn.runAndReadAll(
      `SELECT count(*) AS n, count(t.pin_text) AS with_text, count(*) FILTER (WHERE t.pin_text IS NOT NULL AND t.pin_doc_hash <> l.doc_hash) AS changed
       FROM temp.latest l LEFT JOIN temp.pin_texts t USING (pin_id)`,
    )
  ).getRowObjectsJS()[0]!;
  return {
    rows: Number(counts.n),
    withPinText: Number(counts.with_text),
    pinTextChanged: Number(counts.changed),
    pinTextSource: pinTexts ? 'redis' : 'none',
  };
}
