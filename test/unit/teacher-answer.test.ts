import { describe, expect, it } from 'vitest';
import { labelFromLevelProbs, levelInText, levelOfContent, levelOfToken, parseTeacherAnswer, type AnswerPosition, type TokenLogprob } from '../../src/core/teacher-answer.js';

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
    ['a sentence without a level and no level candidates', 'The pin is about cakes', lp([['The', 0.6], ['A', 0.4]])],
    ['no content', null, null],
    ['out of range', '7', lp([['7', 1]])],
    ['a score on another scale', '10/10', lp([['10', 1]])],
  ])('rejects %s, naming the answer', (_name, content, topLogprobs) => {
    const r = parseTeacherAnswer({ content, topLogprobs });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/not a level/);
    if (!r.ok && content) expect(r.reason).toContain(JSON.stringify(content));
  });

  it('records a level answer of a constrained request as constrained', () => {
    const r = parseTeacherAnswer({ content: '4', topLogprobs: lp([['The', 0.5], ['4', 0.3], ['3', 0.2]]), constrained: true });
    expect(r).toMatchObject({ ok: true, label: 4, source: 'constrained' });
    expect(r.ok && r.distribution).toEqual([0, 0, expect.closeTo(0.4, 12), expect.closeTo(0.6, 12), 0]);
  });

  it('reads the level distribution from the first token candidates when the answer is no level (top_logprobs)', () => {
    // SmolLM2 on llama-server, completions mode: the sampled first token is a newline.
    const r = parseTeacherAnswer({ content: '\n', topLogprobs: lp([['\n', 0.5], [' 3', 0.2], ['4', 0.25], ['The', 0.05]]) });
    expect(r).toMatchObject({ ok: true, label: 4, source: 'top_logprobs' });
    expect(r.ok && r.distribution).toEqual([0, 0, expect.closeTo(0.2 / 0.45, 12), expect.closeTo(0.25 / 0.45, 12), 0]);
  });

  const pos = (token: string, p: number, top: Array<[string, number]> = [[token, p]]): AnswerPosition => ({ token, logprob: Math.log(p), top: lp(top) });

  it.each([
    ['a sentence', 'The relevance is 4.', [pos('The', 0.7), pos(' relevance', 0.9), pos(' is', 0.9), pos(' ', 0.8), pos('4', 0.6, [['4', 0.6], ['3', 0.3], ['5', 0.1]]), pos('.', 0.9)]],
    ['markdown', '**4**', [pos('**', 0.6), pos('4', 0.6, [['4', 0.6], ['3', 0.3], ['5', 0.1]]), pos('**', 0.9)]],
    ['a fraction', 'Rating (1-5): 4/5', [pos('Rating', 0.5), pos(' (', 0.9), pos('1', 0.9), pos('-', 0.9), pos('5', 0.9), pos('):', 0.9), pos(' ', 0.9), pos('4', 0.6, [['4', 0.6], ['3', 0.3], ['5', 0.1]]), pos('/', 0.9), pos('5', 0.9)]],
  ] as const)('parses the level of a short answer (%s), soft label from the digit position (answer_text)', (_name, content, positions) => {
    const r = parseTeacherAnswer({ content, topLogprobs: null, positions });
    expect(r).toMatchObject({ ok: true, label: 4, source: 'answer_text' });
    expect(r.ok && r.distribution).toEqual([0, 0, expect.closeTo(0.3, 12), expect.closeTo(0.6, 12), expect.closeTo(0.1, 12)]);
  });

  it('takes the digit position of a level answer after padding tokens ("\\n4")', () => {
    const r = parseTeacherAnswer({ content: '\n4', topLogprobs: null, positions: [pos('\n', 0.9, [['\n', 0.9], ['4', 0.05]]), pos('4', 0.8, [['4', 0.8], ['5', 0.2]])] });
    expect(r).toMatchObject({ ok: true, label: 4, source: 'logprobs' });
    expect(r.ok && r.distribution).toEqual([0, 0, 0, expect.closeTo(0.8, 12), expect.closeTo(0.2, 12)]);
  });

  it('ignores the rubric scale echoed back and numbers that are not levels', () => {
    expect(levelInText('On a scale of 1-5, I would say 2.')?.level).toBe(2);
    expect(levelInText('1 to 5: 3')?.level).toBe(3);
    expect(levelInText('10 cakes, 2.5 stars')).toBeNull();
    expect(levelInText('The pin is about cakes')).toBeNull();
  });
});

describe('labelFromLevelProbs (classifier teacher)', () => {
  it('takes the class distribution as the soft label and its most probable level as the hard label', () => {
    const r = labelFromLevelProbs([0.1, 0.1, 0.2, 0.5, 0.1]);
    expect(r).toMatchObject({ ok: true, label: 4, source: 'classifier', distribution: [0.1, 0.1, 0.2, 0.5, 0.1] });
    expect(r.ok && r.expectedScore).toBeCloseTo(0.1 + 0.2 + 0.6 + 2 + 0.5, 12);
  });
  it('rejects something that is not a distribution', () => {
    expect(labelFromLevelProbs([0, 0, 0, 0, 0]).ok).toBe(false);
    expect(labelFromLevelProbs([Number.NaN, 1, 0, 0, 0]).ok).toBe(false);
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
