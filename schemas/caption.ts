/**
 * `pins.captions`: what the vision model said about a pin's image. Keyed by pin_id.
 * A caption that failed for good is still published (status "failed" with the reason), so the
 * enrich worker can stop waiting and enrich the pin without it.
 */
import { z } from 'zod';
import { header, Id, LIMITS, text, Timestamp, TokenUsage } from './common.js';

export const CAPTION = 'caption';
export const CAPTION_VERSION = 1;

export const Caption = z.object({
  ...header(CAPTION, CAPTION_VERSION),
  pin_id: Id,
  /** sha256 of the canonical image URL: the cache key, shared by every pin of the same image. */
  image_key: z.string().regex(/^[0-9a-f]{64}$/),
  status: z.enum(['ok', 'failed']),
  text: text(LIMITS.caption).nullable(),
  /** Stable error code when status is "failed" (e.g. model_unavailable, url_rejected). */
  error_code: z.string().nullable(),
  /** Human-readable reason when status is "failed". */
  reason: z.string().max(1_000).nullable(),
  model: z.string(),
  prompt_version: z.string(),
  /** True when the text came from the Redis cache rather than a model call. */
  cached: z.boolean(),
  usage: TokenUsage.nullable(),
  created_at: Timestamp,
});
export type Caption = z.infer<typeof Caption>;
