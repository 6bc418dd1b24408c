/**
 * The teacher port over the openai SDK: one chat completion per (pin, query) prompt, temperature
 * 0, one output token, with the top logprobs of that token. Parsing the answer into a label is
 * core/teacher-answer.ts' job; this adapter only moves bytes and classifies failures.
 */
import type OpenAI from 'openai';
import { APIUserAbortError } from 'openai';
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
  /** Which prompts it takes: chat messages (default) or completion text (TeacherPrompt.text). */
  readonly api?: 'chat' | 'completions';
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

interface Queued {
  text: string;
  signal: AbortSignal;
  resolve: (r: TeacherReply) => void;
  reject: (e: PinrichError) => void;
  settled: boolean;
  started: number;
}

/**
 * The teacher over /v1/completions with prompt arrays: every score() call is queued, and the
 * prompts queued in the same turn of the event loop go out together, up to `batch` per request
 * (the server answers one choice per prompt, matched by `index`). A pin's prompts are still sent
 * one after another by the stage, so prefix caching works as with chat.
 *
 * Per prompt, the outcome is the same as a chat call's: a failed request (429, 5xx, timeout,
 * unreachable) fails every prompt in it with the same classified error, and each prompt's own
 * retry policy sends it again (in a later batch). A prompt whose signal aborts gives up alone;
 * the request is only aborted once every prompt in it has. Usage is reported for the whole
 * request: it is split over the prompts in proportion to their length (exact sums, so usage
 * summed over labels is still what the teacher was paid).
 */
export function createCompletionsTeacher(client: OpenAI, model: string, topLogprobs: number, batch: number): Teacher {
  const params: TeacherParams = Object.freeze({ temperature: 0, max_tokens: 1, top_logprobs: topLogprobs });
  const max = Math.max(1, batch);
  let queue: Queued[] = [];
  let scheduled = false;

  const flush = (): void => {
    scheduled = false;
    const items = queue;
    queue = [];
    for (let i = 0; i < items.length; i += max) void send(items.slice(i, i + max));
  };

  async function send(all: Queued[]): Promise<void> {
    const items = all.filter((q) => !q.settled);
    if (items.length === 0) return;
    const controller = new AbortController();
    let live = items.length;
    const onAbort = (q: Queued) => () => {
      if (!q.settled) {
        q.settled = true;
        q.reject(classifyOpenAiError(new APIUserAbortError(), q.signal));
      }
      if (--live === 0) controller.abort();
    };
    const listeners = items.map((q) => {
      const l = onAbort(q);
      q.signal.addEventListener('abort', l, { once: true });
      return l;
    });
    try {
      let completion: OpenAI.Completions.Completion;
      try {
        completion = await client.completions.create(
          {
            model,
            prompt: items.map((q) => q.text),
            temperature: params.temperature,
            max_tokens: params.max_tokens,
            ...(params.top_logprobs > 0 ? { logprobs: params.top_logprobs } : {}),
          },
          { signal: controller.signal },
        );
      } catch (err) {
        for (const q of items) settle(q, classifyOpenAiError(err, q.signal.aborted ? q.signal : undefined));
        return;
      }
      const now = performance.now();
      const usages = splitUsage(usageOf(completion?.usage), items.map((q) => q.text.length));
      const byIndex = new Map<number, OpenAI.Completions.CompletionChoice>();
      for (const c of completion?.choices ?? []) if (typeof c?.index === 'number') byIndex.set(c.index, c);
      items.forEach((q, i) => {
        const choice = byIndex.get(i);
        if (!choice) return settle(q, new PinrichError('model_answer_unparseable', `teacher answer has no choice for prompt ${i}`));
        settle(q, {
          content: typeof choice.text === 'string' ? choice.text : null,
          topLogprobs: legacyFirstPositionCandidates(choice.logprobs),
          usage: usages?.[i] ?? null,
          latencyMs: now - q.started,
        });
      });
    } finally {
      items.forEach((q, i) => q.signal.removeEventListener('abort', listeners[i]!));
    }
  }

  function settle(q: Queued, r: TeacherReply | PinrichError): void {
    if (q.settled) return;
    q.settled = true;
    if (r instanceof PinrichError) q.reject(r);
    else q.resolve(r);
  }

  return {
    model,
    params,
    api: 'completions',
    score(prompt, { signal }) {
      if (prompt.text === undefined) return Promise.reject(new PinrichError('model_rejected_request', 'the completions teacher needs a completion prompt (buildTeacherCompletionPrompt)'));
      if (signal.aborted) return Promise.reject(classifyOpenAiError(new APIUserAbortError(), signal));
      return new Promise<TeacherReply>((resolve, reject) => {
        queue.push({ text: prompt.text!, signal, resolve, reject, settled: false, started: performance.now() });
        if (queue.length >= max) flush();
        else if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
  };
}

/** The request's usage split over its prompts by length; each part's sums are exact. */
function splitUsage(total: TokenUsage | null, lengths: number[]): TokenUsage[] | null {
  if (!total) return null;
  const sum = lengths.reduce((a, b) => a + b, 0) || 1;
  const keys = ['prompt_tokens', 'completion_tokens', 'total_tokens', 'cached_prompt_tokens'] as const;
  const out: TokenUsage[] = lengths.map(() => ({ prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cached_prompt_tokens: 0 }));
  for (const k of keys) {
    let given = 0;
    lengths.forEach((len, i) => {
      const share = i === lengths.length - 1 ? total[k] - given : Math.floor((total[k] * len) / sum);
      out[i]![k] = share;
      given += share;
    });
  }
  // Completion tokens split evenly is closer to the truth (one token per prompt): redo them so.
  let given = 0;
  lengths.forEach((_l, i) => {
    const share = i === lengths.length - 1 ? total.completion_tokens - given : Math.floor(total.completion_tokens / lengths.length);
    out[i]!.completion_tokens = share;
    out[i]!.total_tokens = out[i]!.prompt_tokens + share;
    given += share;
  });
  const totalGiven = out.reduce((n, u) => n + u.total_tokens, 0);
  out[out.length - 1]!.total_tokens += total.total_tokens - totalGiven;
  return out;
}

/** The legacy logprobs shape (tokens, token_logprobs, top_logprobs: [{token: logprob}]), first position. */
function legacyFirstPositionCandidates(logprobs: OpenAI.Completions.CompletionChoice['logprobs'] | undefined): TokenLogprob[] | null {
  const top = logprobs?.top_logprobs?.[0];
  const token = logprobs?.tokens?.[0];
  const logprob = logprobs?.token_logprobs?.[0];
  if (!top && typeof token !== 'string') return null;
  const out: TokenLogprob[] = Object.entries(top ?? {})
    .filter(([, lp]) => typeof lp === 'number')
    .map(([t, lp]) => ({ token: t, logprob: lp }))
    .sort((a, b) => b.logprob - a.logprob);
  if (typeof token === 'string' && typeof logprob === 'number' && !out.some((t) => t.token === token)) out.unshift({ token, logprob });
  return out;
}
