/**
 * Building blocks shared by every wire contract.
 *
 * Every record on a pinrich topic carries `schema` (its name) and `schema_version`. A consumer
 * knows an explicit set of versions per schema and dead-letters any other, so a schema change is
 * always a deliberate, visible step (see docs/architecture.md, "Contracts").
 */
import { z } from 'zod';

/** Upper bounds on user-written text. Larger values are schema violations, not truncations. */
export const LIMITS = {
  pinId: 128,
  title: 1_000,
  description: 10_000,
  linkTitle: 1_000,
  linkDescription: 5_000,
  url: 2_048,
  query: 500,
  boardTitle: 500,
  caption: 2_000,
  id: 128,
} as const;

/** Identifiers: printable ASCII without spaces, so they are safe as Kafka keys and Redis key parts. */
export const Id = z
  .string()
  .min(1)
  .max(LIMITS.id)
  .regex(/^[A-Za-z0-9_.:-]+$/, 'must be 1-128 characters of A-Z a-z 0-9 _ . : -');

/** RFC 3339 timestamp with offset, e.g. 2026-11-29T10:00:00.000Z. */
export const Timestamp = z.iso.datetime({ offset: true });

/** BCP-47 language tag (en, pt-BR, zh-Hant-TW). */
export const LanguageTag = z
  .string()
  .regex(/^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/, 'must be a BCP-47 language tag such as "en" or "pt-BR"');

/** A bounded text field. */
export const text = (max: number) => z.string().max(max);

/** Token usage reported by an OpenAI-compatible server. */
export const TokenUsage = z.object({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  total_tokens: z.number().int().nonnegative(),
  cached_prompt_tokens: z.number().int().nonnegative().default(0),
});
export type TokenUsage = z.infer<typeof TokenUsage>;

/** The two fields every record starts with. */
export function header<N extends string, V extends number>(name: N, version: V) {
  return { schema: z.literal(name), schema_version: z.literal(version) };
}
