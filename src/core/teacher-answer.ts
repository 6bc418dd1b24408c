/**
 * Reading a generative teacher's answer into a label: the hard label (a level 1-5) and the soft
 * label (the five levels' probabilities, renormalised from the logprobs the server returned).
 *
 * Real models do not always answer with a bare digit first (SmolLM2 on llama-server answers
 * "The relevance is 4", "**4**", a newline or a space first), so the answer is read in this
 * order, and the label records which way it was obtained ({@link LabelSource}):
 * 1. the answer is a level ("4", " 4\n"): the soft label comes from the logprobs of the position
 *    that produced the digit — `logprobs`, or `constrained` when decoding was constrained to the
 *    five levels (llama.cpp grammar, vLLM structured outputs);
 * 2. a short answer that names one level ("The relevance is 4.", "**4**", "4/5"): the level is
 *    parsed from the text and the soft label comes from the digit's position — `answer_text`;
 * 3. the answer is no level but the first position's top candidates hold levels: the level
 *    distribution is read from them and the hard label is its most probable level — `top_logprobs`;
 * 4. otherwise the answer truly has no level and is not parseable (dead-lettered with its text).
 * A level answer without usable logprobs is `hard_only` (no distribution).
 *
 * Tokenizers spell a digit several ways (" 3", "3\n", "▁3" in SentencePiece, "Ġ3" in GPT-2
 * byte-level BPE, full-width "３"); each is a distinct token with its own probability, so the
 * variants of one level are summed before renormalising. Candidates that are not a level
 * ("The", "**", "10") are dropped: the distribution is P(level | the answer is a level).
 * Pure: no I/O, no clock.
 */

export type Level = 1 | 2 | 3 | 4 | 5;

/** How a label was obtained; recorded on every label (schemas/label.ts `label_source`). */
export type GenerativeLabelSource = 'logprobs' | 'constrained' | 'answer_text' | 'top_logprobs' | 'hard_only';

export interface TokenLogprob {
  token: string;
  logprob: number;
}

/** One output position: the sampled token and its top candidates (the sampled one may be among them). */
export interface AnswerPosition {
  token: string;
  logprob: number;
  top: readonly TokenLogprob[];
}

export interface RawTeacherAnswer {
  /** The answer text; null when the server sent none. */
  content: string | null;
  /** Top candidates of the first output position (the chosen token included); null without logprobs. */
  topLogprobs: readonly TokenLogprob[] | null;
  /** Every output position, when the server returned them; the first one is `topLogprobs`. */
  positions?: readonly AnswerPosition[] | null;
  /** True when the request constrained decoding to the five levels. */
  constrained?: boolean;
}

export type ParsedTeacherAnswer =
  | {
      ok: true;
      label: Level;
      /** P(1)..P(5), summing to 1; null when there were no usable logprobs. */
      distribution: [number, number, number, number, number] | null;
      /** Σ level × P(level); the label itself when there is no distribution. */
      expectedScore: number;
      source: GenerativeLabelSource | 'classifier';
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

// The rubric's scale echoed back ("(1-5)", "1 to 5", "1–5") is not an answer.
const SCALE_ECHO = /(?<![0-9])1\s*(?:-|–|—|to)\s*5(?![0-9])/g;
// A lone level digit: not part of a larger number ("10", "2.5", "1,5") nor a list item ("3.").
const LONE_LEVEL = /(?<![0-9.,])([1-5])(?![0-9]|[.,][0-9])/;

/**
 * The level a short answer names, and where: "The relevance is 4.", "**4**", "Rating: 4/5".
 * The first lone digit 1-5 wins, after the rubric's scale ("1-5") is blanked out; null when
 * there is none ("The pin is about cakes", "10/10").
 */
export function levelInText(content: string | null): { level: Level; index: number } | null {
  if (content === null) return null;
  // Same length after blanking, so the index still points into `content`.
  const blanked = content.replace(SCALE_ECHO, (m) => ' '.repeat(m.length));
  const m = LONE_LEVEL.exec(blanked);
  return m ? { level: Number(m[1]) as Level, index: m.index } : null;
}

/** The five levels' probabilities from one position's candidates, or null when none is a level. */
function distributionOf(candidates: readonly TokenLogprob[]): { dist: [number, number, number, number, number]; levelMass: number } | null {
  const mass = [0, 0, 0, 0, 0];
  let total = 0;
  const seen = new Set<string>();
  for (const c of candidates) {
    if (seen.has(c.token)) continue; // the chosen token may be listed twice
    seen.add(c.token);
    if (Number.isNaN(c.logprob) || c.logprob === Infinity) continue; // not a probability
    const p = Math.exp(Math.min(0, c.logprob));
    total += p;
    const level = levelOfToken(c.token);
    if (level !== null) mass[level - 1]! += p;
  }
  const levelTotal = mass.reduce((a, b) => a + b, 0);
  if (levelTotal <= 0) return null;
  return { dist: mass.map((m) => m / levelTotal) as [number, number, number, number, number], levelMass: levelTotal / total };
}

/** Candidates of a position with its sampled token added when the server left it out. */
function candidatesOf(p: AnswerPosition): TokenLogprob[] {
  const out = [...p.top];
  if (!out.some((t) => t.token === p.token)) out.unshift({ token: p.token, logprob: p.logprob });
  return out;
}

function result(label: Level, source: GenerativeLabelSource, candidates: readonly TokenLogprob[] | null): ParsedTeacherAnswer {
  const d = candidates ? distributionOf(candidates) : null;
  if (!d) return { ok: true, label, distribution: null, expectedScore: label, source: 'hard_only', levelMass: null };
  const expectedScore = d.dist.reduce((s, p, i) => s + p * (i + 1), 0);
  // Float rounding may push the sum a hair outside [1, 5].
  return { ok: true, label, distribution: d.dist, expectedScore: Math.min(5, Math.max(1, expectedScore)), source, levelMass: d.levelMass };
}

/**
 * The position whose token produced the character at `index` of the answer, if it is the level
 * digit; else the first position whose token is that level. Undefined when there is none.
 */
function positionAt(positions: readonly AnswerPosition[], index: number, level: Level): AnswerPosition | undefined {
  let end = 0;
  for (const p of positions) {
    end += p.token.length;
    if (end > index) {
      if (levelOfToken(p.token) === level) return p;
      break;
    }
  }
  return positions.find((p) => levelOfToken(p.token) === level);
}

/** Parse one answer (see the module comment for the order of the ways). */
export function parseTeacherAnswer(answer: RawTeacherAnswer): ParsedTeacherAnswer {
  const positions: readonly AnswerPosition[] = answer.positions ?? [];
  const first: readonly TokenLogprob[] | null = positions[0] ? candidatesOf(positions[0]) : answer.topLogprobs;

  const leading = levelOfContent(answer.content);
  if (leading !== null) {
    // "\n4": the digit is the second position; positions that are only padding come first.
    const at = positions.find((p) => levelOfToken(p.token) !== null);
    const candidates = positions.length > 0 ? (at && levelOfToken(at.token) === leading ? candidatesOf(at) : null) : first;
    return result(leading, answer.constrained ? 'constrained' : 'logprobs', candidates);
  }

  const inText = levelInText(answer.content);
  if (inText) {
    const at = positionAt(positions, inText.index, inText.level);
    return result(inText.level, 'answer_text', at ? candidatesOf(at) : null);
  }

  const d = first ? distributionOf(first) : null;
  if (d) {
    let best = 0;
    d.dist.forEach((p, i) => {
      if (p > d.dist[best]!) best = i;
    });
    return result((best + 1) as Level, 'top_logprobs', first);
  }
  const shown = answer.content === null ? 'no content' : JSON.stringify(answer.content.slice(0, 200));
  return { ok: false, reason: `teacher answer is not a level 1-5 and names none, and no level is among its first token's candidates: ${shown}` };
}

/**
 * A classifier teacher's label: the class distribution (already mapped to levels 1-5) is the
 * soft label and its most probable level the hard label (ties go to the lower level).
 */
export function labelFromLevelProbs(probs: readonly [number, number, number, number, number]): ParsedTeacherAnswer {
  const sum = probs.reduce((a, b) => a + b, 0);
  if (!(sum > 0) || probs.some((p) => !Number.isFinite(p) || p < 0)) return { ok: false, reason: `classifier probabilities are not a distribution: ${JSON.stringify(probs)}` };
  const dist = probs.map((p) => p / sum) as [number, number, number, number, number];
  let best = 0;
  dist.forEach((p, i) => {
    if (p > dist[best]!) best = i;
  });
  const expectedScore = dist.reduce((s, p, i) => s + p * (i + 1), 0);
  return { ok: true, label: (best + 1) as Level, distribution: dist, expectedScore: Math.min(5, Math.max(1, expectedScore)), source: 'classifier', levelMass: 1 };
}
