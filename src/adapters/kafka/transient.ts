/**
 * Waiting out an unreachable Kafka cluster. A broker restart, a leader election or a moving
 * group coordinator fail kafkajs calls for a few seconds; a worker that starts (or rejoins its
 * group) in that window must wait, not exit. kafkajs retries inside one call, but gives up
 * after its own retry budget, and some of its "non-retriable" errors are transient here:
 * KafkaJSGroupCoordinatorNotFound is what it throws when no broker answers at all.
 */
import { describeError } from '../../errors.js';
import type { Logger } from '../../runtime/log.js';
import { backoffDelay, sleep } from '../../runtime/retry.js';

/** kafkajs errors that mean "nobody answered (yet)", whatever their `retriable` flag says. */
const UNREACHABLE = new Set(['KafkaJSGroupCoordinatorNotFound', 'KafkaJSNoBrokerAvailableError', 'KafkaJSConnectionError', 'KafkaJSConnectionClosedError', 'KafkaJSRequestTimeoutError', 'KafkaJSBrokerNotFound', 'KafkaJSMetadataNotLoaded', 'KafkaJSTopicMetadataNotLoaded']);

/** kafkajs wraps the real error (retrier exhaustion, crashes) in `cause`: the chain, outermost first. */
function causes(err: unknown): object[] {
  const out: object[] = [];
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) out.push(e);
  return out;
}

/**
 * True when waiting may fix `err`: a connection failure, a missing coordinator or leader, or a
 * protocol error Kafka itself marks retriable. False for authentication, authorization, bad
 * requests and everything that is not a kafkajs error.
 */
export function isTransientKafkaError(err: unknown): boolean {
  return causes(err).some((e) => {
    const { name, retriable } = e as { name?: unknown; retriable?: unknown };
    return typeof name === 'string' && name.startsWith('KafkaJS') && (UNREACHABLE.has(name) || retriable === true);
  });
}

/** A hint for the operator when the root cause is one we can name. */
function hintFor(err: unknown): string {
  const types = causes(err).map((e) => (e as { type?: unknown }).type);
  if (types.includes('UNKNOWN_TOPIC_OR_PARTITION')) return ' (a topic is missing: run `pinrich topics create`)';
  return '';
}

/**
 * Run `fn` until it succeeds, retrying transient Kafka errors with capped exponential backoff
 * for at most `timeoutMs`. Other errors, and the last error once the time is up, are thrown
 * (with what was being waited for in the message).
 */
export async function untilKafkaAnswers<T>(what: string, fn: () => Promise<T>, opts: { log: Logger; timeoutMs: number; signal?: AbortSignal }): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const transient = isTransientKafkaError(err);
      const left = deadline - Date.now();
      if (!transient || left <= 0 || opts.signal?.aborted) {
        const why = transient ? `Kafka did not answer for ${Math.round(opts.timeoutMs / 1000)} s` : 'failed';
        throw new Error(`${what}: ${why}: ${describeError(err)}${hintFor(err)}`, { cause: err });
      }
      const delayMs = Math.min(left, 500 + backoffDelay(attempt, 500, 5_000));
      opts.log.warn(`${what}: Kafka is unreachable; waiting`, { attempt, delayMs: Math.round(delayMs), error: describeError(err) });
      await sleep(delayMs, opts.signal);
    }
  }
}
