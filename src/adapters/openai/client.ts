/**
 * The openai SDK, configured for pinrich: our retry policy replaces the SDK's (maxRetries 0),
 * keep-alive connections over node:http instead of the global fetch (http-fetch.ts: a third of
 * the score worker's CPU per request went to undici), and SDK errors translated into
 * PinrichError by status.
 */
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import type { TokenUsage } from '../../../schemas/common.js';
import { PinrichError } from '../../errors.js';
import { createHttpFetch } from './http-fetch.js';

export interface ModelEndpoint {
  baseURL: string;
  apiKey: string;
}

export function createOpenAiClient(endpoint: ModelEndpoint): OpenAI {
  return new OpenAI({ baseURL: endpoint.baseURL, apiKey: endpoint.apiKey, maxRetries: 0, timeout: 600_000, fetch: createHttpFetch() });
}

/**
 * Classify an error thrown by the SDK. `signal` is the attempt's signal: an abort caused by its
 * timeout is a retriable model_timeout, any other abort is cancellation.
 */
export function classifyOpenAiError(err: unknown, signal?: AbortSignal): PinrichError {
  if (err instanceof PinrichError) return err;
  if (err instanceof APIUserAbortError) {
    const reason: unknown = signal?.reason;
    if (reason instanceof DOMException && reason.name === 'TimeoutError') {
      return new PinrichError('model_timeout', 'model request timed out', { retriable: true, cause: err });
    }
    return new PinrichError('aborted', 'model request aborted', { cause: err });
  }
  if (err instanceof APIConnectionTimeoutError) {
    return new PinrichError('model_timeout', 'model request timed out', { retriable: true, cause: err });
  }
  if (err instanceof APIConnectionError) {
    return new PinrichError('model_unreachable', `cannot reach the model server: ${err.message}`, { retriable: true, cause: err });
  }
  if (err instanceof APIError && typeof err.status === 'number') {
    const status = err.status;
    if (status === 429) {
      return new PinrichError('model_rate_limited', 'model server rate-limited the request (429)', {
        retriable: true,
        cause: err,
        retryAfterMs: retryAfterMs(err.headers),
      });
    }
    if (status >= 500 || status === 408 || status === 409) {
      return new PinrichError('model_server_error', `model server error ${status}`, { retriable: true, cause: err, retryAfterMs: retryAfterMs(err.headers) });
    }
    return new PinrichError('model_rejected_request', `model server rejected the request (${status}): ${String(err.message).slice(0, 300)}`, { cause: err });
  }
  if (err instanceof SyntaxError) {
    return new PinrichError('model_answer_unparseable', `model answer is not valid JSON: ${err.message}`, { cause: err });
  }
  return new PinrichError('model_server_error', `model call failed: ${err instanceof Error ? err.message : String(err)}`, { retriable: true, cause: err });
}

/** Token usage as pinrich records it, from an OpenAI usage object (cached prompt tokens when reported). */
export function usageOf(u: OpenAI.CompletionUsage | undefined | null): TokenUsage | null {
  if (!u) return null;
  return {
    prompt_tokens: u.prompt_tokens,
    completion_tokens: u.completion_tokens,
    total_tokens: u.total_tokens,
    cached_prompt_tokens: u.prompt_tokens_details?.cached_tokens ?? 0,
  };
}

/** Retry-After in seconds or an HTTP date, or OpenAI's retry-after-ms. */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number | undefined {
  if (!headers) return undefined;
  const ms = headers.get('retry-after-ms');
  if (ms && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const ra = headers.get('retry-after');
  if (!ra) return undefined;
  if (/^\d+(\.\d+)?$/.test(ra.trim())) return Number(ra) * 1000;
  const date = Date.parse(ra);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
