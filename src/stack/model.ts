/**
 * pinrich's own OpenAI-compatible stand-in model server (src/model-server/) as a local stack
 * service, so that after `pinrich stack up` the caption and score workers have a VLM and a
 * teacher without any setting (`pinrich run all`). It writes test data, not real captions or
 * labels: the CLI says STAND-IN whenever it points a command at it, and PINRICH_VLM_BASE_URL /
 * PINRICH_TEACHER_BASE_URL, when set, always win.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort, spawnDetached } from './process.js';
import { httpStatus } from './s3.js';

/** Substring of the server's command line, used to recognise it by pid. */
export const MODEL_MARKER = 'model-server/main';

/** `main.ts` of the model server from source (tsx), `main.js` after `tsc`; see s3.ts runnerCommand. */
function runnerCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  const ext = here.endsWith('.ts') ? '.ts' : '.js';
  const runner = join(dirname(here), '..', 'model-server', `main${ext}`);
  if (ext === '.js') return [runner];
  const tsxLoader = createRequire(import.meta.url).resolve('tsx');
  return ['--import', pathToFileURL(tsxLoader).href, runner];
}

/** Starts the stand-in detached on a free port; returns its pid, port and log file. */
export async function startModelStandIn(dir: string): Promise<{ pid: number; port: number; logFile: string }> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const logFile = join(dir, 'model-server.log');
  const pid = spawnDetached({ command: process.execPath, args: [...runnerCommand(), '--port', String(port)], logFile });
  return { pid, port, logFile };
}

/** The OpenAI-compatible base URL of the stand-in on `port`. */
export function modelBaseUrl(port: number): string {
  return `http://127.0.0.1:${port}/v1`;
}

/**
 * Healthy when it answers HTTP: it asks every request for a bearer key (401) and serves only
 * POSTs (405 on a GET), so any status proves the server is up; the pid check comes first.
 */
export async function modelHealthy(baseUrl: string): Promise<boolean> {
  return (await httpStatus(`${baseUrl}/models`)) !== undefined;
}
