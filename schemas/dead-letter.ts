/**
 * `<topic>.dlq`: a record some stage could not process. Holds the raw bytes (base64) so nothing
 * is lost and a fixed consumer can replay it, plus where it came from and why it failed.
 */
import { z } from 'zod';
// The worker names come from the worker registry: a new worker is a new `stage` value.
import { WORKER_NAMES } from '../src/workers.js';
import { header, Timestamp } from './common.js';

export const DEAD_LETTER = 'dead_letter';
export const DEAD_LETTER_VERSION = 1;

/** Stable reasons. Classify by these codes, never by message text. */
export const DEAD_LETTER_CODES = [
  'invalid_utf8',
  'malformed_json',
  'oversized_record',
  'empty_record',
  'unknown_schema',
  'unknown_schema_version',
  'schema_violation',
  'url_rejected',
  'model_rejected_request',
  'model_answer_unparseable',
  'model_unavailable',
  'doc_not_found',
  'processing_error',
] as const;
export const DeadLetterCode = z.enum(DEAD_LETTER_CODES);
export type DeadLetterCode = z.infer<typeof DeadLetterCode>;

export const DeadLetter = z.object({
  ...header(DEAD_LETTER, DEAD_LETTER_VERSION),
  source: z.object({
    topic: z.string(),
    partition: z.number().int().nonnegative(),
    offset: z.string(),
  }),
  stage: z.enum(WORKER_NAMES),
  error_code: DeadLetterCode,
  reason: z.string().max(2_000),
  raw_key: z.string().nullable(),
  /** The record's value exactly as consumed, base64; null for a null (tombstone) value. */
  raw_value_base64: z.string().nullable(),
  failed_at: Timestamp,
});
export type DeadLetter = z.infer<typeof DeadLetter>;
