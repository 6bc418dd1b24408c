/** Building dead-letter records for `<topic>.dlq`. */
import type { DeadLetter } from '../../schemas/dead-letter.js';
import type { OutMessage } from '../adapters/kafka/client.js';
import { dlqTopic } from '../config.js';
import { clipText, wellFormed } from '../core/text.js';
import type { Rejection, StageName } from './stage.js';

export function deadLetterMessage(stage: StageName, r: Rejection, now: Date): OutMessage {
  const record: DeadLetter = {
    schema: 'dead_letter',
    schema_version: 1,
    source: { topic: r.record.topic, partition: r.record.partition, offset: r.record.offset },
    stage,
    error_code: r.code,
    // Reasons may quote input or model text: well-formed, so strict JSON readers accept the record.
    reason: wellFormed(clipText(r.reason, 2_000)),
    raw_key: r.record.key,
    raw_value_base64: r.record.value === null ? null : r.record.value.toString('base64'),
    failed_at: now.toISOString(),
  };
  return {
    topic: dlqTopic(r.record.topic),
    // Keep the source key so a replay lands on the same partition; fall back to a stable key.
    key: r.record.key ?? `${r.record.topic}:${r.record.partition}:${r.record.offset}`,
    value: JSON.stringify(record),
    headers: { 'pinrich-error-code': r.code },
  };
}
