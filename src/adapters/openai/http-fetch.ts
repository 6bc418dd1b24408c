/**
 * The `fetch` the openai SDK is given (its documented `fetch` option): one request over node:http
 * (or node:https) on a keep-alive agent, answered with a small Response that holds the body as
 * one buffer. Node's global fetch (undici) costs ~1 ms of CPU per small request in WHATWG
 * Request/Response objects, web streams and abort plumbing — more than the model server answers
 * in on a fast backend (bench/results/score-levers.md). The SDK still builds the request,
 * parses the answer and types the errors; this only moves the bytes.
 *
 * Faithful to fetch where the SDK looks: a refused connection rejects with TypeError('fetch
 * failed', { cause }) as undici does (the SDK makes it APIConnectionError), an aborted signal
 * rejects with an AbortError DOMException, and any status resolves (the SDK reads `ok`,
 * `status`, `headers`, `json()` / `text()`; `body` is a stream made only if asked for).
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';

/** Options of {@link createHttpFetch}. */
export interface HttpFetchOptions {
  /** Sockets per origin at most; requests beyond wait for a free one. Default 256. */
  maxSockets?: number;
}

/** The Response the SDK reads: status, headers and the whole body, already received. */
class BufferedResponse {
  readonly ok: boolean;
  readonly redirected = false;
  readonly type = 'basic';
  bodyUsed = false;
  constructor(
    readonly status: number,
    readonly statusText: string,
    readonly headers: Headers,
    readonly url: string,
    private readonly bytes: Buffer,
  ) {
    this.ok = status >= 200 && status < 300;
  }
  async text(): Promise<string> {
    this.bodyUsed = true;
    return this.bytes.toString('utf8');
  }
  async json(): Promise<unknown> {
    this.bodyUsed = true;
    return JSON.parse(this.bytes.toString('utf8'));
  }
  async arrayBuffer(): Promise<ArrayBuffer> {
    this.bodyUsed = true;
    return this.bytes.buffer.slice(this.bytes.byteOffset, this.bytes.byteOffset + this.bytes.byteLength) as ArrayBuffer;
  }
  /** Only a streaming caller asks (the SDK cancels it before a retry): made on demand. */
  get body(): ReadableStream<Uint8Array> {
    const bytes = this.bytes;
    return new ReadableStream<Uint8Array>({
      start(controller) {
        if (bytes.length > 0) controller.enqueue(new Uint8Array(bytes));
        controller.close();
      },
    });
  }
}

/**
 * The response headers, read the way the SDK and pinrich read a Headers object (get, has,
 * entries, forEach, iteration; names lower-cased, repeated ones joined with ", " as fetch joins
 * them) without undici's per-header validation: node:http has already parsed them.
 */
class ResponseHeaders {
  private readonly map = new Map<string, string>();
  constructor(raw: readonly string[]) {
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      const prev = this.map.get(name);
      this.map.set(name, prev === undefined ? raw[i + 1]! : `${prev}, ${raw[i + 1]!}`);
    }
  }
  get(name: string): string | null {
    return this.map.get(name.toLowerCase()) ?? null;
  }
  has(name: string): boolean {
    return this.map.has(name.toLowerCase());
  }
  getSetCookie(): string[] {
    const v = this.map.get('set-cookie');
    return v === undefined ? [] : [v];
  }
  forEach(fn: (value: string, name: string, headers: this) => void): void {
    for (const [k, v] of this.sorted()) fn(v, k, this);
  }
  entries(): IterableIterator<[string, string]> {
    return this.sorted()[Symbol.iterator]();
  }
  keys(): IterableIterator<string> {
    return this.sorted().map(([k]) => k)[Symbol.iterator]();
  }
  values(): IterableIterator<string> {
    return this.sorted().map(([, v]) => v)[Symbol.iterator]();
  }
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }
  /** Headers iterate in name order. */
  private sorted(): Array<[string, string]> {
    return [...this.map].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
}

function headersOf(res: IncomingMessage): Headers {
  return new ResponseHeaders(res.rawHeaders) as unknown as Headers;
}

/** The request headers as a plain object, from whatever HeadersInit the caller passed. */
function plainHeaders(init: HeadersInit | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!init) return out;
  if (init instanceof Headers) init.forEach((v, k) => (out[k] = v));
  else if (Array.isArray(init)) for (const [k, v] of init) out[k!.toLowerCase()] = v!;
  else for (const [k, v] of Object.entries(init)) out[k.toLowerCase()] = String(v);
  return out;
}

/**
 * The body as sent before any content coding: we send no Accept-Encoding, but a proxy may
 * compress anyway, and fetch would have decoded it.
 */
function decoded(encoding: string | undefined, bytes: Buffer): Buffer {
  switch (encoding?.trim().toLowerCase()) {
    case undefined:
    case '':
    case 'identity':
      return bytes;
    case 'gzip':
    case 'x-gzip':
      return gunzipSync(bytes);
    case 'deflate':
      return inflateSync(bytes);
    case 'br':
      return brotliDecompressSync(bytes);
    default:
      throw new Error(`unsupported content-encoding ${encoding}`);
  }
}

function abortError(signal: AbortSignal): unknown {
  const reason: unknown = signal.reason;
  return reason instanceof Error || reason instanceof DOMException ? reason : new DOMException('This operation was aborted', 'AbortError');
}

/** A fetch for the openai SDK over keep-alive node:http(s) sockets. */
export function createHttpFetch(opts: HttpFetchOptions = {}): typeof fetch {
  const maxSockets = opts.maxSockets ?? 256;
  // Every socket may stay pooled: the in-flight limit, not the agent, bounds how many there are.
  const agentOpts = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' as const };
  const http = new HttpAgent(agentOpts);
  const https = new HttpsAgent(agentOpts);

  return function httpFetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const signal = init.signal ?? undefined;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const body = init.body;
    if (body !== undefined && body !== null && typeof body !== 'string' && !(body instanceof Uint8Array)) {
      // The SDK sends JSON strings (and multipart for uploads pinrich does not make).
      return Promise.reject(new TypeError('pinrich http fetch: only string or byte bodies are supported'));
    }
    const headers = plainHeaders(init.headers);
    if (body !== undefined && body !== null) headers['content-length'] = String(typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength);
    const secure = url.startsWith('https:');

    return new Promise<Response>((resolve, reject) => {
      let settled = false;
      const fail = (err: unknown): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      };
      const onAbort = (): void => {
        fail(abortError(signal!));
        req.destroy();
      };
      const req = (secure ? httpsRequest : httpRequest)(url, { method: init.method ?? 'GET', headers, agent: secure ? https : http }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => fail(new TypeError('fetch failed', { cause: err })));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          let bytes: Buffer;
          try {
            bytes = decoded(res.headers['content-encoding'], chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
          } catch (err) {
            return reject(new TypeError('fetch failed', { cause: err }));
          }
          resolve(new BufferedResponse(res.statusCode ?? 0, res.statusMessage ?? '', headersOf(res), url, bytes) as unknown as Response);
        });
      });
      req.on('error', (err) => fail(new TypeError('fetch failed', { cause: err })));
      signal?.addEventListener('abort', onAbort, { once: true });
      req.end(body ?? undefined);
    });
  };
}
