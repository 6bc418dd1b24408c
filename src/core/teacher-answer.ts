/**
 * Reading the teacher's one-token answer: the hard label from the answered digit, and the soft
 * label from the logprobs of the first output position, renormalised over the five levels.
 *
 * Tokenizers spell a digit several ways (" 3", "3\n", "▁3" in SentencePiece, "Ġ3" in GPT-2
 * byte-level BPE, full-width "３"); each is a distinct token with its own probability, so the
 * variants of one level are summed before renormalising. Candidates that are not a level
 * ("The", "**", "10") are dropped: the distribution is P(level | the answer is a level).
 * Pure: no I/O, no clock.
 */

export type Level = 1 | 2 | 3 | 4 | 5;

export interface TokenLogprob {
  token: string;
  logprob: number;
}

export interface RawTeacherAnswer {
  /** choices[0].message.content; null when the server sent none. */
  content: string | null;
  /** Top candidates of the first output position; null when the server gave no logprobs. */
  topLogprobs: readonly TokenLogprob[] | null;
}

export type ParsedTeacherAnswer =
  | {
      ok: true;
      label: Level;
      /** P(1)..P(5), summing to 1; null when there were no usable logprobs. */
      distribution: [number, number, number, number, number] | null;
      /** Σ level × P(level); the label itself when there is no distribution. */
      expectedScore: number;
      source: 'logprobs' | 'hard_only';
      /**
       * Share of the listed candidates' probability that fell on levels before renormalising
       * (1 when every candidate was a level); null without a distribution. A low value means
       * the model hesitated to answer with a level at all.
       */
      levelMass: number | null;
    }
  | { ok: false; reason: string };

// Whitespace and the word-boundary markers of SentencePiece (▁ U+2581) and GPT-2 byte-level
// BPE (Ġ U+0120 space, Ċ U+010A newline), which some servers return undecoded.
const PADDING = /^[\s\u2581\u0120\u010a]+|[\s\u2581\u0120\u010a]+$/gu;

/** The level a single token stands for, or null: "3", " 3", "3\n", "▁3", "３" → 3. */
export function levelOfToken(token: string): Level | null {
  const t = token.normalize('NFKC').replace(PADDING, '');
  return /^[1-5]$/.test(t) ? (Number(t) as Level) : null;
}

/**
 * The level an answer's text gives: a digit 1-5 at the start, not followed by another digit
 * ("4", " 4\n", "４", "4 - relevant"). "banana", "10", "" and null give null.
 */
export function levelOfContent(content: string | null): Level | null {
  if (content === null) return null;
  const m = /^([1-5])(?![0-9])/.exec(content.normalize('NFKC').replace(PADDING, ''));
  return m ? (Number(m[1]) as Level) : null;
}

/**
 * Parse one answer. The hard label is the answered digit (temperature 0: the most probable
 * token); an answer that is not a level is not parseable, whatever the candidates say.
 */
export function parseTeacherAnswer(answer: RawTeacherAnswer): ParsedTeacherAnswer {
  const label = levelOfContent(answer.content);
  if (label === null) {
    const shown = answer.content === null ? 'no content' : JSON.stringify(answer.content.slice(0, 50));
    return { ok: false, reason: `teacher answer is not a level 1-5: ${shown}` };
  }
  const mass = [0, 0, 0, 0, 0];
  let total = 0;
  for (const c of answer.topLogprobs ?? []) {
    if (!Number.isFinite(c.logprob) && c.logprob !== -Infinity) continue; // NaN or +Inf: not a probability
    const p = Math.exp(Math.min(0, c.logprob));
    total += p;
    const level = levelOfToken(c.token);
    if (level !== null) mass[level - 1]! += p;
  }
  const levelTotal = mass.reduce((a, b) => a + b, 0);
  if (levelTotal <= 0) return { ok: true, label, distribution: null, expectedScore: label, source: 'hard_only', levelMass: null };
  const distribution = mass.map((m) => m / levelTotal) as [number, number, number, number, number];
  const expectedScore = distribution.reduce((s, p, i) => s + p * (i + 1), 0);
  // Float rounding may push the sum a hair outside [1, 5].
  return {
    ok: true,
    label,
    distribution,
    expectedScore: Math.min(5, Math.max(1, expectedScore)),
    source: 'logprobs',
    levelMass: levelTotal / total,
  };
}
