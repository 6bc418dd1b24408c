/**
 * Child processes for tests that drive pinrich as a user would: the real `bin/pinrich.js`, or
 * any command (a demo's printed line through `bash -c`), with its output collected.
 */
import { spawn } from 'node:child_process';

/** What a finished child process printed, and how it exited. */
export interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `command args` with exactly `env` (nothing inherited) and resolves when it exits. */
export function runProcess(command: string, args: string[], env: Record<string, string | undefined>): Promise<ProcessResult> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('exit', (code) => done({ code, stdout, stderr }));
  });
}

/** Runs the `pinrich` command (bin/pinrich.js under this Node) with exactly `env`. */
export function runPinrich(args: string[], env: Record<string, string | undefined>): Promise<ProcessResult> {
  return runProcess(process.execPath, ['bin/pinrich.js', ...args], env);
}
