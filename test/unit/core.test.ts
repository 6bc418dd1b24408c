import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeRecord } from '../../src/core/decode.js';
import { assemblePinText, buildDocument, topK, type PinState } from '../../src/core/document.js';
import { cleanText, foldText } from '../../src/core/text.js';
import { checkImageUrl } from '../../src/core/url-policy.js';
import { loadLanguageDetector, resolveLanguage } from '../../src/core/language.js';

const pin = { schema: 'pin_event', schema_version: 1, type: 'created', pin_id: 'p1', event_time: '2026-11-28T00:00:00Z', title: 'T' };
const buf = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

describe('decodeRecord', () => {
  it.each([
    ['a valid record', buf(pin), null],
    ['no value', null, 'empty_record'],
    ['an oversized value', buf({ ...pin, description: 'x'.repeat(2_000) }), 'oversized_record'],
    ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0x7d]), 'invalid_utf8'],
    ['truncated JSON', buf('{"schema":"pin_event",'), 'malformed_json'],
    ['a JSON array', buf([1, 2]), 'schema_violation'],
    ['another schema', buf({ ...pin, schema: 'caption' }), 'unknown_schema'],
    ['an unknown version', buf({ ...pin, schema_version: 2 }), 'unknown_schema_version'],
    ['a string version', buf({ ...pin, schema_version: '1' }), 'unknown_schema_version'],
    ['a wrong type', buf({ ...pin, title: 42 }), 'schema_violation'],
    ['a bad pin id', buf({ ...pin, pin_id: 'a b' }), 'schema_violation'],
    ['a bad timestamp', buf({ ...pin, event_time: 'yesterday' }), 'schema_violation'],
    ['a bad language tag', buf({ ...pin, language: 'english!' }), 'schema_violation'],
  ])('%s', (_name, bytes, code) => {
    const d = decodeRecord('pin_event', bytes, 1_024);
    if (code === null) expect(d.ok).toBe(true);
    else {
      expect(d.ok).toBe(false);
      if (!d.ok) {
        expect(d.code).toBe(code);
        expect(d.reason.length).toBeGreaterThan(5);
      }
    }
  });

  it('names the offending field in a schema violation', () => {
    const d = decodeRecord('pin_event', buf({ ...pin, title: 'x'.repeat(1_001) }), 100_000);
    expect(d.ok).toBe(false);
    if (!d.ok) expect(d.reason).toMatch(/^title: /);
  });

  it('requires the query of search engagement and the board title of saves', () => {
    const base = { schema: 'engagement_event', schema_version: 1, event_id: 'e', pin_id: 'p', event_time: '2026-11-28T00:00:00Z', user_id: 'u' };
    expect(decodeRecord('engagement_event', buf({ ...base, type: 'save', board_title: 'b' }), 1e4).ok).toBe(true);
    expect(decodeRecord('engagement_event', buf({ ...base, type: 'search_click', query: 'q' }), 1e4).ok).toBe(true);
    expect(decodeRecord('engagement_event', buf({ ...base, type: 'save', query: 'q' }), 1e4).ok).toBe(false);
    expect(decodeRecord('engagement_event', buf({ ...base, type: 'closeup' }), 1e4).ok).toBe(false);
  });
});

describe('text normalisation', () => {
  it.each([
    ['  Summer   Outfits \n', 'Summer Outfits', 'summer outfits'],
    ['ＦＵＬＬ width', 'FULL width', 'full width'], // NFKC
    ['Stra\u00dfe', 'Straße', 'strasse'], // case folding beyond toLowerCase
    ['a\u202eb\u200bc\u0000d', 'abcd', 'abcd'], // bidi override, zero-width space, NUL removed
    ['ﬁne', 'fine', 'fine'], // ligature
    ['ΣΟΦΟΣ', 'ΣΟΦΟΣ', 'σοφοσ'], // final sigma folds to sigma
    ['می\u200cخواهم', 'می\u200cخواهم', 'می\u200cخواهم'], // ZWNJ kept (Persian)
  ])('%j', (input, clean, folded) => {
    expect(cleanText(input)).toBe(clean);
    expect(foldText(input)).toBe(folded);
  });
});

describe('image URL policy', () => {
  const policy = { allowedSchemes: ['https'], allowedHosts: [] as string[], maxLength: 2048 };
  it.each([
    ['https://i.pinimg.com/a.jpg', true],
    ['http://i.pinimg.com/a.jpg', false],
    ['file:///etc/passwd', false],
    ['gopher://x/', false],
    ['https://169.254.169.254/latest/meta-data/', false],
    ['https://127.0.0.1/', false],
    ['https://2130706433/', false], // decimal form of 127.0.0.1
    ['https://0x7f.1/', false],
    ['https://10.1.2.3/', false],
    ['https://172.20.0.1/', false],
    ['https://192.168.1.1/', false],
    ['https://[::1]/', false],
    ['https://[::ffff:127.0.0.1]/', false],
    ['https://[fe80::1]/', false],
    ['https://localhost/', false],
    ['https://metadata.google.internal/', false],
    ['https://user:pw@example.com/', false],
    ['https://8.8.8.8/x.png', true],
    ['not a url', false],
  ])('%s -> %s', (url, ok) => {
    expect(checkImageUrl(url, policy).ok).toBe(ok);
  });
  it('applies the host allowlist by suffix', () => {
    const p = { ...policy, allowedHosts: ['pinimg.com'] };
    expect(checkImageUrl('https://i.pinimg.com/a.jpg', p).ok).toBe(true);
    expect(checkImageUrl('https://evilpinimg.com/a.jpg', p).ok).toBe(false);
  });
});

describe('document assembly', () => {
  const state: PinState = {
    pin: { title: 'Lemon pasta', description: 'Quick dinner', image_key: 'k1', link_url: null, link_title: '', link_description: '', language: 'en' },
    caption: { image_key: 'k1', status: 'ok', text: 'A bowl of pasta.' },
    boards: [
      { text: 'dinner', count: 2 },
      { text: 'pasta', count: 5 },
      { text: 'aaa', count: 2 },
    ],
    queries: [{ text: 'lemon pasta', count: 3 }],
    engagementCount: 12,
  };

  it('orders top-K by count, then text, and cuts at K', () => {
    expect(topK(state.boards, 2)).toEqual([
      { text: 'pasta', count: 5 },
      { text: 'aaa', count: 2 },
    ]);
  });

  it('is deterministic and hashes content, whatever the input order', () => {
    const a = buildDocument('p1', state, 10);
    const b = buildDocument('p1', { ...state, boards: [...state.boards].reverse() }, 10);
    expect(a.content_hash).toBe(b.content_hash);
    expect(a.content_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(buildDocument('p1', { ...state, engagementCount: 13 }, 10).content_hash).not.toBe(a.content_hash);
    // What it hashes: the document's JSON without the hash itself (version and updated_at come at publish).
    const { content_hash, ...rest } = a;
    expect(content_hash).toBe(createHash('sha256').update(JSON.stringify(rest)).digest('hex'));
  });

  it('uses a caption only for the current image', () => {
    expect(buildDocument('p1', state, 10).caption).toBe('A bowl of pasta.');
    const replaced = buildDocument('p1', { ...state, pin: { ...state.pin, image_key: 'k2' } }, 10);
    expect(replaced.caption).toBeNull();
    expect(replaced.caption_status).toBe('pending');
    const failed = buildDocument('p1', { ...state, caption: { image_key: 'k1', status: 'failed', text: null } }, 10);
    expect(failed.caption_status).toBe('failed');
  });

  it('assembles labelled pin text, leaving out empty fields', () => {
    const text = assemblePinText(buildDocument('p1', state, 10));
    expect(text).toBe('Title: Lemon pasta\nDescription: Quick dinner\nImage: A bowl of pasta.\nBoards: pasta | aaa | dinner\nSearches: lemon pasta');
  });

  it('detects the language when the event has none', async () => {
    expect(resolveLanguage('pt-BR', 'anything')).toEqual({ language: 'pt-BR', source: 'event' });
    // The detector is loaded on demand (its model is ~145 MB of RSS): not before it is asked for.
    expect(() => resolveLanguage(null, 'Tarte aux pommes de grand-mère')).toThrow(/not loaded/);
    await loadLanguageDetector();
    expect(resolveLanguage(null, 'Tarte aux pommes de grand-mère avec une pâte brisée maison')).toEqual({ language: 'fr', source: 'detected' });
    expect(resolveLanguage(null, '')).toEqual({ language: 'und', source: 'unknown' });
  });
});

describe('local Kafka cluster ids', () => {
  it('never start with "-" (StorageTool would read them as an option)', async () => {
    const { newClusterId } = await import('../../src/stack/kafka.js');
    const ids = Array.from({ length: 5_000 }, newClusterId);
    expect(ids.every((id) => /^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/.test(id))).toBe(true);
  });
});
