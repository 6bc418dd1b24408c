/**
 * The teacher port over the openai SDK, three ways:
 * - chat: one chat completion per (pin, query) prompt;
 * - completions: /v1/completions with prompt arrays, several pairs per request;
 * - classify: vLLM's pooling endpoint /classify for a sequence-classification teacher.
 * The generative two ask for temperature 0, a few output tokens and the top logprobs of every
 * output position, and constrain decoding to the five levels where the server can (llama.cpp
 * `grammar`, vLLM `structured_outputs.choice`); with `auto`, a server that rejects those fields
 * (OpenAI answers 400 to unknown parameters) is detected on the first such answer and asked
 * without them from then on. Parsing the answer into a label is core/teacher-answer.ts' job;
 * this adapter only moves bytes, reads the response shapes the servers use, and classifies
 * failures.
 */
import type OpenAI from 'openai';
import { APIUserAbortError } from 'openai';
import type { TokenUsage } from '../../../schemas/common.js';
import type { AnswerPosition, TokenLogprob } from '../../core/teacher-answer.js';
import type { TeacherPrompt } from '../../core/teacher-prompt.js';
import { PinrichError } from '../../errors.js';
import { classifyOpenAiError, usageOf } from './client.js';

/** How generative answers are constrained to the five levels (PINRICH_TEACHER_CONSTRAIN). */
export type TeacherConstraint = 'auto' | 'grammar' | 'structured_outputs' | 'none';

/** Sampling parameters; recorded on every label. */
export interface TeacherParams {
  temperature: number;
  max_tokens: number;
  /** Alternatives requested per position; 0 asks for no logprobs (hard labels only). OpenAI allows up to 20. */
  top_logprobs: number;
  /** The constraint asked for; part of the label cache key (a constrained answer may differ). */
  constrain?: TeacherConstraint;
}

export interface TeacherReply {
  /** The answer text (null when the server sent none). */
  content: string | null;
  /** The first output position's candidates (the chosen token included); null without logprobs. */
  topLogprobs: TokenLogprob[] | null;
  /** Every output position with its candidates, when the server returned logprobs. */
  positions?: AnswerPosition[] | null;
  /** True when this request asked for decoding constrained to the five levels. */
  constrained?: boolean;
  /**
   * A classifier's answer: P(level 1)..P(level 5), already mapped from class indices by
   * PINRICH_TEACHER_CLASS_LEVELS. Set by the classify teacher only; the generative fields are then empty.
   */
  levelProbs?: [number, number, number, number, number];
  usage: TokenUsage | null;
  latencyMs: number;
}

export interface Teacher {
  readonly model: string;
  readonly params: Readonly<TeacherParams>;
  /** Which prompts it takes: chat messages (default), or the text (TeacherPrompt.text) for completions and classify. */
  readonly api?: 'chat' | 'completions' | 'classify';
  /** One model call. Throws PinrichError (classified: retriable or not). */
  score(prompt: TeacherPrompt, opts: { signal: AbortSignal }): Promise<TeacherReply>;
}

/** Options of the generative teachers. */
export interface GenerativeTeacherOptions {
  /** Output tokens per answer; default 8 (room for "The relevance is 4" when unconstrained). */
  maxTokens?: number;
  /** Default 'auto'. */
  constrain?: TeacherConstraint;
  /** Told once when `auto` finds the server does not take the constraint fields. */
  onConstraintRejected?: (reason: string) => void;
}

/** A GBNF grammar (llama.cpp) that admits exactly one of the five level digits. */
export const LEVEL_GRAMMAR = 'root ::= [1-5]';
const LEVEL_CHOICES = ['1', '2', '3', '4', '5'];

/**
 * The request fields that constrain decoding, and the `auto` detection: once a constrained
 * request is rejected (4xx) with a message naming one of the fields — OpenAI answers
 * "Unrecognized request argument supplied: grammar" — and the same request without the fields
 * is not, the fields are dropped for the rest of the process. This is the one place that reads
 * an error's text: a server says which parameter it does not take only there, and any other 400
 * (a prompt too long, a bad model name) must stay the pair's own model_rejected_request.
 * llama.cpp and vLLM ignore the other's field.
 */
function createConstraint(mode: TeacherConstraint, onRejected?: (reason: string) => void) {
  let disabled = mode === 'none';
  return {
    fields(): Record<string, unknown> {
      if (disabled) return {};
      if (mode === 'grammar') return { grammar: LEVEL_GRAMMAR };
      if (mode === 'structured_outputs') return { structured_outputs: { choice: LEVEL_CHOICES } };
      return { grammar: LEVEL_GRAMMAR, structured_outputs: { choice: LEVEL_CHOICES } };
    },
    /** Sends with the fields; in auto mode retries a rejected request once without them. */
    async send<T>(call: (fields: Record<string, unknown>) => Promise<T>): Promise<{ value: T; constrained: boolean }> {
      const fields = this.fields();
      const constrained = Object.keys(fields).length > 0;
      try {
        return { value: await call(fields), constrained };
      } catch (err) {
        if (!constrained || mode !== 'auto' || !(err instanceof PinrichError) || err.code !== 'model_rejected_request') throw err;
        if (!Object.keys(fields).some((f) => err.message.includes(f))) throw err;
        const value = await call({});
        // Only now is it known that the fields, not the prompt, were the problem.
        if (!disabled) {
          disabled = true;
          onRejected?.(err.message);
        }
        return { value, constrained: false };
      }
    },
  };
}

export function createTeacher(client: OpenAI, model: string, topLogprobs: number, opts: GenerativeTeacherOptions = {}): Teacher {
  const constrain = opts.constrain ?? 'auto';
  const params: TeacherParams = Object.freeze({ temperature: 0, max_tokens: opts.maxTokens ?? 8, top_logprobs: topLogprobs, constrain });
  const constraint = createConstraint(constrain, opts.onConstraintRejected);
  return {
    model,
    params,
    async score(prompt, { signal }) {
      const started = performance.now();
      const { value: completion, constrained } = await constraint.send(async (fields) => {
        try {
          const body = {
            model,
            temperature: params.temperature,
            max_tokens: params.max_tokens,
            messages: prompt.messages,
            ...(params.top_logprobs > 0 ? { logprobs: true, top_logprobs: params.top_logprobs } : {}),
            ...fields,
          } as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming;
          return await client.chat.completions.create(body, { signal });
        } catch (err) {
          throw classifyOpenAiError(err, signal);
        }
      });
      const latencyMs = performance.now() - started;
      const choice = completion?.choices?.[0];
      if (!choice) throw new PinrichError('model_answer_unparseable', 'teacher answer has no choices');
      const content = typeof choice.message?.content === 'string' ? choice.message.content : null;
      const positions = chatPositions(choice.logprobs);
      return {
        content,
        topLogprobs: positions ? withChosen(positions[0]) : null,
        positions,
        constrained,
        usage: usageOf(completion.usage),
        latencyMs,
      };
    },
  };
}

/** A position's candidates with its chosen token added when the server left it out, never twice. */
function withChosen(p: AnswerPosition | undefined): TokenLogprob[] | null {
  if (!p) return null;
  const out = [...p.top];
  if (!out.some((t) => t.token === p.token)) out.unshift({ token: p.token, logprob: p.logprob });
  return out;
}

/**
 * Every output position of the chat logprobs shape ({content: [{token, logprob, top_logprobs:
 * [{token, logprob}]}]}), which llama-server also uses on /v1/completions. Null when absent.
 */
function chatPositions(logprobs: unknown): AnswerPosition[] | null {
  const content = (logprobs as { content?: unknown } | null | undefined)?.content;
  if (!Array.isArray(content) || content.length === 0) return null;
  const out: AnswerPosition[] = [];
  for (const pos of content as Array<Record<string, unknown> | null>) {
    if (!pos || typeof pos.token !== 'string' || typeof pos.logprob !== 'number') continue;
    const top = (Array.isArray(pos.top_logprobs) ? (pos.top_logprobs as Array<Record<string, unknown> | null>) : [])
      .filter((t): t is { token: string; logprob: number } => typeof t?.token === 'string' && typeof t.logprob === 'number')
      .map((t) => ({ token: t.token, logprob: t.logprob }));
    out.push({ token: pos.token, logprob: pos.logprob, top });
  }
  return out.length > 0 ? out : null;
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
export function createCompletionsTeacher(client: OpenAI, model: string, topLogprobs: number, batch: number, opts: GenerativeTeacherOptions = {}): Teacher {
  const constrain = opts.constrain ?? 'auto';
  const params: TeacherParams = Object.freeze({ temperature: 0, max_tokens: opts.maxTokens ?? 8, top_logprobs: topLogprobs, constrain });
  const constraint = createConstraint(constrain, opts.onConstraintRejected);
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
      let constrained: boolean;
      try {
        ({ value: completion, constrained } = await constraint.send(async (fields) => {
          try {
            const body = {
              model,
              prompt: items.map((q) => q.text),
              temperature: params.temperature,
              max_tokens: params.max_tokens,
              ...(params.top_logprobs > 0 ? { logprobs: params.top_logprobs } : {}),
              ...fields,
            } as OpenAI.Completions.CompletionCreateParamsNonStreaming;
            return await client.completions.create(body, { signal: controller.signal });
          } catch (err) {
            throw classifyOpenAiError(err, items.length === 1 && items[0]!.signal.aborted ? items[0]!.signal : undefined);
          }
        }));
      } catch (err) {
        for (const q of items) settle(q, err instanceof PinrichError && q.signal.aborted ? classifyOpenAiError(new APIUserAbortError(), q.signal) : classifyOpenAiError(err));
        return;
      }
      const now = performance.now();
      const usages = splitUsage(usageOf(completion?.usage), items.map((q) => q.text.length));
      const byIndex = new Map<number, OpenAI.Completions.CompletionChoice>();
      for (const c of completion?.choices ?? []) if (typeof c?.index === 'number') byIndex.set(c.index, c);
      items.forEach((q, i) => {
        const choice = byIndex.get(i);
        if (!choice) return settle(q, new PinrichError('model_answer_unparseable', `teacher answer has no choice for prompt ${i}`));
        const positions = legacyPositions(choice.logprobs) ?? chatPositions(choice.logprobs);
        settle(q, {
          content: typeof choice.text === 'string' ? choice.text : null,
          topLogprobs: positions ? withChosen(positions[0]) : null,
          positions,
          constrained,
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

/**
 * Every position of OpenAI's legacy completions logprobs shape (tokens, token_logprobs,
 * top_logprobs: [{token: logprob}], as OpenAI and vLLM send it); null when the shape is another
 * (llama-server sends the chat shape on /v1/completions too: see {@link chatPositions}).
 */
function legacyPositions(logprobs: OpenAI.Completions.CompletionChoice['logprobs'] | undefined): AnswerPosition[] | null {
  const tokens = logprobs?.tokens;
  if (!Array.isArray(tokens) || tokens.length === 0) return null;
  const out: AnswerPosition[] = [];
  tokens.forEach((token, i) => {
    const logprob = logprobs?.token_logprobs?.[i];
    if (typeof token !== 'string' || typeof logprob !== 'number') return;
    const top = Object.entries(logprobs?.top_logprobs?.[i] ?? {})
      .filter(([, lp]) => typeof lp === 'number')
      .map(([t, lp]) => ({ token: t, logprob: lp }))
      .sort((a, b) => b.logprob - a.logprob);
    out.push({ token, logprob, top });
  });
  return out.length > 0 ? out : null;
}

/** One result of vLLM's /classify (vllm/entrypoints/pooling/classify/protocol.py). */
interface ClassifyData {
  index: number;
  label?: string | null;
  probs: number[];
  num_classes: number;
}

/**
 * The URL of vLLM's pooling endpoint for a teacher base URL: vLLM serves `/classify` at the
 * server root beside `/v1/...`, so `http://host:8000/v1` -> `http://host:8000/classify`.
 */
export function classifyUrl(baseURL: string): string {
  const u = new URL(baseURL);
  u.pathname = `${u.pathname.replace(/\/+$/, '').replace(/\/v1$/, '')}/classify`;
  return u.toString();
}

/**
 * The classifier teacher (PINRICH_TEACHER_API=classify): a sequence-classification model behind
 * vLLM's `POST /classify` — request `{model, input: [text]}`, response `{data: [{index, label,
 * probs, num_classes}], usage}` with `probs` the softmax over the classes. This is the teacher
 * Pinterest described: a cross-encoder whose last token feeds a 5-way head. The soft label is
 * the class distribution, mapped to levels by `classLevels` (the level of class 0..4). A model
 * without exactly five classes is a configuration error (config_invalid), never a label.
 * The prompt sent is the completion rendering (TeacherPrompt.text): rubric, pin, query.
 */
export function createClassifyTeacher(client: OpenAI, model: string, classLevels: readonly number[]): Teacher {
  if (classLevels.length !== 5 || new Set(classLevels).size !== 5 || classLevels.some((l) => !Number.isInteger(l) || l < 1 || l > 5)) {
    throw new PinrichError('config_invalid', `PINRICH_TEACHER_CLASS_LEVELS must map classes 0..4 to five distinct levels 1-5, got ${classLevels.join(',')}`);
  }
  // Temperature and tokens do not apply to a classifier; recorded as 0 so labels say so.
  const params: TeacherParams = Object.freeze({ temperature: 0, max_tokens: 0, top_logprobs: 0 });
  const url = classifyUrl(client.baseURL);
  return {
    model,
    params,
    api: 'classify',
    async score(prompt, { signal }) {
      if (prompt.text === undefined) throw new PinrichError('model_rejected_request', 'the classify teacher needs a text prompt (buildTeacherCompletionPrompt)');
      const started = performance.now();
      let res: { data?: ClassifyData[]; usage?: OpenAI.CompletionUsage | null };
      try {
        // The SDK's generic post: its auth header, keep-alive and typed errors; an absolute URL
        // because /classify lives beside /v1, not under it.
        res = await client.post(url, { body: { model, input: [prompt.text] }, signal });
      } catch (err) {
        throw classifyOpenAiError(err, signal);
      }
      const latencyMs = performance.now() - started;
      const d = Array.isArray(res?.data) ? res.data.find((x) => x?.index === 0) ?? res.data[0] : undefined;
      if (!d || !Array.isArray(d.probs)) throw new PinrichError('model_answer_unparseable', 'classify answer has no data[0].probs');
      const classes = typeof d.num_classes === 'number' ? d.num_classes : d.probs.length;
      if (classes !== 5 || d.probs.length !== 5) {
        throw new PinrichError(
          'config_invalid',
          `teacher model ${model} has ${classes} classes (probs of length ${d.probs.length}); PINRICH_TEACHER_API=classify needs a 5-class relevance classifier`,
        );
      }
      if (d.probs.some((p) => typeof p !== 'number' || !Number.isFinite(p) || p < 0)) {
        throw new PinrichError('model_answer_unparseable', `classify answer has invalid probabilities: ${JSON.stringify(d.probs).slice(0, 200)}`);
      }
      const sum = d.probs.reduce((a, b) => a + b, 0);
      if (sum <= 0) throw new PinrichError('model_answer_unparseable', 'classify answer has probabilities summing to 0');
      const levelProbs: [number, number, number, number, number] = [0, 0, 0, 0, 0];
      d.probs.forEach((p, cls) => (levelProbs[classLevels[cls]! - 1] = p / sum));
      return {
        content: typeof d.label === 'string' ? d.label : null,
        topLogprobs: null,
        positions: null,
        levelProbs,
        usage: usageOf(res.usage ?? undefined),
        latencyMs,
      };
    },
  };
}
