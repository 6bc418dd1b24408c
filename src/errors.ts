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
  | 'config_invalid'
  | 'state_unavailable'
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
        return 'model_unavailable';
      case 'config_invalid':
      case 'state_unavailable':
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
