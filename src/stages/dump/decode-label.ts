/**
 * The dump's hot-path decoder for `label` records: the same result as
 * `decodeRecord('label', ...)` (core/decode.ts) at a fraction of its cost.
 *
 * Full zod validation was about three quarters of the dump's decode time. Here a record that is
 * a well-formed `label` v1 (nearly all of them) is accepted by a hand-written check of the
 * schema's constraints; anything else — too big, not UTF-8, not JSON, a lone surrogate, another
 * schema or version, any field the check does not like — goes through `decodeRecord` itself, so
 * every dead letter keeps exactly the code and reason it had before.
 *
 * The check only has to be *sound*: it may send a valid record the slow way (e.g. one without
 * `cached_prompt_tokens`, which zod defaults), but must never accept one that zod rejects.
 * test/unit/dump-decode.test.ts holds it to that against schemas/label.ts, field by field.
 */
import { LABEL, LABEL_VERSION, type Label } from '../../../schemas/label.js';
import { LIMITS, Timestamp } from '../../../schemas/common.js';
import { decodeRecord, parseRecordJson, type Decoded } from '../../core/decode.js';

// The patterns of schemas/label.ts and schemas/common.ts (Id, LanguageTag), as they are there.
const PAIR_ID = /^[0-9a-f]{32,64}$/;
const ID = /^[A-Za-z0-9_.:-]+$/;
const LANGUAGE_TAG = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/;
const LABEL_SOURCES: ReadonlySet<unknown> = new Set(['logprobs', 'constrained', 'answer_text', 'top_logprobs', 'hard_only', 'classifier']);

/**
 * A decoded label; `text` (the record's value as a string) is set when it is exactly what
 * `value` was read from (no default applied, nothing made well-formed), so it can stand for it
 * (parquet.ts).
 */
export type DecodedLabel = { ok: true; value: Label; text?: string } | Extract<Decoded<Label>, { ok: false }>;

/** Decode one `relevance.labels` record value: a `Label`, or the dead-letter code and reason. */
export function decodeLabel(bytes: Buffer | null, maxBytes: number): DecodedLabel {
  const parsed = parseRecordJson(bytes, maxBytes);
  if (parsed && isLabelV1(parsed.json)) return { ok: true, value: parsed.json, text: parsed.text };
  return decodeRecord(LABEL, bytes, maxBytes) as Decoded<Label>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
const isCount = (v: unknown): boolean => isInt(v) && (v as number) >= 0;

/** True only for a value that schemas/label.ts `Label` (v1) accepts as it is (no defaults applied). */
function isLabelV1(v: unknown): v is Label {
  if (!isObject(v) || v.schema !== LABEL || v.schema_version !== LABEL_VERSION) return false;
  const { pair_id, pin_id, query, language, label, distribution, expected_score, teacher, usage } = v;
  if (!isString(pair_id) || !PAIR_ID.test(pair_id)) return false;
  if (!isString(pin_id) || pin_id.length < 1 || pin_id.length > LIMITS.id || !ID.test(pin_id)) return false;
  if (!isString(query) || query.length > LIMITS.query) return false;
  if (!isString(language) || !(language === 'und' || LANGUAGE_TAG.test(language))) return false;
  if (!isInt(label) || label < 1 || label > 5) return false;
  if (distribution !== null && !isDistribution(distribution)) return false;
  if (!isNumber(expected_score) || expected_score < 1 || expected_score > 5) return false;
  if (!LABEL_SOURCES.has(v.label_source)) return false;
  if (!isObject(teacher) || !isString(teacher.model) || !isString(teacher.prompt_version) || !isString(teacher.prompt_hash)) return false;
  if (!isNumber(teacher.temperature) || !isInt(teacher.max_tokens) || !isInt(teacher.top_logprobs)) return false;
  if (!isInt(v.doc_version) || v.doc_version < 1 || !isString(v.doc_hash)) return false;
  if (!isObject(usage) || !isCount(usage.prompt_tokens) || !isCount(usage.completion_tokens) || !isCount(usage.total_tokens) || !isCount(usage.cached_prompt_tokens)) return false;
  if (!isNumber(v.latency_ms) || v.latency_ms < 0 || typeof v.cached !== 'boolean') return false;
  // RFC 3339 with its calendar rules: zod's own check, on one short string.
  return isString(v.labeled_at) && Timestamp.safeParse(v.labeled_at).success;
}

function isDistribution(d: unknown): boolean {
  if (!Array.isArray(d) || d.length !== 5) return false;
  for (const p of d) if (!isNumber(p) || p < 0 || p > 1) return false;
  return true;
}
