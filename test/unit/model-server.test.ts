/**
 * The model server, driven through the real `openai` client as the pipeline's adapters will
 * drive it, plus raw HTTP for what a well-behaved client never sends.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import OpenAI, { APIConnectionTimeoutError, BadRequestError, InternalServerError, RateLimitError } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startModelServer } from '../../src/model-server/server.js';
import type { ModelServer } from '../../src/model-server/types.js';

const TEACHER_MODEL = 'pinrich-teacher';
const VLM_MODEL = 'pinrich-vlm';

function teacherPrompt(pinText: string, query: string): string {
  return `Rate how relevant the pin is to the query on a 1-5 scale.\n<<<PIN\n${pinText}\nPIN>>>\nQUERY: ${query}\nAnswer with one digit.`;
}

/** llama.cpp's request field constraining the answer to one level digit (cast: not in the SDK's types). */
const LEVELS = { grammar: 'root ::= [1-5]' } as unknown as Record<string, never>;

const CAKE_PIN = 'Title: Red velvet cake recipe\nDescription: a moist layered red velvet cake with cream cheese frosting';

describe('model server', () => {
  let server: ModelServer;
  let client: OpenAI;

  beforeAll(async () => {
    server = await startModelServer();
    client = new OpenAI({ baseURL: server.baseUrl, apiKey: 'test', maxRetries: 0 });
  });
  afterAll(async () => {
    await server.close();
  });
  beforeEach(() => {
    server.clearScripts();
    server.resetCounters();
  });

  const caption = (url: string) =>
    client.chat.completions.create({
      model: VLM_MODEL,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Describe the image factually in one sentence.' }, { type: 'image_url', image_url: { url } }] }],
    });
  // Constrained to the five levels (llama.cpp's grammar field), as pinrich's teacher asks by default.
  const teacher = (prompt: string, c: OpenAI = client) =>
    c.chat.completions.create({ model: TEACHER_MODEL, messages: [{ role: 'user', content: prompt }], max_tokens: 1, logprobs: true, top_logprobs: 5, ...LEVELS });
  const chat = (text: string, c: OpenAI = client) => c.chat.completions.create({ model: VLM_MODEL, messages: [{ role: 'user', content: text }] });

  it('binds loopback on a free port', () => {
    expect(server.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
  });

  it('captions an image deterministically by URL, using descriptive file names', async () => {
    const a = await caption('https://img.example/pins/1234.jpg');
    const again = await caption('https://img.example/pins/1234.jpg');
    const other = await caption('https://img.example/pins/9876.jpg');
    const named = await caption('https://img.example/pins/red-velvet-cake.jpg');
    const text = a.choices[0]?.message.content;
    expect(text).toMatch(/^(A|An) [a-z-]+ photo of .+\.$/);
    expect(again.choices[0]?.message.content).toBe(text);
    expect(other.choices[0]?.message.content).not.toBe(text);
    expect(named.choices[0]?.message.content).toContain('red velvet cake');
    expect(a.object).toBe('chat.completion');
    expect(a.model).toBe(VLM_MODEL);
    expect(a.usage?.prompt_tokens).toBeGreaterThan(85);
    expect(server.count({ kind: 'caption' })).toBe(4);
  });

  it('answers a teacher prompt with one digit and top logprobs the client parses', async () => {
    const res = await teacher(teacherPrompt(CAKE_PIN, 'red velvet cake'));
    const choice = res.choices[0];
    expect(choice?.message.content).toBe('5');
    expect(choice?.finish_reason).toBe('length');
    const first = choice?.logprobs?.content?.[0];
    expect(first?.token).toBe('5');
    expect(first?.top_logprobs).toHaveLength(5);
    for (const t of first?.top_logprobs ?? []) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.bytes).toEqual([...Buffer.from(t.token)]);
    }
    const probs = (first?.top_logprobs ?? []).map((t) => Math.exp(t.logprob));
    expect(probs[0]).toBeGreaterThan(0.5);
    expect(probs.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(1.0000001);
    expect(server.count({ kind: 'teacher' })).toBe(1);
  });

  it('scores relevance by query/pin overlap: unrelated queries get 1', async () => {
    const off = await teacher(teacherPrompt(CAKE_PIN, 'garden shed plans'));
    const half = await teacher(teacherPrompt(CAKE_PIN, 'velvet sofa living room'));
    expect(off.choices[0]?.message.content).toBe('1');
    expect(Number(half.choices[0]?.message.content)).toBeGreaterThan(1);
    expect(Number(half.choices[0]?.message.content)).toBeLessThan(5);
  });

  it('respects top_logprobs and only returns logprobs when asked', async () => {
    const two = await client.chat.completions.create({
      model: TEACHER_MODEL,
      messages: [{ role: 'user', content: teacherPrompt(CAKE_PIN, 'cake') }],
      max_tokens: 1,
      logprobs: true,
      top_logprobs: 2,
      ...LEVELS,
    });
    expect(two.choices[0]?.logprobs?.content?.[0]?.top_logprobs).toHaveLength(2);
    const none = await client.chat.completions.create({ model: TEACHER_MODEL, messages: [{ role: 'user', content: teacherPrompt(CAKE_PIN, 'cake') }], max_tokens: 1, ...LEVELS });
    expect(none.choices[0]?.message.content).toMatch(/^[1-5]$/);
    expect(none.choices[0]?.logprobs).toBeNull();
  });

  it('sometimes offers tokenizer variants (" 3" next to "3") that clients must merge', async () => {
    const queries = ['cake', 'red cake', 'frosting ideas', 'velvet', 'cheese', 'moist layers', 'birthday cake', 'cream', 'red dress', 'dessert'];
    const tops = await Promise.all(queries.map(async (q) => (await teacher(teacherPrompt(CAKE_PIN, q))).choices[0]?.logprobs?.content?.[0]?.top_logprobs ?? []));
    const withVariant = tops.filter((top) => top.some((t) => /^ [1-5]$/.test(t.token)));
    expect(withVariant.length).toBeGreaterThan(0);
    const variantTop = withVariant[0] ?? [];
    const variant = variantTop.find((t) => t.token.startsWith(' '));
    expect(variantTop.some((t) => t.token === variant?.token.trim())).toBe(true);
  });

  it('reports cached prompt tokens for a shared prefix, in 16-token blocks', async () => {
    const longPin = `${CAKE_PIN}\n${'Boards: desserts, baking, birthday party ideas. '.repeat(10)}`;
    // The cache is per model: a fresh model name makes this test independent of earlier ones.
    const ask = (query: string) =>
      client.chat.completions.create({ model: 'cache-test', messages: [{ role: 'user', content: teacherPrompt(longPin, query) }], max_tokens: 1 });
    const first = await ask('red velvet cake');
    const second = await ask('cream cheese frosting');
    expect(first.usage?.prompt_tokens_details?.cached_tokens).toBe(0);
    const cached = second.usage?.prompt_tokens_details?.cached_tokens ?? 0;
    expect(cached).toBeGreaterThan(100);
    expect(cached % 16).toBe(0);
    expect(cached).toBeLessThan(second.usage?.prompt_tokens ?? 0);
    expect(second.usage?.total_tokens).toBe((second.usage?.prompt_tokens ?? 0) + (second.usage?.completion_tokens ?? 0));
  });

  it('surfaces a scripted 429 as RateLimitError with Retry-After readable, then serves the next call', async () => {
    server.script({ kind: 'teacher', reply: { status: 429, retryAfterSeconds: 3, retryAfterMs: 2500 } });
    const err = await teacher(teacherPrompt(CAKE_PIN, 'cake')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RateLimitError);
    const rl = err as RateLimitError;
    expect(rl.status).toBe(429);
    expect(rl.headers?.get('retry-after')).toBe('3');
    expect(rl.headers?.get('retry-after-ms')).toBe('2500');
    expect(rl.code).toBe('rate_limit_exceeded');
    const ok = await teacher(teacherPrompt(CAKE_PIN, 'cake'));
    expect(ok.choices[0]?.message.content).toMatch(/^[1-5]$/);
    expect(server.stats().byStatus).toEqual({ '200': 1, '429': 1 });
  });

  it('maps scripted 500 and 400 to the client error classes', async () => {
    server.script({ reply: { status: 500, message: 'boom' } });
    server.script({ reply: { status: 400, message: 'bad prompt' } });
    const e500 = await chat('hi').catch((e: unknown) => e);
    expect(e500).toBeInstanceOf(InternalServerError);
    expect((e500 as InternalServerError).message).toContain('boom');
    const e400 = await chat('hi').catch((e: unknown) => e);
    expect(e400).toBeInstanceOf(BadRequestError);
    expect((await chat('hi')).choices[0]?.message.content).toBeTruthy();
  });

  it('serves garbage answers: not-json throws, empty choices and null content come back as such', async () => {
    server.script({ reply: { malformed: 'not-json' } });
    server.script({ reply: { malformed: 'empty-choices' } });
    server.script({ reply: { malformed: 'no-content' } });
    // The client trusts content-type: application/json and fails to parse the body.
    await expect(chat('hi')).rejects.toThrow(SyntaxError);
    expect((await chat('hi')).choices).toEqual([]);
    const noContent = await chat('hi');
    expect(noContent.choices[0]?.message.content).toBeNull();
  });

  it('times out the client on a slow answer and keeps serving', async () => {
    const impatient = new OpenAI({ baseURL: server.baseUrl, apiKey: 'test', maxRetries: 0, timeout: 100 });
    server.script({ reply: { delayMs: 1_000, then: { text: 'late' } } });
    const started = Date.now();
    await expect(chat('slow', impatient)).rejects.toBeInstanceOf(APIConnectionTimeoutError);
    expect(Date.now() - started).toBeLessThan(900);
    const next = await chat('fast', impatient);
    expect(next.choices[0]?.message.content).not.toBe('late');
    await expect.poll(() => server.requests()[0]?.status).toBe(499);
  });

  it('hangs until the client gives up, without blocking other requests', async () => {
    server.script({ reply: { hang: true } });
    // Left hanging on purpose: close() in afterAll must not wait for it.
    void chat('hang', client.withOptions({ timeout: 10_000 })).catch(() => undefined);
    await expect.poll(() => server.count()).toBe(1);
    expect((await chat('meanwhile')).choices[0]?.message.content).toBeTruthy();
    server.script({ reply: { hang: true } });
    await expect(chat('hang again', client.withOptions({ timeout: 50 }))).rejects.toBeInstanceOf(APIConnectionTimeoutError);
    await expect.poll(() => server.requests().map((r) => r.status)).toEqual([0, 200, 499]);
  });

  it('answers scripted text with scripted logprobs, or none when null', async () => {
    server.script({ kind: 'teacher', reply: { text: '4', logprobs: [{ token: '4', logprob: -0.1 }, { token: ' 4', logprob: -2.5 }], usage: { prompt_tokens: 7 } } });
    server.script({ kind: 'teacher', reply: { text: '2', logprobs: null } });
    const a = await teacher(teacherPrompt(CAKE_PIN, 'cake'));
    expect(a.choices[0]?.message.content).toBe('4');
    expect(a.choices[0]?.logprobs?.content?.[0]?.top_logprobs?.map((t) => t.token)).toEqual(['4', ' 4']);
    expect(a.usage?.prompt_tokens).toBe(7);
    const b = await teacher(teacherPrompt(CAKE_PIN, 'cake'));
    expect(b.choices[0]?.message.content).toBe('2');
    expect(b.choices[0]?.logprobs).toBeNull();
    expect(server.requests().map((r) => r.scripted)).toEqual([true, true]);
  });

  it('consumes rules FIFO among those matching kind and body substring; Infinity keeps a rule', async () => {
    server.script({ kind: 'caption', reply: { text: 'scripted caption' } });
    server.script({ match: 'special-token', times: 2, reply: { text: 'matched' } });
    server.script({ kind: 'any', reply: { text: 'first any' } });
    expect((await chat('hello')).choices[0]?.message.content).toBe('first any');
    expect((await chat('hello special-token')).choices[0]?.message.content).toBe('matched');
    expect((await chat('special-token again')).choices[0]?.message.content).toBe('matched');
    expect((await chat('special-token third')).choices[0]?.message.content).not.toBe('matched');
    expect((await caption('https://img.example/x.jpg')).choices[0]?.message.content).toBe('scripted caption');
    server.script({ kind: 'other', times: Infinity, reply: { text: 'forever' } });
    for (let i = 0; i < 3; i++) expect((await chat(`n${i}`)).choices[0]?.message.content).toBe('forever');
    server.clearScripts();
    expect((await chat('after clear')).choices[0]?.message.content).not.toBe('forever');
  });

  it('answers /v1/completions with one choice per prompt and legacy logprobs', async () => {
    const prompts = [teacherPrompt(CAKE_PIN, 'red velvet cake'), teacherPrompt(CAKE_PIN, 'garden shed'), teacherPrompt(CAKE_PIN, 'cake frosting')];
    const res = await client.completions.create({ model: TEACHER_MODEL, prompt: prompts, max_tokens: 1, logprobs: 5, ...LEVELS });
    expect(res.object).toBe('text_completion');
    expect(res.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(res.choices[0]?.text).toBe('5');
    expect(res.choices[1]?.text).toBe('1');
    const lp = res.choices[0]?.logprobs;
    expect(lp?.tokens).toEqual(['5']);
    expect(lp?.text_offset).toEqual([0]);
    expect(Object.keys(lp?.top_logprobs?.[0] ?? {})).toHaveLength(5);
    expect(lp?.top_logprobs?.[0]?.['5']).toBe(lp?.token_logprobs?.[0]);
    expect(res.usage?.prompt_tokens).toBeGreaterThan(3 * 20);
    // The three prompts share the rubric and the pin: the later ones hit the prefix cache.
    expect(res.usage?.prompt_tokens_details?.cached_tokens).toBeGreaterThan(0);
    const single = await client.completions.create({ model: TEACHER_MODEL, prompt: 'plain text', max_tokens: 20 });
    expect(single.choices).toHaveLength(1);
    expect(server.count({ endpoint: '/v1/completions', kind: 'teacher' })).toBe(1);
    expect(server.count({ endpoint: '/v1/completions', kind: 'other' })).toBe(1);
  });

  it('counts requests by kind and endpoint, including scripted errors, and resets', async () => {
    server.script({ kind: 'teacher', reply: { status: 503 } });
    await caption('https://img.example/a.jpg');
    await teacher(teacherPrompt(CAKE_PIN, 'cake')).catch(() => undefined);
    await teacher(teacherPrompt(CAKE_PIN, 'cake'));
    await chat('other');
    await client.models.list();
    expect(server.count()).toBe(5);
    expect(server.count({ kind: 'teacher' })).toBe(2);
    expect(server.count({ kind: 'caption' })).toBe(1);
    expect(server.count({ endpoint: '/v1/chat/completions' })).toBe(4);
    expect(server.count({ endpoint: '/v1/models' })).toBe(1);
    expect(server.stats()).toEqual({ requests: { caption: 1, teacher: 2, other: 2, total: 5 }, byStatus: { '200': 4, '503': 1 } });
    const recorded = server.requests();
    expect(recorded.map((r) => r.kind)).toEqual(['caption', 'teacher', 'teacher', 'other', 'other']);
    expect(recorded[1]).toMatchObject({ endpoint: '/v1/chat/completions', model: TEACHER_MODEL, status: 503, scripted: true });
    server.resetCounters();
    expect(server.count()).toBe(0);
    expect(server.requests()).toEqual([]);
  });

  it('lists models', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['pinrich-vlm', 'pinrich-teacher']);
  });

  it('rejects hostile and unsupported input with OpenAI-style errors', async () => {
    const url = `${server.baseUrl}/chat/completions`;
    const auth = { authorization: 'Bearer x', 'content-type': 'application/json' };
    const noAuth = await fetch(url, { method: 'POST', body: '{}' });
    expect(noAuth.status).toBe(401);
    expect(((await noAuth.json()) as { error: { type: string } }).error.type).toBe('authentication_error');

    const badJson = await fetch(url, { method: 'POST', headers: auth, body: '{"model": "x", "messages": [' });
    expect(badJson.status).toBe(400);
    expect(((await badJson.json()) as { error: { message: string } }).error.message).toMatch(/JSON/);

    for (const body of ['[]', 'null', '{"model":"x"}', '{"model":"x","messages":[1]}']) {
      expect((await fetch(url, { method: 'POST', headers: auth, body })).status).toBe(400);
    }
    expect((await fetch(`${server.baseUrl}/nope`, { method: 'POST', headers: auth, body: '{}' })).status).toBe(404);

    const big = await fetch(url, { method: 'POST', headers: auth, body: 'x'.repeat(8 * 1024 * 1024 + 1) });
    expect(big.status).toBe(413);

    await expect(
      client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'hi' }], stream: true }),
    ).rejects.toBeInstanceOf(BadRequestError);
    // Still alive and counting every one of them.
    expect((await chat('still here')).choices[0]?.message.content).toBeTruthy();
    expect(server.stats().byStatus).toMatchObject({ '401': 1, '400': 6, '404': 1, '413': 1, '200': 1 });
  });

  it('is scripted and inspected over HTTP by another process', async () => {
    const root = server.baseUrl.replace(/\/v1$/, '');
    const post = (path: string, body?: unknown) =>
      fetch(`${root}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });

    expect((await post('/_control/script', { kind: 'teacher', times: null, reply: { status: 429, retryAfterSeconds: 1 } })).status).toBe(200);
    for (let i = 0; i < 3; i++) await expect(teacher(teacherPrompt(CAKE_PIN, 'cake'))).rejects.toBeInstanceOf(RateLimitError);
    expect((await post('/_control/clear')).status).toBe(200);
    await expect(teacher(teacherPrompt(CAKE_PIN, 'cake'))).resolves.toBeTruthy();

    expect((await post('/_control/script', { reply: { delayMs: 10, then: { malformed: 'no-content' } } })).status).toBe(200);
    expect((await chat('x')).choices[0]?.message.content).toBeNull();

    const stats = (await (await fetch(`${root}/_control/stats`)).json()) as { requests: Record<string, number>; byStatus: Record<string, number> };
    expect(stats).toEqual({ requests: { caption: 0, teacher: 4, other: 1, total: 5 }, byStatus: { '200': 2, '429': 3 } });

    expect((await post('/_control/script', { reply: { status: 42 } })).status).toBe(400);
    expect((await post('/_control/script', { reply: { text: 1 } })).status).toBe(400);
    expect((await fetch(`${root}/_control/script`, { method: 'POST', body: 'nope' })).status).toBe(400);

    expect((await post('/_control/reset')).status).toBe(200);
    expect(server.count()).toBe(0);
  });
});

describe('model server lifecycle', () => {
  it('applies default latency and a custom caption function', async () => {
    const s = await startModelServer({ defaults: { latencyMs: 150, captionText: (url) => `caption of ${url}` } });
    try {
      const c = new OpenAI({ baseURL: s.baseUrl, apiKey: 'k', maxRetries: 0 });
      const started = Date.now();
      const res = await c.chat.completions.create({
        model: VLM_MODEL,
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://i/1.png' } }] }],
      });
      expect(Date.now() - started).toBeGreaterThanOrEqual(140);
      expect(res.choices[0]?.message.content).toBe('caption of https://i/1.png');
    } finally {
      await s.close();
    }
  });

  it('closes promptly with a hanging request open', async () => {
    const s = await startModelServer();
    const c = new OpenAI({ baseURL: s.baseUrl, apiKey: 'k', maxRetries: 0, timeout: 30_000 });
    s.script({ reply: { hang: true } });
    const pending = c.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    await expect.poll(() => s.count()).toBe(1);
    const started = Date.now();
    await s.close();
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(await pending).toBeInstanceOf(Error);
  });

  it('runs as a CLI that prints its base URL and exits on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/model-server/main.ts', '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout }).once('line', resolve);
        child.once('exit', (code) => reject(new Error(`exited early with ${code}`)));
      });
      const { baseUrl } = JSON.parse(line) as { baseUrl: string };
      expect(baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
      const c = new OpenAI({ baseURL: baseUrl, apiKey: 'k', maxRetries: 0 });
      expect((await c.models.list()).data.length).toBeGreaterThan(0);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 20_000);
});
