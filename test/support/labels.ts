/**
 * Helpers for the dump and labels tests: label records built to schemas/label.ts, and every
 * dump object read back with hyparquet (an independent Parquet reader: no DuckDB).
 */
import { createHash } from 'node:crypto';
import { parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { Label } from '../../schemas/label.js';
import { createS3, type ObjectStore } from '../../src/adapters/s3/client.js';
import type { Config } from '../../src/config.js';
import type { StackEndpoints } from '../../src/stack/index.js';

/**
 * The S3 adapter takes credentials from the default AWS provider chain, i.e. the environment:
 * point it at the stack's s3rver keys (the child workers get them through stackEnv).
 */
export function useStackS3Credentials(s: StackEndpoints): void {
  process.env.AWS_ACCESS_KEY_ID = s.s3.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = s.s3.secretAccessKey;
}

export const pairIdOf = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 32);

/** A valid label; `distribution: null` gives a hard-only label. */
export function makeLabel(over: Partial<Label> & { pin_id: string; query: string }): Label {
  const distribution = over.distribution === undefined ? [0.05, 0.1, 0.15, 0.3, 0.4] : over.distribution;
  const label = over.label ?? 5;
  const expected = distribution ? distribution.reduce((s, p, i) => s + p * (i + 1), 0) : label;
  return Label.parse({
    schema: 'label',
    schema_version: 1,
    pair_id: pairIdOf(`${over.pin_id}\u0000${over.query}`),
    language: 'en',
    label,
    distribution,
    expected_score: expected,
    label_source: distribution ? 'logprobs' : 'hard_only',
    teacher: { model: 'teacher-x', prompt_version: 'v3', prompt_hash: 'ph1', temperature: 0, max_tokens: 1, top_logprobs: 5 },
    doc_version: 1,
    doc_hash: 'dh1',
    usage: { prompt_tokens: 120, completion_tokens: 1, total_tokens: 121, cached_prompt_tokens: 64 },
    latency_ms: 12.5,
    cached: false,
    labeled_at: '2026-11-28T10:15:00.000Z',
    ...over,
  });
}

export interface DumpObject {
  key: string;
  size: number;
  rows: Array<Record<string, unknown>>;
}

/** Every object under `<prefix>labels/`, each read back with hyparquet. */
export async function readAllDumpObjects(config: Config, store: ObjectStore = createS3(config)): Promise<DumpObject[]> {
  const out: DumpObject[] = [];
  for await (const o of store.list(`${config.s3Prefix}labels/`)) {
    const got = await store.get(o.key);
    if (!got) continue; // deleted between list and get
    const buf = got.body.buffer.slice(got.body.byteOffset, got.body.byteOffset + got.body.byteLength) as ArrayBuffer;
    const rows = (await parquetReadObjects({ file: buf, compressors })) as Array<Record<string, unknown>>;
    out.push({ key: o.key, size: o.size, rows });
  }
  return out;
}
