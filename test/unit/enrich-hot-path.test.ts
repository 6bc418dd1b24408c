/**
 * The enrich hot path's shortcuts give exactly what the general code gives:
 * - `documentJson` extends the JSON `buildDocument` hashed instead of serialising the document
 *   again: byte for byte `JSON.stringify({ ...content, version, updated_at })`;
 * - `cleanText` / `foldText` skip the Unicode passes for plain ASCII: the same result as the
 *   full normalisation, on every kind of input near that boundary;
 * - `decodeRecord` parses an engagement event with the one union option its `type` can match:
 *   the same value, or the same dead-letter reason, as the whole union.
 */
import { describe, expect, it } from 'vitest';
import { EngagementEvent } from '../../schemas/engagement-event.js';
import { decodeRecord, summariseIssues } from '../../src/core/decode.js';
import { buildDocument, documentJson, type PinState } from '../../src/core/document.js';
import { cleanText, foldText } from '../../src/core/text.js';

/** The normalisation without the ASCII shortcut (the rule text.ts documents). */
const fullClean = (s: string) =>
  s
    .toWellFormed()
    .normalize('NFKC')
    .replace(/[\s\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/gu, ' ')
    .replace(/(?![\u200c\u200d])[\p{Cc}\p{Cf}\p{Co}\p{Cn}]/gu, '')
    .replace(/ {2,}/g, ' ')
    .trim();
const fullFold = (s: string) => fullClean(s).toLowerCase().replace(/ß/g, 'ss').replace(/ς/g, 'σ').normalize('NFKC');

declare global {
  interface String {
    toWellFormed(): string;
  }
}

describe('documentJson', () => {
  const state: PinState = {
    pin: { title: 'Tarte "aux" pommes', description: 'Quick\\dinner 😀 ünïcödé', image_key: 'k1', link_url: 'https://example.com/a?b=1&c=2', link_title: '', link_description: 'x\ny', language: 'fr' },
    caption: { image_key: 'k1', status: 'ok', text: 'A bowl </script> of pasta.' },
    boards: [
      { text: 'dinner', count: 2 },
      { text: 'pâtes', count: 5 },
    ],
    queries: [{ text: 'lemon pasta', count: 3 }],
    engagementCount: 12,
  };

  it('is JSON.stringify of the published document, byte for byte', () => {
    const content = buildDocument('p1', state, 10);
    for (const [version, at] of [
      [1, '2026-12-02T06:00:00.000Z'],
      [123456, '2026-12-02T06:00:00.123Z'],
    ] as const) {
      const json = documentJson(content, version, at);
      expect(json).toBe(JSON.stringify({ ...content, version, updated_at: at }));
      expect(JSON.parse(json)).toMatchObject({ pin_id: 'p1', version, updated_at: at, content_hash: content.content_hash });
    }
  });

  it('serialises content it did not build (a copy) the same way', () => {
    const content = { ...buildDocument('p1', state, 10), title: 'changed' };
    expect(documentJson(content, 2, '2026-12-02T06:00:00.000Z')).toBe(JSON.stringify({ ...content, version: 2, updated_at: '2026-12-02T06:00:00.000Z' }));
  });
});

describe('plain-ASCII shortcut of cleanText / foldText', () => {
  const inputs = [
    '',
    'Summer Outfits',
    'summer outfits',
    ' leading',
    'trailing ',
    'two  spaces',
    'tab\there',
    'new\nline',
    '~!@#$%^&*()_+{}|:"<>?`-=[]\\;\',./',
    'DEL\u007f',
    'nul\u0000',
    'caf\u00e9',
    'ﬁne ligature',
    'Straße',
    'ΣΊΣΥΦΟΣ',
    'zero\u200bwidth',
    'full　width',
    'Ｆｕｌｌ',
    '\ud800 lone',
  ];
  it.each(inputs.map((s) => [JSON.stringify(s), s]))('%s', (_, s) => {
    expect(cleanText(s)).toBe(fullClean(s));
    expect(foldText(s)).toBe(fullFold(s));
  });
});

describe('engagement events decoded by the option their type names', () => {
  const base = { schema: 'engagement_event', schema_version: 1, event_id: 'e-1', pin_id: 'pin-1', event_time: '2026-12-02T06:00:00.000Z', user_id: 'u-1' };
  const records: Record<string, unknown> = {
    save: { ...base, type: 'save', board_title: 'Summer Outfits' },
    search: { ...base, type: 'search_click', query: 'lemon pasta' },
    'long click with an unknown field (stripped)': { ...base, type: 'long_click', query: 'q', extra: 1 },
    'save carrying a query, not a board title': { ...base, type: 'save', query: 'q' },
    'search with an empty query': { ...base, type: 'closeup', query: '' },
    'unknown type': { ...base, type: 'like', query: 'q' },
    'no type': { ...base, query: 'q' },
    'impossible date': { ...base, type: 'search_click', query: 'q', event_time: '2026-02-30T06:00:00.000Z' },
    'bad pin id': { ...base, pin_id: 'pin 1', type: 'save', board_title: 'b' },
  };
  it.each(Object.entries(records))('%s', (_, record) => {
    const decoded = decodeRecord('engagement_event', Buffer.from(JSON.stringify(record)), 1 << 20);
    const union = EngagementEvent.safeParse(record);
    if (union.success) expect(decoded).toEqual({ ok: true, value: union.data });
    else expect(decoded).toEqual({ ok: false, code: 'schema_violation', reason: summariseIssues(union.error.issues) });
  });
});
