/**
 * The dump's fast label decoder (src/stages/dump/decode-label.ts) against the contract's own
 * decoder: for a valid label and for every field broken in every way we could think of, both
 * must agree — same dead-letter code and reason, or the same accepted fields.
 */
import { describe, expect, it } from 'vitest';
import { decodeRecord } from '../../src/core/decode.js';
import { decodeLabel } from '../../src/stages/dump/decode-label.js';
import { labelRow } from '../../src/stages/dump/parquet.js';
import { makeLabel } from '../support/labels.js';

// Every field set (none left to makeLabel's defaults), so each variant below changes one thing.
const VALID = makeLabel({
  pair_id: 'a'.repeat(32),
  pin_id: 'pin-0000001',
  query: 'red shoes',
  language: 'pt-BR',
  label: 4,
  distribution: [0.05, 0.1, 0.2, 0.3, 0.35],
  expected_score: 3.8,
  teacher: { model: 'm', prompt_version: 'v1', prompt_hash: 'h', temperature: 0, max_tokens: 1, top_logprobs: 20 },
  doc_version: 2,
  doc_hash: 'dh',
  usage: { prompt_tokens: 250, completion_tokens: 1, total_tokens: 251, cached_prompt_tokens: 200 },
});

/** Bad (and some odd-but-valid) values per field; `undefined` means the field is left out. */
const VARIANTS: Record<string, unknown[]> = {
  schema: ['pair', null, undefined, 1],
  schema_version: [2, '1', 1.5, null, undefined],
  pair_id: ['A'.repeat(32), 'a'.repeat(31), 'a'.repeat(64), 'a'.repeat(65), 1, undefined],
  pin_id: ['', 'x'.repeat(128), 'x'.repeat(129), 'pin 1', 'pin\u00e9', 7, undefined],
  query: ['', 'q'.repeat(500), 'q'.repeat(501), 'é'.repeat(500), null, undefined],
  language: ['und', 'en', 'zh-Hant-TW', 'e', 'english-x', 'en-', 3, undefined],
  label: [1, 5, 0, 6, 2.5, '3', null, undefined],
  distribution: [null, [], [0.2, 0.2, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2, 0.2, 0], [0, 0, 0, 0, 1], [1.1, 0, 0, 0, 0], [-0.1, 0, 0, 0, 1], ['0.2', 0.2, 0.2, 0.2, 0.2], undefined],
  expected_score: [1, 5, 0.99, 5.01, '3', undefined],
  label_source: ['classifier', 'hard_only', 'guess', null, undefined],
  teacher: [null, [], {}, { ...VALID.teacher, model: 3 }, { ...VALID.teacher, max_tokens: 1.5 }, { ...VALID.teacher, temperature: '0' }, { ...VALID.teacher, top_logprobs: undefined }, { ...VALID.teacher, extra: 1 }],
  doc_version: [1, 0, -1, 1.5, '2', undefined],
  doc_hash: ['', 5, undefined],
  usage: [
    null,
    { ...VALID.usage, cached_prompt_tokens: undefined }, // valid: zod defaults it to 0
    { ...VALID.usage, prompt_tokens: -1 },
    { ...VALID.usage, completion_tokens: 0.5 },
    { ...VALID.usage, total_tokens: '251' },
  ],
  latency_ms: [0, -0.001, '12', undefined],
  cached: [true, 'false', 0, undefined],
  labeled_at: ['2026-11-28T10:15:00Z', '2026-11-28T10:15:00+02:00', '2026-11-28 10:15:00Z', '2026-13-28T10:15:00Z', '2026-11-28', 1764325000000, undefined],
};

function variants(): Array<[string, Buffer | null]> {
  const out: Array<[string, Buffer | null]> = [['valid', Buffer.from(JSON.stringify(VALID))]];
  for (const [field, values] of Object.entries(VARIANTS)) {
    values.forEach((value, i) => out.push([`${field} #${i}`, Buffer.from(JSON.stringify({ ...VALID, [field]: value }))]));
  }
  out.push(
    ['null value', null],
    ['empty', Buffer.alloc(0)],
    ['oversized', Buffer.from(JSON.stringify({ ...VALID, doc_hash: 'x'.repeat(4_000) }))],
    ['malformed JSON', Buffer.from('{"schema":"label",')],
    ['not UTF-8', Buffer.from([0x7b, 0xff, 0x7d])],
    ['an array', Buffer.from('[1,2]')],
    ['a number', Buffer.from('1e999')],
    ['lone surrogate (made well-formed)', Buffer.from(JSON.stringify({ ...VALID, query: 'x' }).replace('"x"', '"\\ud800x"'))],
    ['duplicate key, last one wins', Buffer.from(JSON.stringify(VALID).replace('"label":4', '"label":9,"label":4'))],
    ['extra field', Buffer.from(JSON.stringify({ ...VALID, note: 'kept out' }))],
  );
  return out;
}

/** What the dump uses of a decode: the failure, or the Parquet row it becomes. */
function outcome(d: ReturnType<typeof decodeRecord<'label'>>) {
  if (!d.ok) return { code: d.code, reason: d.reason };
  return { row: labelRow(d.value, { topic: 't', partition: 0, offset: '7' }) };
}

describe('dump label decoder', () => {
  const MAX = 4_000;
  it.each(variants())('%s: same result as decodeRecord', (_name, bytes) => {
    const fast = decodeLabel(bytes, MAX);
    const full = decodeRecord('label', bytes, MAX);
    expect(fast.ok).toBe(full.ok);
    // The fast path hands the parsed JSON on as it is (fields zod would strip included): the
    // row built from it is what must not differ.
    expect(outcome(fast)).toEqual(outcome(full));
  });

  it('covers both outcomes', () => {
    const results = variants().map(([, b]) => decodeLabel(b, MAX).ok);
    expect(results.filter(Boolean).length).toBeGreaterThan(10);
    expect(results.filter((ok) => !ok).length).toBeGreaterThan(40);
  });
});
