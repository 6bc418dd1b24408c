/** `relevance.pairs`: a (pin, query) pair for the teacher to score. Keyed by pin_id. */
import { z } from 'zod';
import { header, Id, LanguageTag, LIMITS, text, Timestamp } from './common.js';

export const PAIR = 'pair';
export const PAIR_VERSION = 1;

export const Pair = z.object({
  ...header(PAIR, PAIR_VERSION),
  /** Deterministic: sha256(pin_id + normalised query), so a pair mined twice is the same pair. */
  pair_id: z.string().regex(/^[0-9a-f]{32,64}$/),
  pin_id: Id,
  query: text(LIMITS.query).min(1),
  source: z.enum(['search_engagement', 'sampled_negative', 'manual']),
  language: LanguageTag.or(z.literal('und')),
  created_at: Timestamp,
});
export type Pair = z.infer<typeof Pair>;
