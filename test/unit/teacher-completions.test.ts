/**
 * The completions teacher (PINRICH_TEACHER_API=completions): several prompts per request through
 * /v1/completions prompt arrays, against the project's model server, with the same per-prompt
 * outcomes as the chat teacher.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createOpenAiClient } from '../../src/adapters/openai/client.js';
import { createCompletionsTeacher, createTeacher } from '../../src/adapters/openai/teacher.js';
import { parseTeacherAnswer } from '../../src/core/teacher-answer.js';
import { buildTeacherCompletionPrompt, buildTeacherPrompt, TEACHER_COMPLETION_PROMPT_VERSION, TEACHER_PROMPT_VERSION } from '../../src/core/teacher-prompt.js';
import { isPinrichError } from '../../src/errors.js';
import { startModelServer } from '../../src/model-server/server.js';
import type { ModelServer } from '../../src/model-server/types.js';

const DOC = {
  title: 'Red velvet cake recipe',
  description: 'A moist layered red velvet cake with cream cheese frosting.',
  caption: null,
  board_titles: [{ text: 'baking', count: 2 }],
  engaged_queries: [{ text: 'red velvet cake', count: 3 }],
  link_title: '',
  link_description: '',
};
const QUERIES = ['red velvet cake', 'cream cheese frosting', 'garden shed plans', 'layered cake', 'velvet sofa'];
const signal = () => new AbortController().signal;

describe('completions teacher', () => {
  let server: ModelServer;
  beforeAll(async () => {
    server = await startModelServer();
  });
  afterAll(async () => {
    await server.close();
  });
  beforeEach(() => {
    server.clearScripts();
    server.resetCounters();
  });

  it('has its own prompt version and hash, with the same text as the chat messages', () => {
    const chat = buildTeacherPrompt(DOC, 'red velvet cake');
    const text = buildTeacherCompletionPrompt(DOC, 'red velvet cake');
    expect(chat.version).toBe(TEACHER_PROMPT_VERSION);
    expect(text.version).toBe(TEACHER_COMPLETION_PROMPT_VERSION);
    expect(text.version).not.toBe(chat.version);
    expect(text.hash).not.toBe(chat.hash);
    expect(text.text).toBe(`${chat.messages[0].content}\n\n${chat.messages[1].content}`);
  });

  it('sends the prompts queued together in one request and answers each with its own level', async () => {
    const client = createOpenAiClient({ baseURL: server.baseUrl, apiKey: 'test' });
    const batched = createCompletionsTeacher(client, 'pinrich-teacher', 20, 16);
    const chat = createTeacher(client, 'pinrich-teacher', 20);
    expect(batched.api).toBe('completions');
    const replies = await Promise.all(QUERIES.map((q) => batched.score(buildTeacherCompletionPrompt(DOC, q), { signal: signal() })));
    expect(server.count({ endpoint: '/v1/completions' })).toBe(1);
    const viaChat = await Promise.all(QUERIES.map((q) => chat.score(buildTeacherPrompt(DOC, q), { signal: signal() })));
    for (const [i, reply] of replies.entries()) {
      const parsed = parseTeacherAnswer({ content: reply.content, topLogprobs: reply.topLogprobs });
      const parsedChat = parseTeacherAnswer({ content: viaChat[i]!.content, topLogprobs: viaChat[i]!.topLogprobs });
      expect(parsed.ok && parsed.source).toBe('logprobs');
      // The stand-in's level comes from query/pin overlap: the same for both renderings.
      expect(parsed.ok && parsed.label).toBe(parsedChat.ok && parsedChat.label);
      expect(reply.topLogprobs!.length).toBeGreaterThan(1);
    }
    // The request's usage is split over its prompts, exactly.
    const total = server.requests().find((r) => r.endpoint === '/v1/completions');
    expect(total).toBeDefined();
    const sum = replies.reduce((n, r) => n + r.usage!.prompt_tokens, 0);
    const cached = replies.reduce((n, r) => n + r.usage!.cached_prompt_tokens, 0);
    // Per prompt the digit and the end-of-generation token the completed grammar forces, as llama-server counts them.
    expect(replies.reduce((n, r) => n + r.usage!.completion_tokens, 0)).toBe(2 * QUERIES.length);
    expect(replies.every((r) => r.usage!.total_tokens === r.usage!.prompt_tokens + r.usage!.completion_tokens)).toBe(true);
    expect(sum).toBeGreaterThan(0);
    // The pin's later prompts share its prefix with the first: the server reports cached tokens.
    expect(cached).toBeGreaterThan(0);
  });

  it('caps a request at the batch size', async () => {
    const client = createOpenAiClient({ baseURL: server.baseUrl, apiKey: 'test' });
    const batched = createCompletionsTeacher(client, 'pinrich-teacher', 5, 2);
    await Promise.all(QUERIES.map((q) => batched.score(buildTeacherCompletionPrompt(DOC, q), { signal: signal() })));
    expect(server.count({ endpoint: '/v1/completions' })).toBe(3);
  });

  it('fails every prompt of a failed request with the classified error, and one aborted prompt alone', async () => {
    const client = createOpenAiClient({ baseURL: server.baseUrl, apiKey: 'test' });
    const batched = createCompletionsTeacher(client, 'pinrich-teacher', 20, 16);
    server.script({ reply: { status: 500, message: 'boom' } });
    const failed = await Promise.allSettled(QUERIES.slice(0, 3).map((q) => batched.score(buildTeacherCompletionPrompt(DOC, q), { signal: signal() })));
    for (const f of failed) {
      expect(f.status).toBe('rejected');
      const err = (f as PromiseRejectedResult).reason as unknown;
      expect(isPinrichError(err) && err.code).toBe('model_server_error');
      expect(isPinrichError(err) && err.retriable).toBe(true);
    }

    server.script({ reply: { delayMs: 300 } });
    const abort = new AbortController();
    const both = [batched.score(buildTeacherCompletionPrompt(DOC, 'red velvet cake'), { signal: abort.signal }), batched.score(buildTeacherCompletionPrompt(DOC, 'layered cake'), { signal: signal() })];
    setTimeout(() => abort.abort(), 50);
    const [aborted, ok] = await Promise.allSettled(both);
    expect(aborted!.status).toBe('rejected');
    expect(isPinrichError((aborted as PromiseRejectedResult).reason) && (aborted as PromiseRejectedResult).reason.code).toBe('aborted');
    expect(ok!.status).toBe('fulfilled');
  });

  it('rejects a chat prompt (no text)', async () => {
    const client = createOpenAiClient({ baseURL: server.baseUrl, apiKey: 'test' });
    const batched = createCompletionsTeacher(client, 'pinrich-teacher', 20, 16);
    await expect(batched.score(buildTeacherPrompt(DOC, 'cake'), { signal: signal() })).rejects.toMatchObject({ code: 'model_rejected_request' });
  });
});
