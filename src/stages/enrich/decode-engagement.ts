/**
 * The enrich worker's hot-path decoder for `engagement_event` records: the same result as
 * `decodeRecord('engagement_event', ...)` (core/decode.ts) at a fraction of its cost, as
 * stages/dump/decode-label.ts is for labels.
 *
 * Every engagement event passes here; zod's parse (which also copies the record) was ~6 % of
 * the worker's CPU on a backlog. A record that is a well-formed `engagement_event` v1 (nearly all
 * of them) is accepted by a hand-written check of the schema's constraints and used as parsed;
 * anything else — too big, not UTF-8, not JSON, a lone surrogate, another schema or version, any
 * field the check does not like — goes through `decodeRecord` itself, so every dead letter
 * keeps exactly the code and reason it had before.
 *
 * The check only has to be *sound*: it may send a valid record the slow way, but must never
 * accept one that zod rejects. test/unit/enrich-decode.test.ts holds it to that against
 * schemas/engagement-event.ts, field by field. Unknown extra fields stay on the value (zod
 * strips them); the stage reads only the schema's fields.
 */
import { ENGAGEMENT_EVENT, ENGAGEMENT_EVENT_VERSION, SEARCH_ENGAGEMENT_TYPES, type EngagementEvent } from '../../../schemas/engagement-event.js';
import { LIMITS, Timestamp } from '../../../schemas/common.js';
import { decodeRecord, parseRecordJson, type Decoded } from '../../core/decode.js';

// The patterns of schemas/common.ts, as they are there: Id's, and the RFC 3339 pattern zod's own
// Timestamp check tests (read from the schema, so the two cannot drift apart).
const ID = /^[A-Za-z0-9_.:-]+$/;
const TIMESTAMP: RegExp = Timestamp.def.pattern!; // always set for z.iso.datetime
const SEARCH_TYPES: ReadonlySet<unknown> = new Set(SEARCH_ENGAGEMENT_TYPES);

/** Decode one `pins.engagement` record value: an `EngagementEvent`, or the dead-letter code and reason. */
export function decodeEngagement(bytes: Buffer | null, maxBytes: number): Decoded<EngagementEvent> {
  const parsed = parseRecordJson(bytes, maxBytes);
  if (parsed && isEngagementV1(parsed.json)) return { ok: true, value: parsed.json };
  return decodeRecord(ENGAGEMENT_EVENT, bytes, maxBytes);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isId = (v: unknown): boolean => typeof v === 'string' && v.length >= 1 && v.length <= LIMITS.id && ID.test(v);
const isText = (v: unknown, max: number): boolean => typeof v === 'string' && v.length >= 1 && v.length <= max;

/** True only for a value that schemas/engagement-event.ts `EngagementEvent` (v1) accepts. */
function isEngagementV1(v: unknown): v is EngagementEvent {
  if (!isObject(v) || v.schema !== ENGAGEMENT_EVENT || v.schema_version !== ENGAGEMENT_EVENT_VERSION) return false;
  if (!isId(v.event_id) || !isId(v.pin_id) || !isId(v.user_id)) return false;
  if (typeof v.event_time !== 'string' || !TIMESTAMP.test(v.event_time)) return false;
  if (v.type === 'save') return isText(v.board_title, LIMITS.boardTitle);
  return SEARCH_TYPES.has(v.type) && isText(v.query, LIMITS.query);
}
