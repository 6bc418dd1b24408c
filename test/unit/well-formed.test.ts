/**
 * Lone UTF-16 surrogates (JSON "\ud800") never reach what pinrich publishes: strict JSON readers
 * (Rust's serde_json) reject a record holding one. Every output kind is checked by serialising
 * it as pinrich does and looking for a surrogate escape without its partner.
 */
import { describe, expect, it } from 'vitest';
import type { Caption } from '../../schemas/caption.js';
import { topics } from '../../src/config.js';
import { decodeRecord } from '../../src/core/decode.js';
import { buildDocument } from '../../src/core/document.js';
import { clipText, cleanText, foldText, isWellFormed, wellFormed } from '../../src/core/text.js';
import { deadLetterMessage } from '../../src/runtime/dead-letter.js';
import { silentLogger } from '../../src/runtime/log.js';
import { createCaptionStage } from '../../src/stages/caption/stage.js';
import { pinFieldsOf } from '../../src/stages/enrich/stage.js';
import { createFakeClock, createMemoryCaptionCache, createMemoryRateLimiter, createScriptedCaptioner, createStageDriver } from '../support/stage-driver.js';

const LONE = ['\\ud800', '\\udfff', '\\udbff\\u0041', 'x\\udc00y'];
/** A JSON text a strict reader rejects: a high surrogate escape not followed by a low one, or a low one alone. */
const unpaired = (json: string) => /\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}/.test(json);
const bytes = (json: string) => Buffer.from(json, 'utf8');
const t = topics({ topicPrefix: '' });

describe('the unpaired-escape check itself', () => {
  it('sees lone surrogates and accepts pairs and plain text', () => {
    expect(unpaired(JSON.stringify({ a: '\ud800' }))).toBe(true);
    expect(unpaired(JSON.stringify({ a: 'x\udc00' }))).toBe(true);
    expect(unpaired(JSON.stringify({ a: '😀 \ud83d\ude00 é' }))).toBe(false);
    expect(unpaired('{"a":"\\ud83d\\ude00"}')).toBe(false);
  });
});

describe('text normalisation makes text well-formed', () => {
  it.each(LONE)('cleanText / foldText / wellFormed of %s', (escaped) => {
    const s = JSON.parse(`"a ${escaped} b"`) as string;
    expect(isWellFormed(s)).toBe(false);
    for (const out of [cleanText(s), foldText(s), wellFormed(s)]) expect(isWellFormed(out)).toBe(true);
    expect(cleanText('tarte 😀 aux pommes')).toBe('tarte 😀 aux pommes');
  });

  it('clipText never leaves half a surrogate pair', () => {
    expect(clipText('ab😀', 3)).toBe('ab');
    expect(clipText('ab😀', 4)).toBe('ab😀');
    expect(clipText('abc', 2)).toBe('ab');
  });
});

describe('every published kind is well-formed', () => {
  it('enriched document fields (title, description, link, board titles, queries) from a pin event with lone surrogates', () => {
    const json = `{"schema":"pin_event","schema_version":1,"type":"created","pin_id":"p1","event_time":"2026-01-01T00:00:00.000Z",
      "title":"Tarte ${LONE[0]}","description":"aux ${LONE[1]} pommes","image_url":"https://images.example.com/a.jpg",
      "link":{"url":"https://example.com/${LONE[3]}","title":"t ${LONE[2]}","description":"${LONE[3]}"},"language":"fr"}`;
    const decoded = decodeRecord('pin_event', bytes(json), 262_144);
    if (!decoded.ok) throw new Error(decoded.reason);
    const event = decoded.value;
    if (event.type === 'deleted') throw new Error('unexpected');
    const boards = [{ text: foldText(JSON.parse(`"board ${LONE[0]}"`)), count: 2 }];
    const queries = [{ text: foldText(JSON.parse(`"query ${LONE[3]}"`)), count: 1 }];
    const doc = buildDocument('p1', { pin: pinFieldsOf(event), caption: null, boards, queries, engagementCount: 3 }, 10);
    const out = JSON.stringify(doc);
    expect(unpaired(out)).toBe(false);
    expect(doc.title).toBe('Tarte \ufffd');
    expect(doc.link_url).toBe('https://example.com/x\ufffdy');
  });

  it("the label's query: a pair's query is well-formed once decoded (the label carries it as it is)", () => {
    const json = `{"schema":"pair","schema_version":1,"pair_id":"${"ab".repeat(16)}","pin_id":"p1","query":"red ${LONE[0]} shoes","source":"manual","language":"en","created_at":"2026-01-01T00:00:00.000Z"}`;
    const decoded = decodeRecord('pair', bytes(json), 262_144);
    if (!decoded.ok) throw new Error(decoded.reason);
    expect(decoded.value.query).toBe('red \ufffd shoes');
    expect(unpaired(JSON.stringify(decoded.value))).toBe(false);
  });

  it('a dead-letter reason quoting a lone surrogate', () => {
    const record = { topic: 'pins.events', partition: 0, offset: '7', key: 'p1', value: Buffer.from('{}'), timestamp: 0 };
    const m = deadLetterMessage('caption', { record, code: 'schema_violation', reason: `bad title ${JSON.parse(`"${LONE[0]}"`)}` }, new Date(0));
    expect(unpaired(String(m.value))).toBe(false);
    expect(JSON.parse(String(m.value)).reason).toBe('bad title \ufffd');
    // Cut at the length limit without splitting a pair.
    const long = deadLetterMessage('caption', { record, code: 'schema_violation', reason: 'x'.repeat(1_999) + '😀' }, new Date(0));
    expect(unpaired(String(long.value))).toBe(false);
  });

  it('caption records and dead letters of the caption stage (driver), from input and model text with lone surrogates', async () => {
    const clock = createFakeClock();
    const driver = createStageDriver(
      createCaptionStage({
        captioner: createScriptedCaptioner(() => ({ text: JSON.parse(`"a red ${LONE[0]} shoe ${'😀'.repeat(400)}"`) as string, usage: null })),
        cache: createMemoryCaptionCache(),
        limiter: createMemoryRateLimiter(clock, { requestsPerSecond: 0, tokensPerMinute: 0 }),
        policy: { allowedSchemes: ['https'], allowedHosts: [], maxLength: 2_048 },
        retry: { maxAttempts: 1, baseMs: 1, maxMs: 1, timeoutMs: 10_000 },
        concurrency: 2,
        maxRecordBytes: 262_144,
        topics: t,
        clock,
        log: silentLogger,
      }),
      { clock },
    );
    await driver.pipe(t.pinEvents, [
      { key: 'p1', value: `{"schema":"pin_event","schema_version":1,"type":"created","pin_id":"p1","event_time":"2026-01-01T00:00:00.000Z","title":"${LONE[0]}","description":"","image_url":"https://images.example.com/a.jpg"}` },
      { key: 'p2', value: `{"schema":"pin_event","schema_version":1,"type":"${LONE[0]}","pin_id":"p2"}` },
    ]);
    const captions = driver.read(t.captions);
    expect(captions).toHaveLength(1);
    expect((JSON.parse(String(captions[0]!.value)) as Caption).status).toBe('ok');
    expect(unpaired(String(captions[0]!.value))).toBe(false);
    const dlq = driver.read(`${t.pinEvents}.dlq`);
    expect(dlq).toHaveLength(1);
    expect(unpaired(String(dlq[0]!.value))).toBe(false);
  });
});
