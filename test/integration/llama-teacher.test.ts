/**
 * The teacher against a real model server: llama.cpp's llama-server serving SmolLM2-135M-Instruct
 * (built and cached on first use by src/stack/llama.ts; on a machine with the cache this file
 * takes a minute or two, on a fresh one the first run builds llama-server, ~10-20 min).
 *
 * What the stand-in cannot prove: that a real tokenizer's logprobs give soft labels, that a real
 * small model's answers (not a bare digit, unless constrained) still become labels, that usage
 * and cached prompt tokens are read as llama-server reports them, that a pin's queries reuse
 * the server's prompt cache, and how the server's own failures (503 while loading, requests
 * queued past the timeout when its slots are busy) meet the retry policy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpenAiClient } from '../../src/adapters/openai/client.js';
import { createCompletionsTeacher, createTeacher, type Teacher, type TeacherReply } from '../../src/adapters/openai/teacher.js';
import { levelOfToken, parseTeacherAnswer } from '../../src/core/teacher-answer.js';
import { buildTeacherCompletionPrompt, buildTeacherPrompt, type PromptDocument } from '../../src/core/teacher-prompt.js';
import { isPinrichError, type PinrichError } from '../../src/errors.js';
import { withRetries } from '../../src/runtime/retry.js';
import { ensureLlamaServer, startLlamaServer, type LlamaServer } from '../../src/stack/llama.js';

const doc = (title: string, description: string, boards: string[]): PromptDocument => ({
  title,
  description,
  caption: null,
  board_titles: boards.map((text) => ({ text, count: 1 })),
  engaged_queries: [],
  link_title: '',
  link_description: '',
});

/** Pins with an on-topic and an off-topic query each, in several languages. */
const CASES: Array<{ doc: PromptDocument; queries: string[] }> = [
  { doc: doc('Easy lemon garlic pasta', 'A quick dinner with fresh lemon, garlic and parmesan.', ['Dinner ideas', 'Pasta recipes']), queries: ['lemon pasta', 'easy pasta recipes', 'scandinavian living room', 'trench coat outfit', 'garlic spaghetti'] },
  { doc: doc('Scandinavian living room inspiration', 'Light wood, white walls and a wool throw.', ['Home decor', 'Living room']), queries: ['minimalist decor', 'cozy living room ideas', 'paella valenciana', 'fall outfits', 'scandinavian living room'] },
  { doc: doc('Tarte aux pommes de grand-mère', 'Une pâte brisée maison et des pommes fondantes.', ['Desserts', 'Pâtisserie']), queries: ['tarte aux pommes', 'recette dessert facile', 'lavande provence', 'garden shed plans', 'apple pie'] },
  { doc: doc('Paella valenciana auténtica', 'Arroz, azafrán y el socarrat perfecto.', ['Recetas', 'Cocina española']), queries: ['paella valenciana', 'receta de paella', 'balcon con plantas', 'matcha cheesecake', 'arroz con mariscos'] },
  { doc: doc('Omas Apfelstrudel', 'Mit Zimt, Rosinen und Vanillesoße.', ['Backen', 'Kuchen']), queries: ['apfelstrudel rezept', 'kuchen backen', 'kleine küche stauraum', 'rio de janeiro beaches', 'strudel blätterteig'] },
  { doc: doc('Fall outfit with a trench coat', 'Beige trench, knit sweater and ankle boots.', ['Fall outfits', 'Style']), queries: ['fall outfits', 'trench coat outfit', 'lemon pasta', 'tiramisu recipe', 'autumn fashion women'] },
  { doc: doc('Praias do Rio de Janeiro', 'Ipanema, Copacabana e Prainha.', ['Viagens', 'Praias']), queries: ['praias rio de janeiro', 'viagem brasil', 'brigadeiro gourmet', 'small kitchen storage', 'roteiro rio'] },
  { doc: doc('Tiramisù classico della nonna', 'Savoiardi, caffè e mascarpone.', ['Dolci', 'Ricette italiane']), queries: ['tiramisù ricetta', 'dolci al cucchiaio', 'japanese tatami room', 'paella', 'tiramisù senza uova'] },
];
// Five pins with four queries each: enough to show >= 99 % (all 20) on a slow shared CI box.
for (const c of CASES) c.queries.splice(4);
CASES.splice(5);
const PAIRS = CASES.flatMap((c) => c.queries.map((query) => ({ doc: c.doc, query })));
const signal = () => AbortSignal.timeout(120_000);
const countBy = (xs: string[]) => xs.reduce<Record<string, number>>((m, x) => ((m[x] = (m[x] ?? 0) + 1), m), {});

/** Scores every pair, a pin's queries one after another (as the score stage does), pins in parallel. */
async function scoreAll(teacher: Teacher, render: typeof buildTeacherPrompt) {
  const perPin = await Promise.all(
    CASES.map(async (c) => {
      const out: Array<{ query: string; reply: TeacherReply; parsed: ReturnType<typeof parseTeacherAnswer> }> = [];
      for (const query of c.queries) {
        const reply = await teacher.score(render(c.doc, query), { signal: signal() });
        out.push({ query, reply, parsed: parseTeacherAnswer(reply) });
      }
      return out;
    }),
  );
  return perPin.flat();
}

// A 135M model on two shared CPU cores answers in seconds, not milliseconds: generous per test.
describe('teacher on llama-server (SmolLM2-135M-Instruct)', { timeout: 15 * 60_000 }, () => {
  let server: LlamaServer;

  beforeAll(async () => {
    // A fresh machine builds llama-server here (announced on stderr); later runs find the cache.
    await ensureLlamaServer();
    server = await startLlamaServer({ parallel: 2 });
  }, 60 * 60_000);
  afterAll(async () => {
    await server?.stop();
  });

  const client = () => createOpenAiClient({ baseURL: server.baseUrl, apiKey: 'not-needed' });

  it.each([
    ['chat', () => createTeacher(client(), server.model, 20), buildTeacherPrompt],
    ['completions (prompt arrays)', () => createCompletionsTeacher(client(), server.model, 20, 8), buildTeacherCompletionPrompt],
  ] as const)('%s: labels at least 99 percent of pairs, each with a soft label from real logprobs', async (_mode, make, render) => {
    const results = await scoreAll(make(), render);
    const labelled = results.filter((r) => r.parsed.ok);
    expect(labelled.length / PAIRS.length).toBeGreaterThanOrEqual(0.99);
    for (const r of labelled) {
      if (!r.parsed.ok) continue;
      // Constrained decoding (llama.cpp grammar) was taken, and the distribution is real.
      expect(r.reply.constrained).toBe(true);
      expect(r.parsed.source).toBe('constrained');
      expect(r.parsed.distribution).not.toBeNull();
      expect(r.parsed.distribution!.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 9);
    }
    // Real logprobs (pre-grammar: llama-server lists the raw softmax). In chat mode the answer
    // position holds several digits, so some labels are uncertain; in completions mode the first
    // position is mostly whitespace candidates and often only the chosen digit is among the top
    // 20, which gives a certain distribution: measured, not assumed (README, "A real teacher").
    if (_mode === 'chat') expect(labelled.some((r) => r.parsed.ok && r.parsed.distribution!.filter((p) => p > 0.01).length >= 2)).toBe(true);
    for (const r of labelled) expect(r.parsed.ok && r.parsed.label).toBe(levelOfToken(r.reply.content ?? ''));
  });

  it('still labels >= 99 % unconstrained, from the answer text or the first token candidates', async () => {
    const results = await scoreAll(createTeacher(client(), server.model, 20, { constrain: 'none' }), buildTeacherPrompt);
    const labelled = results.filter((r) => r.parsed.ok);
    expect(labelled.length / PAIRS.length).toBeGreaterThanOrEqual(0.99);
    // SmolLM2 rarely answers a bare digit: "1. The user's pasta recipe is", "The pin is ...".
    expect(results.filter((r) => !/^[1-5]$/.test(r.reply.content ?? '')).length).toBeGreaterThan(PAIRS.length / 2);
    expect(results.every((r) => r.reply.constrained === false)).toBe(true);
    console.log('unconstrained chat, label sources:', JSON.stringify(countBy(labelled.map((r) => (r.parsed.ok ? r.parsed.source : '')))));
  });

  it('merges the tokenizer variants of a digit that the real tokenizer produces', async () => {
    const results = await scoreAll(createCompletionsTeacher(client(), server.model, 20, 8, { constrain: 'none' }), buildTeacherCompletionPrompt);
    const digitish = new Set<string>();
    for (const r of results) for (const p of r.reply.positions ?? []) for (const c of p.top) if (/^\s*[1-5]\s*$/.test(c.token)) digitish.add(c.token);
    console.log('digit spellings among the candidates:', JSON.stringify([...digitish]));
    console.log('unconstrained completions, label sources:', JSON.stringify(countBy(results.map((r) => (r.parsed.ok ? r.parsed.source : 'unparseable')))));
    // Every spelling of a level the tokenizer produced maps to its level...
    expect(digitish.size).toBeGreaterThanOrEqual(2);
    for (const t of digitish) expect(levelOfToken(t)).toBe(Number(t.trim()));
    // ...and SmolLM2's tokenizer splits digits off: a space before a digit is a token of its own
    // (" " then "4"), never " 4" — which is why answers that start with a space must be read
    // past their first token (the stand-in's 'space' answers do the same).
    expect([...digitish].every((t) => /^[1-5]$/.test(t))).toBe(true);
  });

  it("reads usage and cached prompt tokens as llama-server reports them; a pin's queries reuse its prompt cache", async () => {
    const teacher = createTeacher(client(), server.model, 5);
    const c = CASES[0]!;
    const replies: TeacherReply[] = [];
    for (const q of ['pasta night', 'lemon garlic pasta recipe', 'parmesan dinner']) replies.push(await teacher.score(buildTeacherPrompt(c.doc, q), { signal: signal() }));
    const tokenized = (await (
      await fetch(`${server.origin}/apply-template`, { method: 'POST', body: JSON.stringify({ messages: buildTeacherPrompt(c.doc, 'parmesan dinner').messages }) })
    ).json()) as { prompt: string };
    const tokens = (await (await fetch(`${server.origin}/tokenize`, { method: 'POST', body: JSON.stringify({ content: tokenized.prompt, add_special: true, parse_special: true }) })).json()) as { tokens: number[] };
    const last = replies.at(-1)!.usage!;
    // The prompt as the server tokenised it, not an estimate.
    expect(last.prompt_tokens).toBe(tokens.tokens.length);
    // The digit, and the end-of-generation token the completed grammar forces.
    expect(last.completion_tokens).toBe(2);
    expect(last.total_tokens).toBe(last.prompt_tokens + 2);
    // Rubric + pin block come before the query: the 2nd and 3rd queries reuse nearly all of it.
    for (const r of replies.slice(1)) {
      // (SmolLM2's tokens: ~290 per prompt, ~230 of them rubric and pin.)
      expect(r.usage!.cached_prompt_tokens).toBeGreaterThan(0.6 * r.usage!.prompt_tokens);
      expect(r.usage!.cached_prompt_tokens).toBeLessThan(r.usage!.prompt_tokens);
    }
  });

  it('a request queued behind busy slots times out and is retried, as the policy intends', async () => {
    // Occupy both slots with long streamed generations; llama-server queues the next request (it
    // does not answer 503 for a busy slot), so the teacher's first attempt runs into its timeout.
    // The slots count as busy once each stream has sent its first token (a positive signal, not a
    // sleep), and are freed at the first retry, so the retried attempt is served.
    const hog = new AbortController();
    const started: Array<Promise<void>> = [];
    const busy = [0, 1].map(async (i) => {
      let first!: () => void;
      started.push(new Promise<void>((r) => (first = r)));
      const res = await fetch(`${server.origin}/v1/completions`, {
        method: 'POST',
        signal: hog.signal,
        body: JSON.stringify({ model: server.model, prompt: `Write a long story about a lighthouse keeper, part ${i}.`, max_tokens: 1_900, temperature: 0.8, ignore_eos: true, stream: true }),
      });
      try {
        for await (const _chunk of res.body!) first();
      } catch {
        // aborted below, once the teacher has timed out once
      }
      first();
    });
    await Promise.all(started);
    const teacher = createTeacher(client(), server.model, 5);
    const errors: PinrichError[] = [];
    const { value, attempts } = await withRetries(
      { maxAttempts: 600, baseMs: 200, maxMs: 1_000, timeoutMs: 2_000 },
      (s) => teacher.score(buildTeacherPrompt(CASES[1]!.doc, 'cozy living room ideas'), { signal: s }),
      {
        onRetry: (err) => {
          errors.push(err as PinrichError);
          hog.abort();
        },
      },
    );
    hog.abort();
    await Promise.all(busy);
    expect(attempts).toBeGreaterThan(1);
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.every((e) => isPinrichError(e) && e.code === 'model_timeout' && e.retriable)).toBe(true);
    expect(parseTeacherAnswer(value).ok).toBe(true);
  });

  it("llama-server's own 503 while it loads the model is retried until it answers", async () => {
    // A second server, asked before its model is loaded: refused connections, then the server's
    // own 503 {"error":{"message":"Loading model","type":"unavailable_error"}}, then answers.
    const starting = await startLlamaServer({ location: await ensureLlamaServer(), parallel: 1, waitForHealth: false });
    try {
      const teacher = createTeacher(createOpenAiClient({ baseURL: starting.baseUrl, apiKey: 'x' }), starting.model, 5);
      const errors: PinrichError[] = [];
      const { value, attempts } = await withRetries(
        { maxAttempts: 1_000, baseMs: 20, maxMs: 100, timeoutMs: 60_000 },
        (s) => teacher.score(buildTeacherPrompt(CASES[2]!.doc, 'tarte aux pommes'), { signal: s }),
        { onRetry: (err) => errors.push(err as PinrichError) },
      );
      expect(parseTeacherAnswer(value).ok).toBe(true);
      expect(attempts).toBe(errors.length + 1);
      // Every failure on the way was retriable; the 503 is a model_server_error, retried.
      expect(errors.every((e) => isPinrichError(e) && e.retriable && (e.code === 'model_unreachable' || e.code === 'model_server_error'))).toBe(true);
      const loading = errors.filter((e) => e.code === 'model_server_error');
      expect(loading.length).toBeGreaterThan(0);
      expect(loading[0]!.message).toMatch(/503/);
    } finally {
      await starting.stop();
    }
  });
});
