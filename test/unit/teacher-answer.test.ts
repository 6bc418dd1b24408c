import { describe, expect, it } from 'vitest';
import { levelOfContent, levelOfToken, parseTeacherAnswer, type TokenLogprob } from '../../src/core/teacher-answer.js';

const lp = (entries: Array<[string, number]>): TokenLogprob[] => entries.map(([token, p]) => ({ token, logprob: Math.log(p) }));

describe('levelOfToken', () => {
  it.each([
    ['3', 3],
    [' 3', 3],
    ['3\n', 3],
    ['\t5 ', 5],
    ['\u2581' + '4', 4], // SentencePiece word boundary
    ['\u0120' + '2', 2], // GPT-2 byte-level space
    ['\uff11', 1], // full-width digit
    ['0', null],
    ['6', null],
    ['10', null],
    ['3.', null],
    ['The', null],
    ['', null],
  ])('%j -> %s', (token, level) => {
    expect(levelOfToken(token)).toBe(level);
  });
});

describe('levelOfContent', () => {
  it.each([
    ['4', 4],
    [' 4\n', 4],
    ['\uff14', 4],
    ['4 - relevant', 4],
    ['5.', 5],
    ['banana', null],
    ['12', null],
    ['0', null],
    ['', null],
    [null, null],
  ])('%j -> %s', (content, level) => {
    expect(levelOfContent(content)).toBe(level);
  });
});

describe('parseTeacherAnswer', () => {
  it('renormalises over the five levels, merging tokenizer variants and dropping non-levels', () => {
    const r = parseTeacherAnswer({
      content: '4',
      topLogprobs: lp([
        ['4', 0.5],
        ['3', 0.2],
        [' 3', 0.1],
        ['5', 0.1],
        ['The', 0.05],
        ['2', 0.03],
        ['\uff15', 0.01],
      ]),
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const digits = 0.5 + 0.3 + 0.11 + 0.03;
    const expected = [0, 0.03 / digits, 0.3 / digits, 0.5 / digits, 0.11 / digits];
    r.distribution!.forEach((p, i) => expect(p).toBeCloseTo(expected[i]!, 12));
    expect(r.distribution!.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    expect(r.label).toBe(4);
    expect(r.source).toBe('logprobs');
    expect(r.expectedScore).toBeCloseTo(expected.reduce((s, p, i) => s + p * (i + 1), 0), 12);
    expect(r.levelMass).toBeCloseTo(digits / (digits + 0.05), 12);
  });

  it('takes the hard label from the answer even when another level has more mass among the variants', () => {
    // "3" is the single most probable token, but "4" and " 4" together outweigh it.
    const r = parseTeacherAnswer({ content: '3', topLogprobs: lp([['3', 0.4], ['4', 0.35], [' 4', 0.25]]) });
    expect(r.ok && r.label).toBe(3);
    expect(r.ok && r.distribution).toEqual([0, 0, expect.closeTo(0.4, 12), expect.closeTo(0.6, 12), 0]);
  });

  it.each([
    ['logprobs null', null],
    ['empty candidate list', []],
    ['no level among the candidates', lp([['The', 0.9], ['**', 0.1]])],
  ])('falls back to the content digit (hard_only) with %s', (_name, topLogprobs) => {
    const r = parseTeacherAnswer({ content: '2', topLogprobs });
    expect(r).toEqual({ ok: true, label: 2, distribution: null, expectedScore: 2, source: 'hard_only', levelMass: null });
  });

  it.each([
    ['banana', 'banana', lp([['banana', 1]])],
    ['a non-level answer even with level candidates', 'The', lp([['The', 0.6], ['4', 0.4]])],
    ['no content', null, null],
    ['out of range', '7', lp([['7', 1]])],
  ])('rejects %s', (_name, content, topLogprobs) => {
    const r = parseTeacherAnswer({ content, topLogprobs });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/not a level/);
  });

  it('ignores NaN and clamps slightly positive logprobs (float noise) to probability 1', () => {
    const r = parseTeacherAnswer({
      content: '5',
      topLogprobs: [
        { token: '5', logprob: 1e-9 },
        { token: '1', logprob: Number.NaN },
        { token: '2', logprob: -Infinity },
      ],
    });
    expect(r.ok && r.distribution).toEqual([0, 0, 0, 0, 1]);
    expect(r.ok && r.expectedScore).toBe(5);
  });

  it('keeps the expected score within [1, 5] and each probability within [0, 1]', () => {
    const r = parseTeacherAnswer({ content: '1', topLogprobs: lp([['1', 0.999999], ['2', 1e-7], ['5', 1e-9]]) });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.expectedScore).toBeGreaterThanOrEqual(1);
    expect(r.expectedScore).toBeLessThanOrEqual(5);
    expect(r.distribution!.every((p) => p >= 0 && p <= 1)).toBe(true);
  });
});
