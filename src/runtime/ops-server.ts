/**
 * The operations endpoint of a pinrich process (one per process, whatever workers it runs):
 *
 *   GET /metrics  Prometheus text format 0.0.4 (prom-client: pinrich's series and the default
 *                 Node.js metrics)
 *   GET /healthz  liveness: 200 while the event loop answers and no worker's consumer has
 *                 crashed for good (kafkajs gave up restarting it); 503 otherwise, so the
 *                 orchestrator restarts the process
 *   GET /readyz   readiness: 200 once every worker's consumer has joined its group and Redis
 *                 answers a PING; 503 with the failing checks otherwise (and while draining)
 *
 * Bodies are small JSON documents (metrics excepted). Nothing here reads the environment: the
 * port comes from the config through the composition root.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PinrichError } from '../errors.js';
import { EXPOSITION_CONTENT_TYPE, type Registry } from './metrics.js';

/** One named check: resolves to null when healthy, or to the reason it is not. */
export type Check = () => Promise<string | null> | string | null;

export interface OpsServerOptions {
  port: number;
  /** Bind address; all interfaces by default (containers are scraped from outside). */
  host?: string;
  registry: Registry;
  liveness: Record<string, Check>;
  readiness: Record<string, Check>;
  /** A check slower than this fails ("timed out"). */
  checkTimeoutMs?: number;
}

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startOpsServer(opts: OpsServerOptions): Promise<OpsServer> {
  const timeoutMs = opts.checkTimeoutMs ?? 2_000;

  async function run(checks: Record<string, Check>): Promise<{ ok: boolean; checks: Record<string, string> }> {
    const results = await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        let timer: NodeJS.Timeout | undefined;
        try {
          const timeout = new Promise<string>((r) => (timer = setTimeout(() => r('timed out'), timeoutMs)));
          return [name, await Promise.race([Promise.resolve(check()), timeout])] as const;
        } catch (err) {
          return [name, err instanceof Error ? err.message : String(err)] as const;
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    return { ok: results.every(([, r]) => r === null), checks: Object.fromEntries(results.map(([n, r]) => [n, r ?? 'ok'])) };
  }

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body) + '\n');
    };
    if (path === '/metrics') {
      opts.registry.expose().then(
        (text) => res.writeHead(200, { 'content-type': EXPOSITION_CONTENT_TYPE }).end(text),
        (err: unknown) => json(500, { error: String(err) }),
      );
    } else if (path === '/healthz' || path === '/readyz') {
      run(path === '/healthz' ? opts.liveness : opts.readiness).then(
        (r) => json(r.ok ? 200 : 503, { status: r.ok ? 'ok' : 'failing', checks: r.checks }),
        (err: unknown) => json(503, { status: 'failing', error: String(err) }),
      );
    } else {
      json(404, { error: 'not found', endpoints: ['/metrics', '/healthz', '/readyz'] });
    }
  });
  // A scraper that keeps a connection open must not hold up shutdown.
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new PinrichError(
          'config_invalid',
          err.code === 'EADDRINUSE'
            ? `PINRICH_METRICS_PORT ${opts.port} is in use: give each process its own port, or 0 to turn the endpoint off`
            : `cannot serve metrics on port ${opts.port}: ${err.message}`,
          { cause: err },
        ),
      ),
    );
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
