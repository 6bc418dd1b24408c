/**
 * The project's OpenAI-compatible model server: a stand-in for a real VLM and teacher LLM
 * whose answers, latency and failures a test can script. Built on node:http only.
 *
 * Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, vLLM's pooling
 * endpoint POST /classify (a sequence-classification teacher), and the remote control under
 * /_control (see control.ts) for scripts sent from another process.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { defaultOutcome, scriptedOutcome, type CompletionRequest, type Outcome } from './behaviour.js';
import { handleControl } from './control.js';
import { errorBody } from './openai-shapes.js';
import { createPrefixCache } from './prefix-cache.js';
import { classifyRequest, completionPrompts, isObject } from './request-text.js';
import { createScriptQueue } from './script-queue.js';
import type { CountFilter, Defaults, ModelServer, ModelServerStats, RecordedRequest, RequestKind, ScriptedReply } from './types.js';

// Re-exported so callers need one import for the server and its types.
export type {
  CountFilter,
  Defaults,
  ModelServer,
  ModelServerStats,
  RecordedRequest,
  RequestKind,
  ScriptedReply,
  ScriptRule,
  UsageOverride,
} from './types.js';

/** Options of {@link startModelServer}. */
export interface ModelServerOptions {
  /** Interface to bind; default 127.0.0.1. */
  host?: string;
  /** Port to bind; default 0 (a free port). */
  port?: number;
  defaults?: Partial<Defaults>;
}

/** Requests larger than this get 413, like a real API gateway. */
export const BODY_LIMIT_BYTES = 8 * 1024 * 1024;
/** Past this much discarded body we stop draining an oversized upload and drop the connection. */
const DRAIN_LIMIT_BYTES = 64 * 1024 * 1024;

const DEFAULTS: Defaults = {
  latencyMs: 0,
  models: ['pinrich-vlm', 'pinrich-teacher'],
  prefixCacheSize: 256,
  maxRecorded: 10_000,
  logprobsFlavour: 'openai',
  classifierClasses: 5,
};

/** Start a model server; resolves once it listens. */
export async function startModelServer(opts: ModelServerOptions = {}): Promise<ModelServer> {
  const defaults: Defaults = { ...DEFAULTS, ...opts.defaults };
  const scripts = createScriptQueue();
  const prefixCache = createPrefixCache(defaults.prefixCacheSize);
  let log: RecordedRequest[] = [];
  // Exact counters kept apart from the bounded log, keyed "endpoint\tkind".
  let counts = new Map<string, number>();
  let byStatus = new Map<number, number>();

  const record = (endpoint: string, kind: RequestKind, body: unknown, at: number): RecordedRequest => {
    const model = isObject(body) && typeof body.model === 'string' ? body.model : undefined;
    const r: RecordedRequest = { endpoint, kind, model, body, status: 0, at, scripted: false };
    log.push(r);
    // Trim in chunks, not one shift() per request (O(maxRecorded) each); readers see the last maxRecorded.
    if (log.length > defaults.maxRecorded + 1_024) log = log.slice(-defaults.maxRecorded);
    const key = `${endpoint}\t${kind}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    return r;
  };
  const setStatus = (r: RecordedRequest, status: number): void => {
    if (r.status !== 0) return;
    r.status = status;
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  };

  const recorded = (): RecordedRequest[] => log.slice(-defaults.maxRecorded);

  const count = (filter: CountFilter = {}): number => {
    let n = 0;
    for (const [key, c] of counts) {
      const [endpoint, kind] = key.split('\t');
      if ((filter.endpoint === undefined || filter.endpoint === endpoint) && (filter.kind === undefined || filter.kind === kind)) n += c;
    }
    return n;
  };
  const stats = (): ModelServerStats => ({
    requests: { caption: count({ kind: 'caption' }), teacher: count({ kind: 'teacher' }), other: count({ kind: 'other' }), total: count() },
    byStatus: Object.fromEntries([...byStatus].map(([s, c]) => [String(s), c])),
  });
  const resetCounters = (): void => {
    log = [];
    counts = new Map();
    byStatus = new Map();
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      // A bug here must cost one request, not the server every other test depends on.
      if (!res.headersSent && !res.destroyed) send(res, 500, errorBody(500, `model server bug: ${String(err)}`));
      else res.destroy();
    });
  });
  // Keep-alive like a real API; long enough that pooled client sockets are reused across a test.
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 35_000;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = Date.now();
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const read = await readBody(req);
    if (read === undefined) return;
    const tooLarge = read === 'too-large';
    const body = tooLarge ? '' : read.text;

    if (path.startsWith('/_control/')) {
      if (tooLarge) return send(res, 413, errorBody(413, 'Request body too large.'), { connection: 'close' });
      const c = handleControl(req.method ?? 'GET', path, body, {
        script: (rule) => scripts.add(rule),
        clearScripts: () => scripts.clear(),
        stats,
        resetCounters,
        requests: recorded,
      });
      return send(res, c.status, c.json);
    }

    let parsed: unknown;
    let parseError = false;
    if (body.length > 0) {
      try {
        parsed = JSON.parse(body);
      } catch {
        parseError = true;
      }
    }
    const kind = parseError ? 'other' : classifyRequest(path, parsed);
    const rec = record(path, kind, parsed, at);
    // A client that gives up (timeout, abort) before we answer shows up as 499, nginx-style.
    const closed = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) setStatus(rec, 499);
      closed.abort();
    });
    const reply = (status: number, json: unknown, headers?: Record<string, string>): void => {
      setStatus(rec, status);
      send(res, status, json, headers);
    };

    if (tooLarge) return reply(413, errorBody(413, `Request body exceeds ${BODY_LIMIT_BYTES} bytes.`), { connection: 'close' });
    if (!/^Bearer\s+\S/i.test(req.headers.authorization ?? '')) {
      return reply(401, errorBody(401, 'Missing bearer authentication in header.', 'invalid_api_key'));
    }
    const route = `${req.method ?? ''} ${path}`;
    if (route === 'GET /v1/models') {
      const created = Math.floor(Date.now() / 1000);
      return reply(200, { object: 'list', data: defaults.models.map((id) => ({ id, object: 'model', created, owned_by: 'pinrich' })) });
    }
    if (route === 'POST /classify') {
      if (parseError) return reply(400, errorBody(400, 'We could not parse the JSON body of your request.'));
      const invalidClassify = validateClassify(parsed);
      if (invalidClassify) return reply(400, errorBody(400, invalidClassify));
      const creq: CompletionRequest = { api: 'classify', body: parsed as Record<string, unknown>, kind, model: (parsed as { model: string }).model };
      return answer(creq);
    }
    if (route !== 'POST /v1/chat/completions' && route !== 'POST /v1/completions') {
      const known = ['/v1/models', '/v1/chat/completions', '/v1/completions', '/classify'].includes(path);
      return known
        ? reply(405, errorBody(405, `Method ${req.method ?? ''} not allowed on ${path}.`))
        : reply(404, errorBody(404, `Unknown endpoint ${path}.`, 'unknown_url'));
    }
    if (parseError) return reply(400, errorBody(400, 'We could not parse the JSON body of your request.'));
    const api = path === '/v1/chat/completions' ? 'chat' : 'completions';
    const invalid = validate(api, parsed);
    if (invalid) return reply(400, errorBody(400, invalid));
    const creq: CompletionRequest = { api, body: parsed as Record<string, unknown>, kind, model: (parsed as { model: string }).model };
    return answer(creq);

    /** The scripted reply for this request, else the default behaviour, once the client still listens. */
    async function answer(creq: CompletionRequest): Promise<void> {
      const scripted = scripts.take(kind, body);
      rec.scripted = scripted !== undefined;
      const outcome = await resolveOutcome(scripted, creq, closed.signal);
      if (!outcome || res.destroyed) return;
      setStatus(rec, outcome.status);
      if (outcome.raw !== undefined) {
        res.writeHead(outcome.status, { 'content-type': 'application/json', ...outcome.headers });
        res.end(outcome.raw);
      } else {
        send(res, outcome.status, outcome.json, outcome.headers);
      }
    }
  }

  /** Follow delays and hangs to a final answer; undefined when the client went away first. */
  async function resolveOutcome(reply: ScriptedReply | undefined, req: CompletionRequest, signal: AbortSignal): Promise<Outcome | undefined> {
    if (reply === undefined) {
      if (defaults.latencyMs > 0 && !(await sleep(defaults.latencyMs, signal))) return undefined;
      return defaultOutcome(req, { defaults, prefixCache });
    }
    if ('hang' in reply) {
      if (!signal.aborted) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      return undefined;
    }
    if ('delayMs' in reply) {
      if (!(await sleep(reply.delayMs, signal))) return undefined;
      // `then` omitted means the default answer, but without adding default latency on top.
      return reply.then ? resolveOutcome(reply.then, req, signal) : defaultOutcome(req, { defaults, prefixCache });
    }
    return scriptedOutcome(reply, req, { defaults, prefixCache });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;

  return {
    baseUrl: `http://${host}:${addr.port}/v1`,
    script: (rule) => scripts.add(rule),
    clearScripts: () => scripts.clear(),
    requests: recorded,
    count,
    stats,
    resetCounters,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Hanging and keep-alive connections would otherwise hold close() open forever.
        server.closeAllConnections();
      }),
  };
}

/** A chat or completions body that would make OpenAI answer 400, described; undefined when fine. */
function validate(api: 'chat' | 'completions', body: unknown): string | undefined {
  if (!isObject(body)) return 'The request body must be a JSON object.';
  if (typeof body.model !== 'string' || body.model.length === 0) return "Missing required parameter: 'model'.";
  if (body.stream === true) return 'Streaming is not supported by the pinrich model server.';
  if (api === 'chat') {
    if (!Array.isArray(body.messages) || body.messages.length === 0) return "Missing required parameter: 'messages'.";
    if (!body.messages.every((m) => isObject(m) && typeof m.role === 'string')) return "Invalid 'messages': every message needs a role.";
  } else if (completionPrompts(body.prompt).length === 0) {
    return "Invalid 'prompt': expected a string or a non-empty array of strings.";
  }
  return undefined;
}

/** A /classify body vLLM would answer 400 to, described; undefined when fine. */
function validateClassify(body: unknown): string | undefined {
  if (!isObject(body)) return 'The request body must be a JSON object.';
  if (typeof body.model !== 'string' || body.model.length === 0) return "Missing required parameter: 'model'.";
  if (completionPrompts(body.input).length === 0) return "Invalid 'input': expected a string or a non-empty array of strings.";
  return undefined;
}

/**
 * Read the body as text; 'too-large' past the limit (drained, so the 413 reaches the
 * client instead of a reset); undefined when the connection died or the upload was absurd.
 */
function readBody(req: IncomingMessage): Promise<{ text: string } | 'too-large' | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= BODY_LIMIT_BYTES) chunks.push(chunk);
      else if (size > DRAIN_LIMIT_BYTES) {
        req.destroy();
        resolve(undefined);
      }
    });
    req.on('end', () => resolve(size > BODY_LIMIT_BYTES ? 'too-large' : { text: Buffer.concat(chunks).toString('utf8') }));
    // After 'end' these are no-ops: a promise settles once.
    req.on('error', () => resolve(undefined));
    req.on('close', () => resolve(undefined));
  });
}

function send(res: ServerResponse, status: number, json: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed || res.headersSent) return;
  const text = JSON.stringify(json);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-request-id': `req_pinrich_${Date.now().toString(36)}`,
    ...headers,
  });
  res.end(text);
}

/** Resolve true after ms, or false as soon as the signal aborts (the client went away). */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
