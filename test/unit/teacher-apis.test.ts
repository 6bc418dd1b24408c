/**
 * The three teacher APIs (chat, completions, classify) against the stand-in model server, which
 * answers as SmolLM2 on llama-server does (test/integration/llama-teacher.test.ts is the same
 * against the real server): unconstrained answers that are not a bare digit, constrained
 * decoding honoured, llama-server's logprobs shape on /v1/completions, vLLM's /classify.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createOpenAiClient } from '../../src/adapters/openai/client.js';
import { classifyUrl, createClassifyTeacher, createCompletionsTeacher, createTeacher, LEVEL_GRAMMAR } from '../../src/adapters/openai/teacher.js';
import { labelFromLevelProbs, parseTeacherAnswer } from '../../src/core/teacher-answer.js';
import { buildTeacherCompletionPrompt, buildTeacherPrompt } from '../../src/core/teacher-prompt.js';
import { isPinrichError } from '../../src/errors.js';
import { startModelServer } from '../../src/model-server/server.js';
import type { ModelServer } from '../../src/model-server/types.js';

const DOC = {
  title: 'Red velvet cake recipe',
  description: 'A moist layered red velvet cake with cream cheese frosting.',
  caption: null,
  board_titles: [{ text: 'baking', count: 2 }],
  engaged_queries: [],
  link_title: '',
  link_description: '',
};
const QUERIES = ['red velvet cake', 'cream cheese frosting', 'garden shed plans', 'layered cake', 'velvet sofa', 'birthday cake', 'cake recipe', 'moist cake', 'red dress', 'frosting'];
const signal = () => new AbortController().signal;

describe('teacher APIs on the stand-in', () => {
  let server: ModelServer;
  let llamaLike: ModelServer;
  beforeAll(async () => {
    server = await startModelServer();
    llamaLike = await startModelServer({ defaults: { logprobsFlavour: 'llama.cpp' } });
  });
  afterAll(async () => {
    await server.close();
    await llamaLike.close();
  });
  beforeEach(() => {
    server.clearScripts();
    server.resetCounters();
  });
  const client = (s: ModelServer = server) => createOpenAiClient({ baseURL: s.baseUrl, apiKey: 'test' });

  it('answers unconstrained prompts as a small real model does, and every answer still becomes a label', async () => {
    const teacher = createTeacher(client(), 'pinrich-teacher', 20, { constrain: 'none' });
    const replies = await Promise.all(QUERIES.map((q) => teacher.score(buildTeacherPrompt(DOC, q), { signal: signal() })));
    // Not every answer is a bare digit: sentences, markdown and a leading space, like SmolLM2's.
    expect(replies.filter((r) => !/^[1-5]$/.test(r.content ?? '')).length).toBeGreaterThan(0);
    const parsed = replies.map((r) => parseTeacherAnswer(r));
    expect(parsed.every((p) => p.ok)).toBe(true);
    const sources = new Set(parsed.map((p) => (p.ok ? p.source : '')));
    expect(sources.has('answer_text') || sources.has('logprobs')).toBe(true);
    expect(replies.every((r) => r.constrained === false)).toBe(true);
    // The request carried no constraint field.
    expect(server.requests().every((r) => !JSON.stringify(r.body).includes('grammar'))).toBe(true);
  });

  it('with a one-token limit an unconstrained sentence answer is labelled from the first token candidates', async () => {
    const teacher = createTeacher(client(), 'pinrich-teacher', 20, { constrain: 'none', maxTokens: 1 });
    const replies = await Promise.all(QUERIES.map((q) => teacher.score(buildTeacherPrompt(DOC, q), { signal: signal() })));
    const parsed = replies.map((r) => parseTeacherAnswer(r));
    expect(parsed.every((p) => p.ok)).toBe(true);
    expect(parsed.some((p) => p.ok && p.source === 'top_logprobs')).toBe(true);
  });

  it('sends llama.cpp grammar and vLLM structured outputs by default; the answer is a digit (constrained)', async () => {
    const teacher = createTeacher(client(), 'pinrich-teacher', 20);
    const replies = await Promise.all(QUERIES.map((q) => teacher.score(buildTeacherPrompt(DOC, q), { signal: signal() })));
    for (const r of replies) {
      expect(r.content).toMatch(/^[1-5]$/);
      expect(r.constrained).toBe(true);
      expect(parseTeacherAnswer(r)).toMatchObject({ ok: true, source: 'constrained' });
    }
    const body = server.requests()[0]!.body as Record<string, unknown>;
    expect(body.grammar).toBe(LEVEL_GRAMMAR);
    expect(body.structured_outputs).toEqual({ choice: ['1', '2', '3', '4', '5'] });
    expect(body.max_tokens).toBe(8);
  });

  it('detects a server that rejects the constraint fields (as OpenAI does) and asks without them from then on', async () => {
    server.script({ match: '"grammar"', times: Infinity, reply: { status: 400, message: 'Unrecognized request argument supplied: grammar' } });
    const rejected: string[] = [];
    const teacher = createTeacher(client(), 'pinrich-teacher', 20, { onConstraintRejected: (r) => rejected.push(r) });
    const first = await teacher.score(buildTeacherPrompt(DOC, QUERIES[0]!), { signal: signal() });
    const second = await teacher.score(buildTeacherPrompt(DOC, QUERIES[1]!), { signal: signal() });
    expect(first.constrained).toBe(false);
    expect(second.constrained).toBe(false);
    expect(parseTeacherAnswer(first).ok && parseTeacherAnswer(second).ok).toBe(true);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toMatch(/400/);
    // 400, the same without the fields, then straight without them.
    expect(server.requests().map((r) => [r.status, JSON.stringify(r.body).includes('grammar')])).toEqual([
      [400, true],
      [200, false],
      [200, false],
    ]);
    server.clearScripts();
  });

  it('keeps a 400 that is not about the constraint a rejected request', async () => {
    server.script({ reply: { status: 400, message: 'prompt too long' } });
    const teacher = createTeacher(client(), 'pinrich-teacher', 20);
    const err = await teacher.score(buildTeacherPrompt(DOC, 'cake'), { signal: signal() }).catch((e: unknown) => e);
    expect(isPinrichError(err) && err.code).toBe('model_rejected_request');
    // Not sent again without the fields (that would label a pair the server rejected)...
    expect(server.requests()).toHaveLength(1);
    // ...and later requests still carry the constraint.
    await teacher.score(buildTeacherPrompt(DOC, 'cake'), { signal: signal() });
    expect(JSON.stringify(server.requests().at(-1)!.body)).toContain('grammar');
  });

  it("reads llama-server's chat-shaped logprobs on /v1/completions as well as OpenAI's legacy shape", async () => {
    for (const s of [server, llamaLike]) {
      const teacher = createCompletionsTeacher(client(s), 'pinrich-teacher', 20, 8, { constrain: 'none' });
      const replies = await Promise.all(QUERIES.map((q) => teacher.score(buildTeacherCompletionPrompt(DOC, q), { signal: signal() })));
      const parsed = replies.map((r) => parseTeacherAnswer(r));
      expect(parsed.every((p) => p.ok && p.distribution !== null)).toBe(true);
      expect(replies.every((r) => (r.positions?.length ?? 0) >= 1)).toBe(true);
    }
    const body = (await (await fetch(`${llamaLike.baseUrl}/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer x', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', prompt: buildTeacherCompletionPrompt(DOC, 'cake').text, max_tokens: 1, logprobs: 3, grammar: LEVEL_GRAMMAR }),
    })).json()) as { choices: Array<{ logprobs: { content: Array<{ token: string; top_logprobs: unknown[] }> } }> };
    expect(body.choices[0]!.logprobs.content[0]!.top_logprobs).toHaveLength(3);
  });

  it('classify: posts {model, input} to /classify beside /v1 and maps the five class probabilities to levels', async () => {
    expect(classifyUrl('http://h:8000/v1')).toBe('http://h:8000/classify');
    expect(classifyUrl('http://h:8000/v1/')).toBe('http://h:8000/classify');
    expect(classifyUrl('http://h:8000/teacher')).toBe('http://h:8000/teacher/classify');
    const asIs = createClassifyTeacher(client(), 'relevance-cross-encoder', [1, 2, 3, 4, 5]);
    const reversed = createClassifyTeacher(client(), 'relevance-cross-encoder', [5, 4, 3, 2, 1]);
    expect(asIs.api).toBe('classify');
    const prompt = buildTeacherCompletionPrompt(DOC, 'red velvet cake');
    const a = await asIs.score(prompt, { signal: signal() });
    const b = await reversed.score(prompt, { signal: signal() });
    const req = server.requests().find((r) => r.endpoint === '/classify')!;
    expect(req.body).toEqual({ model: 'relevance-cross-encoder', input: [prompt.text] });
    expect(req.kind).toBe('teacher');
    expect(a.levelProbs!.reduce((x, y) => x + y, 0)).toBeCloseTo(1, 9);
    expect(b.levelProbs).toEqual([...a.levelProbs!].reverse());
    const label = labelFromLevelProbs(a.levelProbs!);
    expect(label).toMatchObject({ ok: true, label: 5, source: 'classifier' });
    expect(a.usage).toMatchObject({ completion_tokens: 0, cached_prompt_tokens: 0 });
    expect(a.usage!.prompt_tokens).toBeGreaterThan(0);
  });

  it('classify: a model without exactly five classes is a configuration error, and so is a bad level map', async () => {
    const three = await startModelServer({ defaults: { classifierClasses: 3 } });
    try {
      const teacher = createClassifyTeacher(createOpenAiClient({ baseURL: three.baseUrl, apiKey: 'x' }), 'sentiment', [1, 2, 3, 4, 5]);
      const err = await teacher.score(buildTeacherCompletionPrompt(DOC, 'cake'), { signal: signal() }).catch((e: unknown) => e);
      expect(isPinrichError(err) && err.code).toBe('config_invalid');
      expect(String((err as Error).message)).toMatch(/has 3 classes/);
    } finally {
      await three.close();
    }
    expect(() => createClassifyTeacher(client(), 'm', [1, 2, 3, 4, 4])).toThrow(/five distinct levels/);
  });

  it('classify: 429 and 5xx come back classified for the retry policy', async () => {
    server.script({ kind: 'teacher', reply: { status: 429, retryAfterSeconds: 2 } });
    server.script({ kind: 'teacher', reply: { status: 503, message: 'Loading model' } });
    const teacher = createClassifyTeacher(client(), 'm', [1, 2, 3, 4, 5]);
    const prompt = buildTeacherCompletionPrompt(DOC, 'cake');
    const e1 = await teacher.score(prompt, { signal: signal() }).catch((e: unknown) => e);
    const e2 = await teacher.score(prompt, { signal: signal() }).catch((e: unknown) => e);
    expect(isPinrichError(e1) && [e1.code, e1.retriable, e1.retryAfterMs]).toEqual(['model_rate_limited', true, 2000]);
    expect(isPinrichError(e2) && [e2.code, e2.retriable]).toEqual(['model_server_error', true]);
  });
});
