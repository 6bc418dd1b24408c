/**
 * The teacher port over the openai SDK: one chat completion per (pin, query) prompt, temperature
 * 0, one output token, with the top logprobs of that token. Parsing the answer into a label is
 * core/teacher-answer.ts' job; this adapter only moves bytes and classifies failures.
 */
import type OpenAI from 'openai';
import type { TokenUsage } from '../../../schemas/common.js';
import type { TokenLogprob } from '../../core/teacher-answer.js';
import type { TeacherPrompt } from '../../core/teacher-prompt.js';
import { PinrichError } from '../../errors.js';
import { classifyOpenAiError, usageOf } from './client.js';

/** Sampling parameters; recorded on every label. */
export interface TeacherParams {
  temperature: number;
  max_tokens: number;
  /** Alternatives requested per position; 0 asks for no logprobs (hard labels only). OpenAI allows up to 20. */
  top_logprobs: number;
}

export interface TeacherReply {
  /** choices[0].message.content (null when the server sent none). */
  content: string | null;
  /** The first output position's candidates (the chosen token included); null without logprobs. */
  topLogprobs: TokenLogprob[] | null;
  usage: TokenUsage | null;
  latencyMs: number;
}

export interface Teacher {
  readonly model: string;
  readonly params: Readonly<TeacherParams>;
  /** One model call. Throws PinrichError (classified: retriable or not). */
  score(prompt: TeacherPrompt, opts: { signal: AbortSignal }): Promise<TeacherReply>;
}

export function createTeacher(client: OpenAI, model: string, topLogprobs: number): Teacher {
  const params: TeacherParams = Object.freeze({ temperature: 0, max_tokens: 1, top_logprobs: topLogprobs });
  return {
    model,
    params,
    async score(prompt, { signal }) {
      const started = performance.now();
      let completion: OpenAI.Chat.Completions.ChatCompletion;
      try {
        completion = await client.chat.completions.create(
          {
            model,
            temperature: params.temperature,
            max_tokens: params.max_tokens,
            messages: prompt.messages,
            ...(params.top_logprobs > 0 ? { logprobs: true, top_logprobs: params.top_logprobs } : {}),
          },
          { signal },
        );
      } catch (err) {
        throw classifyOpenAiError(err, signal);
      }
      const latencyMs = performance.now() - started;
      const choice = completion?.choices?.[0];
      if (!choice) throw new PinrichError('model_answer_unparseable', 'teacher answer has no choices');
      const content = typeof choice.message?.content === 'string' ? choice.message.content : null;
      return {
        content,
        topLogprobs: firstPositionCandidates(choice.logprobs),
        usage: usageOf(completion.usage),
        latencyMs,
      };
    },
  };
}

/**
 * Candidates of the first output position. The chosen token is added when the server left it
 * out of top_logprobs (some do when it is not among the top n), but never twice.
 */
function firstPositionCandidates(logprobs: OpenAI.Chat.Completions.ChatCompletion.Choice['logprobs'] | undefined): TokenLogprob[] | null {
  const first = logprobs?.content?.[0];
  if (!first) return null;
  const out: TokenLogprob[] = (first.top_logprobs ?? [])
    .filter((t) => typeof t?.token === 'string' && typeof t.logprob === 'number')
    .map((t) => ({ token: t.token, logprob: t.logprob }));
  if (typeof first.token === 'string' && typeof first.logprob === 'number' && !out.some((t) => t.token === first.token)) {
    out.unshift({ token: first.token, logprob: first.logprob });
  }
  return out;
}
