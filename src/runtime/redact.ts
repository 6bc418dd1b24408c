/**
 * Scrubbing of secret values from text that leaves the process: log lines, error messages,
 * published records (dead-letter reasons, failed-caption reasons). The first line of defence
 * is never putting a secret in a message; this is the second, for text pinrich does not write
 * itself — a model server that echoes the API key in a 401 body, a client library that prints
 * a connection string.
 */
import type { OutMessage, Publisher } from '../adapters/kafka/client.js';

export const REDACTED = '[REDACTED]';

/** `text` with every occurrence of every secret replaced. The identity when there are none. */
export type Redactor = (text: string) => string;

export function createRedactor(secrets: readonly string[]): Redactor {
  // Also the JSON-escaped form: log lines are JSON, where a quote or backslash in a secret is escaped.
  const forms = secrets.flatMap((s) => [s, JSON.stringify(s).slice(1, -1)]);
  const list = [...new Set(forms.filter((s) => s.length > 0))].sort((a, b) => b.length - a.length);
  if (list.length === 0) return (text) => text;
  return (text) => {
    let out = text;
    for (const s of list) if (out.includes(s)) out = out.split(s).join(REDACTED);
    return out;
  };
}

/**
 * A publisher that redacts string values before they reach Kafka. Buffer values (raw input
 * bytes) and headers pass unchanged: they are what upstream sent (a sent-on record keeps its
 * producer's headers) or pinrich's own fixed words (a dead letter's `pinrich-error-code`), never
 * text that could carry a secret.
 */
export function redactingPublisher(inner: Publisher, redact: Redactor): Publisher {
  return {
    publish: (messages) =>
      inner.publish(
        messages.map((m): OutMessage => {
          const value = typeof m.value === 'string' ? redact(m.value) : m.value;
          return value === m.value ? m : { ...m, value };
        }),
      ),
    close: () => inner.close(),
  };
}
