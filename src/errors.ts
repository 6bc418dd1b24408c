/**
 * Typed errors with a stable `code` and a `retriable` flag (after kafkajs' KafkaJSError and
 * Temporal's ApplicationFailure). Adapters translate SDK errors into these; the runtime alone
 * decides what to do with them: retry, dead-letter, or stop. Never classify by message text.
 */
import type { DeadLetterCode } from '../schemas/dead-letter.js';

export type ErrorCode =
  | DeadLetterCode
  | 'model_rate_limited'
  | 'model_timeout'
  | 'model_server_error'
  /** No answer at all (connection refused/reset): the server is down, not this request bad. */
  | 'model_unreachable'
  | 'config_invalid'
  /** A development-only command (stack, demo, model-server) run from a build without it. */
  | 'command_unavailable'
  | 'state_unavailable'
  /** Topics whose partitions have no serving leader within the wait (`topics create`). */
  | 'topics_not_ready'
  | 'aborted';

export class PinrichError extends Error {
  override readonly name = 'PinrichError';
  readonly code: ErrorCode;
  readonly retriable: boolean;
  /** Server-requested delay before a retry (Retry-After), when there was one. */
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, opts: { retriable?: boolean; cause?: unknown; retryAfterMs?: number } = {}) {
    super(message, { cause: opts.cause });
    this.code = code;
    this.retriable = opts.retriable ?? false;
    this.retryAfterMs = opts.retryAfterMs;
  }
}

export const isPinrichError = (err: unknown): err is PinrichError => err instanceof PinrichError;

/** The error code to dead-letter an error under: its own when it is ours, else processing_error. */
export function deadLetterCodeOf(err: unknown): DeadLetterCode {
  if (isPinrichError(err)) {
    switch (err.code) {
      case 'model_rate_limited':
      case 'model_timeout':
      case 'model_server_error':
      case 'model_unreachable':
        return 'model_unavailable';
      case 'config_invalid':
      case 'command_unavailable':
      case 'state_unavailable':
      case 'topics_not_ready':
      case 'aborted':
        return 'processing_error';
      default:
        return err.code;
    }
  }
  return 'processing_error';
}

/** A one-line description of any thrown value, for logs and dead-letter reasons. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * Model errors that say "the model service cannot answer right now" rather than "this request
 * is bad": connection refused/reset (server down), 429 (rate limited) and timeouts. When the
 * retry policy gives up on one of these, the caption and score stages fail the whole batch (an
 * infrastructure error): the worker retries the same batch with backoff and holds its offsets,
 * so an outage delays output but never turns into failed captions or dead-lettered pairs.
 * A 5xx answer from a server that is up still exhausts the policy and fails that one record:
 * a request the server keeps choking on must not hold its partition forever.
 */
export function isModelOutage(err: unknown): boolean {
  return isPinrichError(err) && (err.code === 'model_unreachable' || err.code === 'model_rate_limited' || err.code === 'model_timeout');
}
