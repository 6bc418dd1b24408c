/**
 * CLI entry of the model server for separate processes (demo, benchmarks, fault tests):
 *
 *   tsx src/model-server/main.ts [--port 0] [--host 127.0.0.1] [--latency-ms 0]
 *
 * Prints one JSON line {"baseUrl": "..."} on stdout once listening, then runs until
 * SIGTERM or SIGINT. Scripts are sent over HTTP to /_control (see control.ts).
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startModelServer } from './server.js';

/** Parsed command-line options. */
export interface CliOptions {
  host: string;
  port: number;
  latencyMs: number;
}

/** Parse argv (without node and script); throws on unknown flags or bad numbers. */
export function parseArgs(argv: readonly string[]): CliOptions {
  const opts: CliOptions = { host: '127.0.0.1', port: 0, latencyMs: 0 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    const num = (): number => {
      const n = Number(value);
      if (value === undefined || !Number.isInteger(n) || n < 0) throw new Error(`${flag} needs a non-negative integer, got ${value}`);
      i++;
      return n;
    };
    if (flag === '--port') opts.port = num();
    else if (flag === '--latency-ms') opts.latencyMs = num();
    else if (flag === '--host' && value !== undefined) {
      opts.host = value;
      i++;
    } else throw new Error(`unknown argument ${flag}`);
  }
  return opts;
}

/** Start the server from argv, print the ready line, and close on SIGTERM/SIGINT. */
export async function main(argv: readonly string[]): Promise<void> {
  const opts = parseArgs(argv);
  const server = await startModelServer({ host: opts.host, port: opts.port, defaults: { latencyMs: opts.latencyMs } });
  process.stdout.write(`${JSON.stringify({ baseUrl: server.baseUrl })}\n`);
  const stop = (): void => {
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`model server close failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

/** True when this file is the process entry point (not imported). */
function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`model server failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
