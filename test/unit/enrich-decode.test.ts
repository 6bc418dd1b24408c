/**
 * The enrich worker's fast engagement decoder (src/stages/enrich/decode-engagement.ts) against
 * the contract's own decoder: for valid saves and search events and for every field broken in
 * every way we could think of, both must agree — same dead-letter code and reason, or the same
 * event (in the fields the stage reads).
 */
import { describe, expect, it } from 'vitest';
import { decodeRecord } from '../../src/core/decode.js';
import { decodeEngagement } from '../../src/stages/enrich/decode-engagement.js';

const BASE = { schema: 'engagement_event', schema_version: 1, event_id: 'ev-0001', pin_id: 'pin-0000001', event_time: '2026-11-28T10:15:00.123Z', user_id: 'u:42' };
const SAVE = { ...BASE, type: 'save', board_title: 'Kitchen ideas' };
const SEARCH = { ...BASE, type: 'search_click', query: 'red shoes' };

/** Bad (and some odd-but-valid) values per field; `undefined` means the field is left out. */
const COMMON: Record<string, unknown[]> = {
  schema: ['pin_event', null, undefined, 1],
  schema_version: [2, '1', 1.5, 0, null, undefined],
  event_id: ['', 'x'.repeat(128), 'x'.repeat(129), 'ev 1', 'ev\u00e9', 7, null, undefined],
  pin_id: ['', 'p'.repeat(128), 'p'.repeat(129), 'pin/1', 3, undefined],
  user_id: ['', 'u'.repeat(129), 'u.1:_-', 'u 1', false, undefined],
  event_time: ['2026-11-28T10:15:00Z', '2026-11-28T10:15:00+02:00', '2024-02-29T00:00:00Z', '2026-02-29T00:00:00Z', '2026-11-28 10:15:00Z', '2026-11-28T24:00:00Z', '2026-11-28T10:15:00', '2026-11-28', 1764325000000, undefined],
  type: ['save', 'search_click', 'closeup', 'long_click', 'click', 'SAVE', null, undefined],
};
const BY_TYPE: Array<[string, Record<string, unknown>, Record<string, unknown[]>]> = [
  ['save', SAVE, { ...COMMON, board_title: ['', 'b'.repeat(500), 'b'.repeat(501), 'é'.repeat(500), '  ', 5, null, undefined], query: ['a query on a save'] }],
  ['search', SEARCH, { ...COMMON, query: ['', 'q'.repeat(500), 'q'.repeat(501), '日本'.repeat(250), 5, undefined], board_title: ['a board on a search'] }],
];

function variants(): Array<[string, Buffer | null]> {
  const out: Array<[string, Buffer | null]> = [];
  for (const [kind, valid, fields] of BY_TYPE) {
    out.push([`${kind} valid`, Buffer.from(JSON.stringify(valid))]);
    for (const [field, values] of Object.entries(fields)) {
      values.forEach((value, i) => out.push([`${kind} ${field} #${i}`, Buffer.from(JSON.stringify({ ...valid, [field]: value }))]));
    }
    out.push(
      [`${kind} extra field`, Buffer.from(JSON.stringify({ ...valid, note: 'kept out' }))],
      [`${kind} lone surrogate (made well-formed)`, Buffer.from(JSON.stringify({ ...valid, user_id: 'x' }).replace('"x"', '"\\ud800"'))],
      [`${kind} duplicate key, last one wins`, Buffer.from(JSON.stringify(valid).replace('"schema_version":1', '"schema_version":9,"schema_version":1'))],
    );
  }
  out.push(
    ['null value', null],
    ['empty', Buffer.alloc(0)],
    ['oversized', Buffer.from(JSON.stringify({ ...SEARCH, query: 'q'.repeat(3_000) }))],
    ['malformed JSON', Buffer.from('{"schema":"engagement_event",')],
    ['not UTF-8', Buffer.from([0x7b, 0xff, 0x7d])],
    ['an array', Buffer.from('[1,2]')],
    ['a string', Buffer.from('"save"')],
  );
  return out;
}

/** What the stage uses of a decode: the failure, or the fields it reads. */
function outcome(d: ReturnType<typeof decodeRecord<'engagement_event'>>) {
  if (!d.ok) return { code: d.code, reason: d.reason };
  const e = d.value;
  return { event_id: e.event_id, pin_id: e.pin_id, type: e.type, text: e.type === 'save' ? e.board_title : e.query };
}

describe('enrich engagement decoder', () => {
  const MAX = 2_000;
  it.each(variants())('%s: same result as decodeRecord', (_name, bytes) => {
    const fast = decodeEngagement(bytes, MAX);
    const full = decodeRecord('engagement_event', bytes, MAX);
    expect(fast.ok).toBe(full.ok);
    expect(outcome(fast)).toEqual(outcome(full));
  });

  it('covers both outcomes', () => {
    const results = variants().map(([, b]) => decodeEngagement(b, MAX).ok);
    expect(results.filter(Boolean).length).toBeGreaterThan(15);
    expect(results.filter((ok) => !ok).length).toBeGreaterThan(50);
  });
});
