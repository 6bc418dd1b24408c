/**
 * `pins.enriched` (compacted): the text a relevance model reads for one pin. Keyed by pin_id;
 * a deleted pin is a tombstone (null value). `version` increases by one every time the document
 * content changes; an unchanged document is never re-emitted.
 */
import { z } from 'zod';
import { header, Id, LanguageTag, LIMITS, text, Timestamp } from './common.js';

export const ENRICHED_DOCUMENT = 'enriched_document';
export const ENRICHED_DOCUMENT_VERSION = 1;

export const CountedText = z.object({ text: z.string(), count: z.number().int().positive() });

export const EnrichedDocument = z.object({
  ...header(ENRICHED_DOCUMENT, ENRICHED_DOCUMENT_VERSION),
  pin_id: Id,
  version: z.number().int().positive(),
  language: LanguageTag.or(z.literal('und')),
  language_source: z.enum(['event', 'detected', 'unknown']),
  title: text(LIMITS.title),
  description: text(LIMITS.description),
  link_url: z.string().nullable(),
  link_title: text(LIMITS.linkTitle),
  link_description: text(LIMITS.linkDescription),
  caption: z.string().nullable(),
  caption_status: z.enum(['ok', 'failed', 'pending', 'none']),
  /** Top-K board titles (normalised, case-folded) by number of saves, ties by text. */
  board_titles: z.array(CountedText),
  /** Top-K engaged search queries (normalised, case-folded) by engagement count, ties by text. */
  engaged_queries: z.array(CountedText),
  /** Engagement events counted so far (deduplicated by event_id). */
  engagement_count: z.number().int().nonnegative(),
  /** The assembled pin text, field by field, as the teacher reads it. */
  pin_text: z.string(),
  /** sha256 over the content fields (everything but version and timestamps). */
  content_hash: z.string().regex(/^[0-9a-f]{64}$/),
  updated_at: Timestamp,
});
export type EnrichedDocument = z.infer<typeof EnrichedDocument>;
