/**
 * An S3-compatible server (s3rver) as a local Node child process, for the dump bucket.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort, spawnDetached } from './process.js';

/** Substring of the runner's command line, used to recognise it by pid. */
export const S3_MARKER = 's3rver-main';

/**
 * The runner next to this module: `s3rver-main.ts` when running from source (tsx, vitest),
 * `s3rver-main.js` after `tsc`. From source, the child needs tsx's loader to run TypeScript;
 * we pass it by absolute URL so it resolves no matter what the child's cwd is.
 */
function runnerCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  const ext = here.endsWith('.ts') ? '.ts' : '.js';
  const runner = join(dirname(here), `s3rver-main${ext}`);
  if (ext === '.js') return [runner];
  const tsxLoader = createRequire(import.meta.url).resolve('tsx');
  return ['--import', pathToFileURL(tsxLoader).href, runner];
}

/** Starts s3rver detached with `bucket` pre-created; returns pid, port and log file. */
export async function startS3(dir: string, bucket: string): Promise<{ pid: number; port: number; logFile: string }> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'data'), { recursive: true });
  const port = await freePort();
  const logFile = join(dir, 's3rver.log');
  const pid = spawnDetached({
    command: process.execPath,
    args: runnerCommand(),
    logFile,
    env: {
      ...process.env,
      // See s3rver-main.ts: paged listings fail with HTTP 500 without the legacy provider.
      NODE_OPTIONS: [process.env.NODE_OPTIONS, '--openssl-legacy-provider'].filter(Boolean).join(' '),
      PINRICH_S3RVER_PORT: String(port),
      PINRICH_S3RVER_DIRECTORY: join(dir, 'data'),
      PINRICH_S3RVER_BUCKET: bucket,
    },
  });
  return { pid, port, logFile };
}

/**
 * GET on `url`; resolves with the HTTP status, or undefined if no HTTP answer arrived.
 * Any status proves an HTTP server is there; callers decide which statuses mean healthy.
 */
export function httpStatus(url: string, timeoutMs = 2_000): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = (url.startsWith('https:') ? httpsRequest : request)(url, { method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/**
 * Our s3rver is healthy when the bucket answers a listing (200): that proves both the
 * server and the bucket, which s3rver creates before it starts listening.
 */
export async function s3BucketHealthy(endpoint: string, bucket: string): Promise<boolean> {
  return (await httpStatus(`${endpoint.replace(/\/$/, '')}/${encodeURIComponent(bucket)}?max-keys=1`)) === 200;
}

/**
 * An external S3 endpoint answers unsigned requests with 403 or similar; any HTTP status
 * counts as reachable, since we hold no credentials to sign with here.
 */
export async function s3Reachable(endpoint: string): Promise<boolean> {
  return (await httpStatus(endpoint)) !== undefined;
}
