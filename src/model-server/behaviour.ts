/**
 * What the server answers to a validated completion request: the deterministic default
 * behaviour, or a scripted reply. Pure apart from the prefix cache it is handed; the HTTP
 * side (delays, hanging, writing) lives in server.ts.
 */
import { defaultCaption } from './caption.js';
import { chatCompletion, errorBody, textCompletion, usage, type Generated } from './openai-shapes.js';
import type { PrefixCache } from './prefix-cache.js';
import { estimateTokens } from './prefix-cache.js';
import { chatPromptText, completionPrompts, imageUrls } from './request-text.js';
import { isConstrained, teacherAnswer, teacherGeneration, type TokenLogprob } from './teacher.js';
import type { Defaults, RequestKind, ScriptedReply } from './types.js';

/** A request that passed validation. */
export interface CompletionRequest {
  api: 'chat' | 'completions' | 'classify';
  body: Record<string, unknown>;
  kind: RequestKind;
  model: string;
}

/** An HTTP answer: JSON (`json`) or raw text (`raw`, for deliberately broken answers). */
export interface Outcome {
  status: number;
  json?: unknown;
  raw?: string;
  headers?: Record<string, string>;
}

/** Replies that produce an answer immediately (delays and hangs are handled by the server). */
export type ImmediateReply = Exclude<ScriptedReply, { delayMs: number } | { hang: true }>;

/** What behaviour needs from the server. */
export interface BehaviourDeps {
  defaults: Defaults;
  prefixCache: PrefixCache;
}

/** Tokens an image costs, like OpenAI's low-detail flat rate. */
const IMAGE_TOKENS = 85;
const OTHER_REPLY = 'This is a deterministic reply from the pinrich model server.';

/** Default answer: caption, teacher digit with logprobs, or a fixed sentence. */
export function defaultOutcome(req: CompletionRequest, deps: BehaviourDeps): Outcome {
  if (req.api === 'classify') return classifyOutcome(req, deps);
  if (req.api === 'chat') {
    const prompt = chatPromptText(req.body.messages);
    const images = imageUrls(req.body.messages);
    let g: Generated;
    if (req.kind === 'caption') {
      const url = images[0] ?? '';
      g = { text: (deps.defaults.captionText ?? defaultCaption)(url), logprobs: null, finishReason: 'stop' };
    } else if (req.kind === 'teacher') {
      g = teacherGenerated(prompt, req);
    } else {
      g = { text: OTHER_REPLY, logprobs: null, finishReason: 'stop' };
    }
    const promptTokens = estimateTokens(prompt) + IMAGE_TOKENS * images.length;
    const cached = deps.prefixCache.lookupAndRemember(req.model, prompt);
    return { status: 200, json: chatCompletion(req.model, g, usage(promptTokens, g.completionTokens ?? completionTokens(g.text), cached)) };
  }

  const prompts = completionPrompts(req.body.prompt);
  let promptTokens = 0;
  let cached = 0;
  const gs: Generated[] = prompts.map((p) => {
    promptTokens += estimateTokens(p);
    cached += deps.prefixCache.lookupAndRemember(req.model, p);
    if (req.kind !== 'teacher') return { text: OTHER_REPLY, logprobs: null, finishReason: 'stop' };
    return teacherGenerated(p, req);
  });
  const completion = gs.reduce((n, g) => n + (g.completionTokens ?? completionTokens(g.text)), 0);
  return { status: 200, json: textCompletion(req.model, gs, usage(promptTokens, completion, cached), deps.defaults.logprobsFlavour) };
}

/** A teacher answer as a small real model gives it (see teacher.ts), shaped for the response. */
function teacherGenerated(prompt: string, req: CompletionRequest): Generated {
  const maxTokens = typeof req.body.max_tokens === 'number' ? req.body.max_tokens : typeof req.body.max_completion_tokens === 'number' ? req.body.max_completion_tokens : 16;
  const gen = teacherGeneration(prompt, { constrained: isConstrained(req.body), maxTokens });
  const n = topCount(req);
  const logprobs = wantsLogprobs(req) ? gen.tokens.map((t) => ({ token: t.token, logprob: t.logprob, top: t.top.slice(0, n) })) : null;
  return { text: gen.text, logprobs, finishReason: gen.finishReason, completionTokens: gen.tokens.length };
}

/**
 * vLLM's /classify answer (vllm/entrypoints/pooling/classify/protocol.py): one
 * {index, label, probs, num_classes} per input, `probs` the softmax over the classes, usage
 * without completion tokens. The stand-in classifier's classes are the levels 1..5 in order,
 * peaked at the query/pin overlap level (teacher.ts); with `classifierClasses` other than 5 it
 * is the wrong model for the job, which clients must detect.
 */
function classifyOutcome(req: CompletionRequest, deps: BehaviourDeps): Outcome {
  const inputs = completionPrompts(req.body.input);
  const classes = deps.defaults.classifierClasses;
  let promptTokens = 0;
  const data = inputs.map((text, index) => {
    promptTokens += estimateTokens(text);
    const a = teacherAnswer(text);
    let probs: number[];
    if (classes === 5) {
      const mass = [0, 0, 0, 0, 0];
      for (const c of a.candidates) {
        const level = /^ ?([1-5])$/.exec(c.token)?.[1];
        if (level) mass[Number(level) - 1]! += Math.exp(c.logprob);
      }
      const sum = mass.reduce((x, y) => x + y, 0);
      probs = mass.map((m) => m / sum);
    } else {
      probs = Array.from({ length: classes }, () => 1 / classes);
    }
    const best = probs.indexOf(Math.max(...probs));
    return { index, label: `LABEL_${best}`, probs, num_classes: classes };
  });
  return {
    status: 200,
    json: {
      id: `classify-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`,
      object: 'list',
      created: Math.floor(Date.now() / 1000),
      model: req.model,
      data,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens, completion_tokens: 0, prompt_tokens_details: null },
    },
  };
}

/** Answer for a scripted reply that does not wait. */
export function scriptedOutcome(reply: ImmediateReply, req: CompletionRequest, deps: BehaviourDeps): Outcome {
  if ('status' in reply) {
    const headers: Record<string, string> = {};
    if ('retryAfterSeconds' in reply && reply.retryAfterSeconds !== undefined) headers['retry-after'] = String(reply.retryAfterSeconds);
    if ('retryAfterMs' in reply && reply.retryAfterMs !== undefined) headers['retry-after-ms'] = String(reply.retryAfterMs);
    const message = reply.message ?? (reply.status === 429 ? 'Rate limit reached (scripted).' : `Scripted error ${reply.status}.`);
    return { status: reply.status, json: errorBody(reply.status, message), headers };
  }
  if ('malformed' in reply) return malformedOutcome(reply.malformed, req);
  // A classifier has no text answer to script: it answers as by default.
  if (req.api === 'classify') return classifyOutcome(req, deps);

  // Scripted text: usage is still estimated (and the prefix cache updated) as for a default answer.
  const base = defaultOutcome(req, deps).json as { usage: { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } } };
  const n = req.api === 'chat' ? 1 : completionPrompts(req.body.prompt).length;
  const logprobs = scriptedLogprobs(reply, req);
  const gs: Generated[] = Array.from({ length: n }, () => ({ text: reply.text, logprobs, finishReason: oneTokenLimit(req.body) ? 'length' : 'stop' }));
  const u = usage(base.usage.prompt_tokens, completionTokens(reply.text) * n, base.usage.prompt_tokens_details.cached_tokens, reply.usage);
  const first = gs[0] as Generated;
  return { status: 200, json: req.api === 'chat' ? chatCompletion(req.model, first, u) : textCompletion(req.model, gs, u, deps.defaults.logprobsFlavour) };
}

/**
 * Logprobs for scripted text: the scripted list when given (even if not requested, because
 * the test asked for it), none for null, and probability 1 for the text when requested.
 */
function scriptedLogprobs(reply: { text: string; logprobs?: TokenLogprob[] | null }, req: CompletionRequest): Generated['logprobs'] {
  if (reply.logprobs === null) return null;
  if (reply.logprobs === undefined) {
    return wantsLogprobs(req) ? [{ token: reply.text, logprob: 0, top: [{ token: reply.text, logprob: 0 }] }] : null;
  }
  // The scripted candidates are those of the first (here: the only) position.
  const own = reply.logprobs.find((l) => l.token === reply.text);
  const best = reply.logprobs.reduce((m, l) => Math.max(m, l.logprob), -Infinity);
  return [{ token: reply.text, logprob: own?.logprob ?? (Number.isFinite(best) ? best : 0), top: reply.logprobs }];
}

function malformedOutcome(kind: 'not-json' | 'empty-choices' | 'no-content', req: CompletionRequest): Outcome {
  if (kind === 'not-json') return { status: 200, raw: '<html>this is not json {', headers: { 'content-type': 'application/json' } };
  const u = usage(1, 0, 0);
  if (kind === 'empty-choices') {
    const body = req.api === 'chat' ? chatCompletion(req.model, { text: '', logprobs: null, finishReason: 'stop' }, u) : textCompletion(req.model, [], u);
    (body as { choices: unknown[] }).choices = [];
    return { status: 200, json: body };
  }
  const g: Generated = { text: null, logprobs: null, finishReason: 'stop' };
  return { status: 200, json: req.api === 'chat' ? chatCompletion(req.model, g, u) : textCompletion(req.model, [g], u) };
}

function oneTokenLimit(body: Record<string, unknown>): boolean {
  return body.max_tokens === 1 || body.max_completion_tokens === 1;
}

function wantsLogprobs(req: CompletionRequest): boolean {
  const l = req.body.logprobs;
  return l === true || (typeof l === 'number' && l >= 0 && req.api === 'completions');
}

/** How many alternatives to return: chat `top_logprobs` (default 5), legacy `logprobs: n`. */
function topCount(req: CompletionRequest): number {
  const n = req.api === 'chat' ? req.body.top_logprobs : req.body.logprobs;
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 ? Math.min(n, 20) : 5;
}

function completionTokens(text: string | null): number {
  return text ? Math.max(1, estimateTokens(text)) : 0;
}
