/**
 * `relevance.labels`: the teacher's judgement of one pair on the 5-point scale, with the soft
 * label (probabilities of "1".."5" renormalised from the logprobs). Keyed by pin_id.
 */
import { z } from 'zod';
import { header, Id, LanguageTag, LIMITS, text, Timestamp, TokenUsage } from './common.js';

export const LABEL = 'label';
export const LABEL_VERSION = 1;

export const Label = z.object({
  ...header(LABEL, LABEL_VERSION),
  pair_id: z.string().regex(/^[0-9a-f]{32,64}$/),
  pin_id: Id,
  query: text(LIMITS.query),
  language: LanguageTag.or(z.literal('und')),
  /** Hard label: the digit the teacher answered, 1 (highly irrelevant) .. 5 (highly relevant). */
  label: z.number().int().min(1).max(5),
  /** P(1)..P(5), summing to 1. Null when the server returned no logprobs. */
  distribution: z.array(z.number().min(0).max(1)).length(5).nullable(),
  /** Sum of level * probability; equals `label` when there is no distribution. */
  expected_score: z.number().min(1).max(5),
  /** "logprobs" when the distribution came from logprobs, "hard_only" when the server gave none. */
  label_source: z.enum(['logprobs', 'hard_only']),
  teacher: z.object({
    model: z.string(),
    prompt_version: z.string(),
    prompt_hash: z.string(),
    temperature: z.number(),
    max_tokens: z.number().int(),
    top_logprobs: z.number().int(),
  }),
  doc_version: z.number().int().positive(),
  doc_hash: z.string(),
  usage: TokenUsage,
  latency_ms: z.number().nonnegative(),
  /** True when the label came from the label cache rather than a model call. */
  cached: z.boolean(),
  labeled_at: Timestamp,
});
export type Label = z.infer<typeof Label>;
