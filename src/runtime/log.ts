/**
 * Structured JSON logs, one object per line, through pino (what operators' log pipelines expect).
 *
 * pinrich's own Logger interface stays the only thing the rest of the code sees: `info(msg,
 * fields)`, `child(fields)`. A line holds `level` (the name: debug, info, warn, error), `t`
 * (ISO-8601 time), `msg`, then the logger's bound fields and the call's fields; no pid or
 * hostname (the orchestrator adds those). Lines go to `write` synchronously, which is where the
 * CLI scrubs secret values (runtime/redact.ts) before they reach stderr, as before pino.
 */
import { pino, type Logger as PinoLogger } from 'pino';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/**
 * A logger at `level` with `base` fields on every line; each line (without its newline) goes to
 * `write`, by default stderr.
 */
export function createLogger(
  level: LogLevel = 'info',
  base: Record<string, unknown> = {},
  write: (line: string) => void = (line) => process.stderr.write(line + '\n'),
): Logger {
  const root = pino(
    {
      level,
      base: null,
      messageKey: 'msg',
      timestamp: () => `,"t":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
    },
    // pino hands a destination whole lines, synchronously, ending in a newline.
    { write: (chunk: string) => write(chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk) },
  );
  return wrap(Object.keys(base).length > 0 ? root.child(base) : root);
}

function wrap(p: PinoLogger): Logger {
  return {
    debug: (msg, fields) => p.debug(fields ?? {}, msg),
    info: (msg, fields) => p.info(fields ?? {}, msg),
    warn: (msg, fields) => p.warn(fields ?? {}, msg),
    error: (msg, fields) => p.error(fields ?? {}, msg),
    child: (fields) => wrap(p.child(fields)),
  };
}

/** A logger that drops everything (tests, quiet CLI commands). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
