/**
 * The FIFO of scripted behaviours, and the zod schema that validates rules sent over
 * POST /_control/script by another process.
 */
import { z } from 'zod';
import type { RequestKind, ScriptRule, ScriptedReply } from './types.js';

/** Queue of script rules; `take` consumes the first rule matching a request. */
export interface ScriptQueue {
  add(rule: ScriptRule): void;
  clear(): void;
  /** The reply of the first matching rule (using up one of its `times`), or undefined. */
  take(kind: RequestKind, rawBody: string): ScriptedReply | undefined;
  size(): number;
}

/** Create an empty script queue. */
export function createScriptQueue(): ScriptQueue {
  let rules: Array<{ rule: ScriptRule; left: number }> = [];
  return {
    add(rule) {
      const times = rule.times ?? 1;
      if (!(times > 0)) throw new RangeError(`script rule times must be > 0, got ${times}`);
      rules.push({ rule, left: times });
    },
    clear() {
      rules = [];
    },
    take(kind, rawBody) {
      const i = rules.findIndex(
        ({ rule }) =>
          (rule.kind === undefined || rule.kind === 'any' || rule.kind === kind) &&
          (rule.match === undefined || rawBody.includes(rule.match)),
      );
      const entry = rules[i];
      if (!entry) return undefined;
      entry.left -= 1;
      if (entry.left <= 0) rules.splice(i, 1);
      return entry.rule.reply;
    },
    size() {
      return rules.length;
    },
  };
}

const usageOverrideSchema = z
  .object({
    prompt_tokens: z.number().int().nonnegative(),
    completion_tokens: z.number().int().nonnegative(),
    total_tokens: z.number().int().nonnegative(),
    cached_tokens: z.number().int().nonnegative(),
  })
  .partial();

const replySchema: z.ZodType<ScriptedReply> = z.lazy(() =>
  z.union([
    z.object({
      status: z.number().int().min(400).max(599),
      retryAfterSeconds: z.number().nonnegative().optional(),
      retryAfterMs: z.number().nonnegative().optional(),
      message: z.string().optional(),
    }),
    z.object({
      text: z.string(),
      logprobs: z.array(z.object({ token: z.string(), logprob: z.number() })).nullable().optional(),
      usage: usageOverrideSchema.optional(),
    }),
    z.object({ malformed: z.enum(['not-json', 'empty-choices', 'no-content']) }),
    z.object({ delayMs: z.number().nonnegative(), then: replySchema.optional() }),
    z.object({ hang: z.literal(true) }),
  ]),
);

/** Schema of a rule sent as JSON; `times: null` means Infinity (JSON has no Infinity). */
export const remoteScriptRuleSchema = z.object({
  kind: z.enum(['caption', 'teacher', 'other', 'any']).optional(),
  match: z.string().optional(),
  times: z
    .number()
    .int()
    .positive()
    .nullable()
    .optional()
    .transform((t) => (t === null ? Infinity : t)),
  reply: replySchema,
});
