/**
 * The openai SDK over pinrich's node:http fetch (src/adapters/openai/http-fetch.ts): every
 * failure still classifies as it did over the global fetch — a hung request times out as
 * model_timeout (retried), a refused connection is model_unreachable, 5xx and 429 keep their
 * Retry-After, an abort of the caller's signal is cancellation — and sequential requests reuse
 * one keep-alive socket.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createOpenAiClient } from '../../src/adapters/openai/client.js';
import { createTeacher } from '../../src/adapters/openai/teacher.js';
import { buildTeacherPrompt } from '../../src/core/teacher-prompt.js';
import { startModelServer } from '../../src/model-server/server.js';
import type { ModelServer } from '../../src/model-server/types.js';
import { withRetries } from '../../src/runtime/retry.js';

const DOC = {
  title: 'Red velvet cake recipe',
  description: 'A moist layered red velvet cake with cream cheese frosting.',
  caption: null,
  board_titles: [{ text: 'baking', count: 2 }],
  engaged_queries: [],
  link_title: '',
  link_description: '',
};
const prompt = buildTeacherPrompt(DOC, 'red velvet cake');
// Long enough that an answered request never times out on a loaded machine; a hang always does.
const policy = { maxAttempts: 2, baseMs: 1, maxMs: 2, timeoutMs: 1_500 };

describe('the openai SDK over the node:http fetch', () => {
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
  const teacher = (baseURL = server.baseUrl) => createTeacher(createOpenAiClient({ baseURL, apiKey: 'test' }), 'pinrich-teacher', 5, { constrain: 'none' });

  it('times a hung request out as model_timeout and retries it', async () => {
    server.script({ kind: 'teacher', reply: { hang: true } });
    const t = teacher();
    const { value, attempts } = await withRetries(policy, (signal) => t.score(prompt, { signal }));
    expect(attempts).toBe(2);
    expect(value.content).toMatch(/[1-5]/);
    // The first request was given up by the client (the server saw it close: 499).
    expect(server.stats().byStatus['499']).toBe(1);
  });

  it('reports a timeout that outlasts the policy as model_timeout', async () => {
    server.script({ kind: 'teacher', times: 2, reply: { hang: true } });
    const t = teacher();
    await expect(withRetries(policy, (signal) => t.score(prompt, { signal }))).rejects.toMatchObject({ code: 'model_timeout', retriable: true });
  });

  it('is cancellation, not a timeout, when the caller aborts', async () => {
    server.script({ kind: 'teacher', reply: { hang: true } });
    const caller = new AbortController();
    const t = teacher();
    const call = withRetries({ ...policy, timeoutMs: 10_000 }, (signal) => t.score(prompt, { signal }), { signal: caller.signal });
    setTimeout(() => caller.abort(), 50);
    await expect(call).rejects.toMatchObject({ code: 'aborted' });
  });

  it('classifies a refused connection as model_unreachable', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await expect(teacher(`http://127.0.0.1:${port}/v1`).score(prompt, { signal: new AbortController().signal })).rejects.toMatchObject({ code: 'model_unreachable', retriable: true });
  });

  it('keeps the status and Retry-After of 5xx and 429 answers', async () => {
    server.script({ kind: 'teacher', reply: { status: 429, retryAfterSeconds: 2 } });
    server.script({ kind: 'teacher', reply: { status: 503, message: 'loading model' } });
    server.script({ kind: 'teacher', reply: { status: 400, message: 'prompt too long' } });
    const t = teacher();
    const s = new AbortController().signal;
    await expect(t.score(prompt, { signal: s })).rejects.toMatchObject({ code: 'model_rate_limited', retryAfterMs: 2_000 });
    await expect(t.score(prompt, { signal: s })).rejects.toMatchObject({ code: 'model_server_error', retriable: true });
    await expect(t.score(prompt, { signal: s })).rejects.toMatchObject({ code: 'model_rejected_request', message: expect.stringContaining('prompt too long') });
  });
});

describe('keep-alive', () => {
  let plain: Server;
  let connections = 0;
  beforeAll(async () => {
    plain = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const body = JSON.stringify({ id: 'x', object: 'chat.completion', created: 0, model: 'm', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: '4' }, logprobs: null }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } });
        // Under /gz a proxy that compresses whatever the client asked for.
        const bytes = req.url?.startsWith('/gz/') ? gzipSync(body) : Buffer.from(body);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': bytes.length, ...(req.url?.startsWith('/gz/') ? { 'content-encoding': 'gzip' } : {}) });
        res.end(bytes);
      });
    });
    plain.on('connection', () => connections++);
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  });
  afterAll(async () => {
    plain.closeAllConnections();
    await new Promise<void>((r) => plain.close(() => r()));
  });

  it('sends sequential requests over one socket', async () => {
    const t = createTeacher(createOpenAiClient({ baseURL: `http://127.0.0.1:${(plain.address() as AddressInfo).port}/v1`, apiKey: 'k' }), 'm', 0, { constrain: 'none' });
    for (let i = 0; i < 20; i++) expect((await t.score(prompt, { signal: new AbortController().signal })).content).toBe('4');
    expect(connections).toBe(1);
  });

  it('decodes a gzip-compressed answer', async () => {
    const t = createTeacher(createOpenAiClient({ baseURL: `http://127.0.0.1:${(plain.address() as AddressInfo).port}/gz/v1`, apiKey: 'k' }), 'm', 0, { constrain: 'none' });
    const reply = await t.score(prompt, { signal: new AbortController().signal });
    expect(reply.content).toBe('4');
    expect(reply.usage?.prompt_tokens).toBe(3);
  });
});
