/**
 * Public types of the project's OpenAI-compatible model server (a scripted stand-in for a
 * real VLM and teacher LLM, used by tests, the offline demo and benchmarks).
 */

import type { LogprobsFlavour } from './openai-shapes.js';

/** How the server classifies a request; see `classifyRequest` for the exact rules. */
export type RequestKind = 'caption' | 'teacher' | 'other';

/** A canned answer a test queues through {@link ScriptRule}. */
export type ScriptedReply =
  /** A rate-limit error; the headers let clients test that they honour Retry-After. */
  | { status: 429; retryAfterSeconds?: number; retryAfterMs?: number; message?: string }
  /** Any other 4xx/5xx error with an OpenAI-style error body. */
  | { status: number; message?: string }
  /**
   * A successful answer with this text. `logprobs` are the top candidates of the first (only)
   * output position; `null` means the response carries no logprobs even if requested;
   * omitted means "the text has probability 1" when logprobs were requested.
   * `usage` overrides the estimated token counts field by field.
   */
  | {
      text: string;
      logprobs?: Array<{ token: string; logprob: number }> | null;
      usage?: UsageOverride;
    }
  /** A 200 answer that a client cannot use. */
  | { malformed: 'not-json' | 'empty-choices' | 'no-content' }
  /** Wait, then answer with `then` (default behaviour when omitted). Aborted cleanly if the client goes away. */
  | { delayMs: number; then?: ScriptedReply }
  /** Never answer; the request ends only when the client (or `close()`) closes the connection. */
  | { hang: true };

/** Field-by-field override of the usage block; omitted fields keep their estimate. */
export interface UsageOverride {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
  cached_tokens?: number;
}

/**
 * One scripted behaviour. Rules are consumed first-in first-out among those that match a
 * request; a request no rule matches gets the default behaviour. Scripts apply only to
 * POST /v1/chat/completions and POST /v1/completions.
 */
export interface ScriptRule {
  /** Which requests the rule applies to; omitted or 'any' = all. */
  kind?: RequestKind | 'any';
  /** A substring the raw request body (JSON text as sent) must contain. */
  match?: string;
  /** How many requests the rule answers before it is used up; default 1; Infinity allowed. */
  times?: number;
  reply: ScriptedReply;
}

/** Default (unscripted) behaviour knobs. */
export interface Defaults {
  /** Added latency for every unscripted answer, in ms. Default 0. */
  latencyMs: number;
  /** Replaces the built-in deterministic caption generator. */
  captionText?: (imageUrl: string) => string;
  /** Model ids listed by GET /v1/models. */
  models: string[];
  /** How many recent prompts the simulated prefix cache remembers (per model). Default 256. */
  prefixCacheSize: number;
  /** How many requests `requests()` keeps (oldest dropped first); counters stay exact. Default 10 000. */
  maxRecorded: number;
  /** The /v1/completions logprobs shape: OpenAI's legacy one (also vLLM's; default) or llama-server's. */
  logprobsFlavour: LogprobsFlavour;
  /** Classes of the stand-in classifier behind POST /classify (a relevance classifier has 5). Default 5. */
  classifierClasses: number;
}

/** One request the server received, recorded when it arrives and completed when answered. */
export interface RecordedRequest {
  /** Path without query string, e.g. "/v1/chat/completions". */
  endpoint: string;
  kind: RequestKind;
  /** The `model` field of the body, if any. */
  model: string | undefined;
  /** Parsed JSON body; undefined when there was none or it was not valid JSON. */
  body: unknown;
  /** HTTP status sent; 0 while still pending; 499 when the client closed the connection first. */
  status: number;
  /** Arrival time, ms since the epoch. */
  at: number;
  /** True when a script rule produced the answer. */
  scripted: boolean;
}

/** Filter for {@link ModelServer.count}. */
export interface CountFilter {
  kind?: RequestKind;
  /** Exact path, e.g. "/v1/completions". */
  endpoint?: string;
}

/** Counters returned by GET /_control/stats. */
export interface ModelServerStats {
  requests: { caption: number; teacher: number; other: number; total: number };
  /** Status code (as a string) → number of answered requests. Pending requests are not listed. */
  byStatus: Record<string, number>;
}

/** A running model server. */
export interface ModelServer {
  /** Base URL to pass as the openai client's `baseURL`, e.g. "http://127.0.0.1:41234/v1". */
  baseUrl: string;
  /** Queue a scripted behaviour. */
  script(rule: ScriptRule): void;
  /** Drop every queued script. */
  clearScripts(): void;
  /** Requests received, in arrival order (bounded by `defaults.maxRecorded`). */
  requests(): RecordedRequest[];
  /** Number of requests received that match the filter (exact, not bounded). */
  count(filter?: CountFilter): number;
  /** Counters and status histogram, as served by GET /_control/stats. */
  stats(): ModelServerStats;
  /** Zero the counters and forget recorded requests (scripts and prefix cache are kept). */
  resetCounters(): void;
  /** Stop listening and close every connection, including hanging ones. */
  close(): Promise<void>;
}
