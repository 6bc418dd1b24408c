/**
 * Process plumbing for the local stack: free ports, detached children, process-group
 * signalling, polling with deadlines, log tails. Nothing here knows about a specific service.
 */
import { spawn, execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Asks the kernel for a free TCP port on 127.0.0.1 by binding port 0 and closing again.
 * There is a small window in which another process could take the port; the service's
 * health check then fails with its log tail, which names the bind error.
 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not determine a free port'));
      });
    });
  });
}

/** What to run for one service, and where its output goes. */
export interface SpawnSpec {
  command: string;
  args: string[];
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Called if the process ends while this parent still runs: how it ended (a crash names its signal). */
  onExit?: (how: string) => void;
}

/**
 * Starts a process in its own process group (detached) with stdout/stderr appended to a log
 * file, and lets the parent exit without waiting for it: `pinrich stack up` must leave the
 * services running for a later `pinrich demo` or `npm test`. The returned pid is also the
 * process-group id, which is what {@link stopGroup} signals.
 */
export function spawnDetached(spec: SpawnSpec): number {
  const fd = openSync(spec.logFile, 'a');
  try {
    const child = spawn(spec.command, spec.args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: spec.env ?? process.env,
      cwd: spec.cwd,
    });
    // spawn() reports ENOENT asynchronously; without a listener it would crash the parent.
    child.on('error', () => undefined);
    const onExit = spec.onExit;
    if (onExit) child.once('exit', (code, signal) => onExit(signal ? `killed by ${signal}` : `exit code ${code}`));
    if (child.pid === undefined) {
      throw new Error(`could not start ${spec.command}: is it installed and on PATH?`);
    }
    child.unref();
    return child.pid;
  } finally {
    // The child has its own copy of the descriptor.
    closeSync(fd);
  }
}

/** True when a process with this pid exists (signal 0 probes without signalling). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM means it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The command line of a running process, or undefined. Used to make sure a pid recorded in
 * an old state file still belongs to our service before signalling it: pids are reused, and
 * killing an unrelated process group because a state file is stale would be a nasty bug.
 */
export function commandLine(pid: number): string | undefined {
  const proc = `/proc/${pid}/cmdline`;
  if (existsSync('/proc/self')) {
    try {
      return readFileSync(proc, 'utf8').split('\0').join(' ');
    } catch {
      return undefined; // gone between the check and the read
    }
  }
  try {
    return execFileSync('ps', ['-o', 'command=', '-p', String(pid)], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined; // ps exits non-zero when the pid does not exist
  }
}

/** True when `pid` is alive and its command line contains `marker`. */
export function isOurProcess(pid: number, marker: string): boolean {
  const cmd = commandLine(pid);
  return cmd !== undefined && cmd.includes(marker);
}

/**
 * Stops a process group: SIGTERM, wait up to `graceMs` for the leader to exit, then SIGKILL.
 * Signalling the group (negative pid) also reaches helpers the service may have forked.
 */
export async function stopGroup(pid: number, graceMs: number): Promise<'exited' | 'killed' | 'absent'> {
  if (!signalGroup(pid, 'SIGTERM')) return 'absent';
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid) || isZombie(pid)) return 'exited';
    await sleep(100);
  }
  signalGroup(pid, 'SIGKILL');
  const killDeadline = Date.now() + 5_000;
  while (Date.now() < killDeadline && isAlive(pid) && !isZombie(pid)) await sleep(50);
  return 'killed';
}

function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') {
      // No such group (e.g. it was not started detached): fall back to the single process.
      try {
        process.kill(pid, signal);
        return true;
      } catch {
        return false;
      }
    }
    throw err;
  }
}

/**
 * A child of *this* process that has exited stays a zombie until reaped, and still answers
 * signal 0. Node reaps its children itself, but only on its event loop, so also accept the
 * zombie state as "exited" (Linux only; elsewhere this is always false).
 */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** Opens a TCP connection and closes it; resolves true if the port accepted it in time. */
export function tcpConnectable(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, host, () => done(true));
  });
}

/** The last `lines` lines of a log file ('' when it does not exist yet). */
export function logTail(file: string, lines = 40): string {
  try {
    // Read at most the last 64 KiB: Kafka's log can grow large over a long-lived stack.
    const size = statSync(file).size;
    const fd = openSync(file, 'r');
    try {
      const length = Math.min(size, 64 * 1024);
      const buf = Buffer.alloc(length);
      readSync(fd, buf, 0, length, size - length);
      return buf.toString('utf8').split('\n').slice(-lines).join('\n');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}

/**
 * Polls `check` until it returns true or `timeoutMs` passes. `check` may throw; the last
 * error is kept for the timeout message. `abortIf` lets a caller stop early, e.g. when the
 * service process has already died and waiting longer is pointless.
 */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  opts: { timeoutMs: number; intervalMs?: number; abortIf?: () => string | undefined },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    const abortReason = opts.abortIf?.();
    if (abortReason) throw new Error(`${what}: ${abortReason}`);
    if (Date.now() >= deadline) {
      const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`${what}: not healthy after ${opts.timeoutMs} ms${detail}`);
    }
    await sleep(opts.intervalMs ?? 250);
  }
}

/**
 * Runs `fn` while holding `<dir>/lock`, a file created exclusively that holds the owner's pid,
 * so two processes (two terminals, the CLI and a test run) never start, stop or install at the
 * same time. A lock whose owner is dead is stale and taken over.
 */
export async function withFileLock<T>(dir: string, waitMs: number, log: (l: string) => void, fn: () => Promise<T>): Promise<T> {
  mkdirSync(dir, { recursive: true });
  const lock = join(dir, 'lock');
  const deadline = Date.now() + waitMs;
  let announced = false;
  for (;;) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(readFileSync(lock, 'utf8').trim() || NaN);
      if (!Number.isInteger(owner) || !isAlive(owner)) {
        rmSync(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`stack: ${lock} is held by pid ${owner} for too long`);
      if (!announced) log(`stack: waiting for pid ${owner}, which holds ${lock}`);
      announced = true;
      await sleep(250);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}
