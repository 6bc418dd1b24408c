/**
 * `relevance.labels`: the teacher's judgement of one pair on the 5-point scale, with the soft
 * label (probabilities of "1".."5" renormalised from the logprobs, or a classifier's class
 * probabilities). Keyed by pin_id.
 */
import { z } from 'zod';
import { header, Id, LanguageTag, LIMITS, text, Timestamp, TokenUsage } from './common.js';

export const LABEL = 'label';
export const LABEL_VERSION = 1;

/**
 * How a label was obtained, so data scientists can filter (e.g. keep only soft labels read
 * from a level answer):
 * - `logprobs`: the answer was a level; the distribution is the logprobs of that token;
 * - `constrained`: as `logprobs`, with decoding constrained to the five levels (llama.cpp
 *   grammar, vLLM structured outputs);
 * - `answer_text`: a short answer named the level ("The relevance is 4"); the distribution is
 *   the logprobs at the digit's position (null when the server gave none there);
 * - `top_logprobs`: the answer was no level; level and distribution come from the first output
 *   position's top candidates (the label is their most probable level);
 * - `hard_only`: a level answer without usable logprobs (distribution null);
 * - `classifier`: a sequence-classification teacher (vLLM /classify); the distribution is its
 *   class probabilities mapped to levels.
 */
export const LabelSource = z.enum(['logprobs', 'constrained', 'answer_text', 'top_logprobs', 'hard_only', 'classifier']);
export type LabelSource = z.infer<typeof LabelSource>;

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
  /** How the label was obtained: see {@link LabelSource}. */
  label_source: LabelSource,
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
