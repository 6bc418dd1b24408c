/**
 * Response bodies shaped exactly as OpenAI's, so the real `openai` client parses them.
 * Reference: https://platform.openai.com/docs/api-reference/chat/object and
 * https://platform.openai.com/docs/api-reference/completions/object (legacy logprobs).
 */
import type { TokenLogprob } from './teacher.js';
import type { UsageOverride } from './types.js';

/** The usage block of a completion response. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

/** One output position: the emitted token and its top alternatives. */
export interface PositionLogprobs {
  token: string;
  logprob: number;
  top: TokenLogprob[];
}

/** One generated answer before shaping: text, optional per-position logprobs, finish reason. */
export interface Generated {
  text: string | null;
  /** Logprobs of every output position, in order. */
  logprobs: PositionLogprobs[] | null;
  finishReason: 'stop' | 'length';
  /** Generated tokens, when known (else estimated from the text). */
  completionTokens?: number;
}

/**
 * How /v1/completions spells logprobs: `openai` is OpenAI's legacy shape (tokens,
 * token_logprobs, top_logprobs as {token: logprob} maps, text_offset), which vLLM also sends;
 * `llama.cpp` is llama-server's, which uses the chat shape ({content: [{token, logprob, bytes,
 * top_logprobs: [...]}]}) on /v1/completions too.
 */
export type LogprobsFlavour = 'openai' | 'llama.cpp';

let counter = 0;
/** A unique-enough id with OpenAI's prefixes ("chatcmpl-", "cmpl-"). */
export function responseId(prefix: string): string {
  counter = (counter + 1) % 1e9;
  return `${prefix}-pinrich${Date.now().toString(36)}${counter.toString(36)}`;
}

/** Usage from estimates, with a scripted override applied field by field. */
export function usage(prompt: number, completion: number, cached: number, override?: UsageOverride): Usage {
  const p = override?.prompt_tokens ?? prompt;
  const c = override?.completion_tokens ?? completion;
  return {
    prompt_tokens: p,
    completion_tokens: c,
    total_tokens: override?.total_tokens ?? p + c,
    prompt_tokens_details: { cached_tokens: override?.cached_tokens ?? Math.min(cached, p) },
  };
}

function bytes(token: string): number[] {
  return [...Buffer.from(token, 'utf8')];
}

/** A chat.completion body with one choice. */
export function chatCompletion(model: string, g: Generated, u: Usage): unknown {
  return {
    id: responseId('chatcmpl'),
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    system_fingerprint: 'fp_pinrich',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: g.text, refusal: null },
        finish_reason: g.finishReason,
        logprobs: g.logprobs ? chatLogprobs(g.logprobs) : null,
      },
    ],
    usage: u,
  };
}

/** The chat logprobs shape: one entry per output position. */
function chatLogprobs(positions: PositionLogprobs[]): unknown {
  return {
    content: positions.map((p) => ({
      token: p.token,
      logprob: p.logprob,
      bytes: bytes(p.token),
      top_logprobs: p.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: bytes(t.token) })),
    })),
    refusal: null,
  };
}

/** OpenAI's legacy completions logprobs shape. */
function legacyLogprobs(positions: PositionLogprobs[]): unknown {
  const offsets: number[] = [];
  let at = 0;
  for (const p of positions) {
    offsets.push(at);
    at += p.token.length;
  }
  return {
    tokens: positions.map((p) => p.token),
    token_logprobs: positions.map((p) => p.logprob),
    // One {token: logprob} map per position. Distinct keys are what let tokenizer variants
    // ("3" and " 3") coexist here.
    top_logprobs: positions.map((p) => Object.fromEntries(p.top.map((t) => [t.token, t.logprob]))),
    text_offset: offsets,
  };
}

/** A text_completion body with one choice per generated answer (one per prompt). */
export function textCompletion(model: string, gs: Generated[], u: Usage, flavour: LogprobsFlavour = 'openai'): unknown {
  return {
    id: responseId('cmpl'),
    object: 'text_completion',
    created: Math.floor(Date.now() / 1000),
    model,
    system_fingerprint: 'fp_pinrich',
    choices: gs.map((g, index) => ({
      index,
      text: g.text ?? '',
      finish_reason: g.finishReason,
      logprobs: g.logprobs ? (flavour === 'llama.cpp' ? chatLogprobs(g.logprobs) : legacyLogprobs(g.logprobs)) : null,
    })),
    usage: u,
  };
}

/** OpenAI error `type` for a status, as the real API reports it. */
function errorType(status: number): string {
  if (status === 429) return 'requests';
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** An OpenAI-style error body: { error: { message, type, param, code } }. */
export function errorBody(status: number, message: string, code: string | null = null): unknown {
  return { error: { message, type: errorType(status), param: null, code: code ?? (status === 429 ? 'rate_limit_exceeded' : null) } };
}
