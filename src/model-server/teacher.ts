/**
 * Default teacher behaviour: a deterministic, plausible 5-way relevance distribution for a
 * teacher prompt, and the answer a small real instruct model gives for it.
 *
 * Like SmolLM2-135M-Instruct on llama-server (measured: test/integration/llama-teacher.test.ts),
 * an unconstrained answer is often not a bare digit: "The relevance is 4.", "**4**" or a
 * leading space or newline, with the digits only among the first token's top candidates. A
 * request that constrains decoding to the levels (llama.cpp `grammar`, vLLM
 * `structured_outputs.choice` / `guided_choice`) gets the most probable digit, and — as on
 * llama-server, whose logprobs are the softmax of the raw logits, before the grammar — the same
 * candidates, non-digits included.
 *
 * The level comes from word overlap between the query (text after a "QUERY:" marker) and
 * the pin text (between "<<<PIN" and "PIN>>>"); without those markers it comes from a hash
 * of the prompt. Some prompts also get a tokenizer variant (" 3" next to "3") and a
 * non-digit token among the candidates, because real models do that and clients must
 * merge variants and renormalise over the digits.
 */
import { fnv1a } from './hash.js';
import { PIN_CLOSE, PIN_OPEN } from './request-text.js';

/** One candidate token and its natural-log probability. */
export interface TokenLogprob {
  token: string;
  logprob: number;
}

/** The teacher's single output token and its ranked alternatives (chosen token first). */
export interface TeacherAnswer {
  level: 1 | 2 | 3 | 4 | 5;
  token: string;
  logprob: number;
  /** Every candidate, most probable first; callers truncate to the requested count. */
  candidates: TokenLogprob[];
}

const STOPWORDS = new Set(['the', 'and', 'for', 'with', 'of', 'a', 'an', 'to', 'in', 'on', 'how', 'what', 'best', 'ideas', 'diy']);

/** Words of a text, lowercased, without stopwords. */
function words(text: string): string[] {
  return (text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []).filter((w) => w.length >= 2 && !STOPWORDS.has(w));
}

/** Query and pin text of a teacher prompt, or undefined when the prompt lacks the markers. */
export function parseTeacherPrompt(prompt: string): { query: string; pinText: string } | undefined {
  const open = prompt.indexOf(PIN_OPEN);
  const close = prompt.indexOf(PIN_CLOSE, open + PIN_OPEN.length);
  const q = prompt.lastIndexOf('QUERY:');
  if (open < 0 || close < 0 || q < 0) return undefined;
  const query = (prompt.slice(q + 'QUERY:'.length).split('\n').find((l) => l.trim().length > 0) ?? '').trim();
  return { query, pinText: prompt.slice(open + PIN_OPEN.length, close) };
}

/**
 * The words of the pin texts judged last: a pin's queries come one after another with the same
 * pin text, and splitting it into words is most of an answer's cost. Bounded; oldest out first.
 */
const pinWords = new Map<string, { pin: string[]; pinSet: Set<string> }>();
const PIN_WORDS_KEPT = 512;

function wordsOfPin(pinText: string): { pin: string[]; pinSet: Set<string> } {
  let w = pinWords.get(pinText);
  if (!w) {
    const pin = words(pinText);
    w = { pin, pinSet: new Set(pin) };
    pinWords.set(pinText, w);
    if (pinWords.size > PIN_WORDS_KEPT) pinWords.delete(pinWords.keys().next().value!);
  }
  return w;
}

/** Relevance level 1..5 from word overlap; light stemming so "cakes" matches "cake". */
export function overlapLevel(query: string, pinText: string): 1 | 2 | 3 | 4 | 5 {
  const q = [...new Set(words(query))];
  if (q.length === 0) return 1;
  const { pin, pinSet } = wordsOfPin(pinText);
  const hit = (w: string): boolean =>
    pinSet.has(w) || (w.length >= 4 && pin.some((p) => p.length >= 4 && (p.startsWith(w) || w.startsWith(p))));
  const frac = q.filter(hit).length / q.length;
  return (1 + Math.round(frac * 4)) as 1 | 2 | 3 | 4 | 5;
}

/** The teacher's answer for a prompt. */
export function teacherAnswer(prompt: string): TeacherAnswer {
  const h = fnv1a(prompt);
  const parsed = parseTeacherPrompt(prompt);
  // The stand-in judges the pin's own content: the engaged-searches line would otherwise contain
  // every mined query verbatim and make every mined pair a 5.
  const content = parsed?.pinText.split('\n').filter((line) => !/^\s*Searches:/i.test(line)).join('\n');
  const level = parsed ? overlapLevel(parsed.query, content!) : (((h % 5) + 1) as 1 | 2 | 3 | 4 | 5);

  // Peaked around the level; the per-digit noise (< half the 1.6 step) keeps the level the argmax.
  const logits = [1, 2, 3, 4, 5].map((d, i) => -1.6 * Math.abs(d - level) + (((h >>> (i * 3)) & 7) / 7 - 0.5) * 0.7);
  const max = Math.max(...logits);
  const exp = logits.map((l) => Math.exp(l - max));
  const sum = exp.reduce((a, b) => a + b, 0);
  const withJunk = (h & 0x100) !== 0;
  const digitMass = withJunk ? 0.97 : 1;
  let candidates: Array<{ token: string; p: number }> = exp.map((e, i) => ({ token: String(i + 1), p: (e / sum) * digitMass }));
  if (withJunk) candidates.push({ token: 'The', p: 0.03 });

  if ((h & 0x200) !== 0) {
    // Split the runner-up digit between "d" and " d", as BPE vocabularies often do.
    const sorted = [...candidates].sort((a, b) => b.p - a.p);
    const runnerUp = sorted.find((c) => c.token !== String(level) && /^\d$/.test(c.token));
    if (runnerUp) {
      candidates = candidates.filter((c) => c !== runnerUp);
      candidates.push({ token: runnerUp.token, p: runnerUp.p * 0.7 }, { token: ` ${runnerUp.token}`, p: runnerUp.p * 0.3 });
    }
  }
  candidates.sort((a, b) => b.p - a.p);
  const ranked = candidates.map((c) => ({ token: c.token, logprob: Math.log(c.p) }));
  const chosen = ranked[0] as TokenLogprob;
  return { level, token: chosen.token, logprob: chosen.logprob, candidates: ranked };
}

/** One generated token with its top candidates. */
export interface GeneratedToken {
  token: string;
  logprob: number;
  top: TokenLogprob[];
}

/** A generated teacher answer: its text and every output position. */
export interface TeacherGeneration {
  text: string;
  tokens: GeneratedToken[];
  /** 'length' when max_tokens cut it short. */
  finishReason: 'stop' | 'length';
}

/**
 * The unconstrained answer styles of a small instruct model, picked per prompt by hash: a list
 * item ("4. The pin ..."; SmolLM2's most common answer), a sentence, markdown, a leading space.
 */
type Style = 'digit' | 'sentence' | 'bold' | 'space';

/**
 * The teacher's answer for a prompt, generated token by token up to `maxTokens`. `constrained`:
 * the request restricted decoding to the five levels.
 */
export function teacherGeneration(prompt: string, opts: { constrained: boolean; maxTokens: number }): TeacherGeneration {
  const a = teacherAnswer(prompt);
  const h = fnv1a(prompt, 'style:');
  const digits = a.candidates.filter((c) => /^ ?[1-5]$/.test(c.token));
  const digit = String(a.level);
  const style: Style = opts.constrained ? 'digit' : (['digit', 'sentence', 'bold', 'space'] as const)[h % 4]!;
  // What the first position looks like when the model is about to start a sentence or markdown:
  // most of the mass on the word, the digits' shape kept underneath it.
  const scaled = (first: string, p: number): TokenLogprob[] =>
    [{ token: first, logprob: Math.log(p) }, ...digits.map((d) => ({ token: d.token, logprob: d.logprob + Math.log(1 - p) }))].sort((x, y) => y.logprob - x.logprob);
  const digitPos: GeneratedToken = { token: digit, logprob: a.candidates.find((c) => c.token === digit)?.logprob ?? a.logprob, top: a.candidates };
  const sure = (token: string): GeneratedToken => ({ token, logprob: -0.01, top: [{ token, logprob: -0.01 }] });
  let tokens: GeneratedToken[];
  switch (style) {
    case 'digit':
      // Constrained or not, the candidates are the raw distribution (the junk token included).
      // A completed grammar forces the end-of-generation token next, which llama-server counts
      // in completion_tokens and lists in logprobs as an empty token.
      tokens = opts.constrained ? [digitPos, { token: '', logprob: -12, top: [{ token: '.', logprob: -0.5 }] }] : [digitPos, sure('.'), sure(' The'), sure(' pin')];
      break;
    case 'sentence': {
      const first = scaled('The', 0.7);
      tokens = [{ token: 'The', logprob: first[0]!.logprob, top: first }, sure(' relevance'), sure(' is'), sure(' '), digitPos, sure('.')];
      break;
    }
    case 'bold': {
      const first = scaled('**', 0.6);
      tokens = [{ token: '**', logprob: first[0]!.logprob, top: first }, digitPos, sure('**')];
      break;
    }
    case 'space': {
      const first = scaled(' ', 0.55);
      tokens = [{ token: ' ', logprob: first[0]!.logprob, top: first }, digitPos];
      break;
    }
  }
  const cut = tokens.slice(0, Math.max(1, opts.maxTokens));
  const ended = opts.constrained && cut.length === tokens.length;
  return { text: cut.map((t) => t.token).join(''), tokens: cut, finishReason: !ended && (cut.length < tokens.length || cut.length === opts.maxTokens) ? 'length' : 'stop' };
}

/** Whether a chat or completions body constrains decoding to a choice or grammar (llama.cpp, vLLM). */
export function isConstrained(body: Record<string, unknown>): boolean {
  const so = body.structured_outputs;
  return (
    (typeof body.grammar === 'string' && body.grammar.length > 0) ||
    (typeof so === 'object' && so !== null && Array.isArray((so as { choice?: unknown }).choice)) ||
    Array.isArray(body.guided_choice)
  );
}
