/**
 * First-use installation of the system programs the local stack runs: Debian's redis-server
 * (with redis-cli, from redis-tools), Java 17+ for the Kafka broker, and Maven to resolve the
 * Kafka jars. The quick start promises `npm ci && npm run demo` on a machine that has Node,
 * Java and Maven; the launcher obtains the rest itself, as it obtains the Kafka jars.
 *
 * Policy: a missing program is installed with apt-get only when apt-get exists and we may use
 * it without asking for a password (we are root, or `sudo -n` works), and only after saying so
 * in one line. Otherwise nothing is installed and the error names the exact command to run.
 * Installs are serialised across processes by a lock in the cache directory (apt/dpkg would
 * refuse a second concurrent install anyway, with a less helpful message).
 *
 * Every side effect goes through a {@link SystemRunner}, so the decision logic is tested
 * without running apt-get.
 */
import { execFile, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { withFileLock } from './process.js';

/** The side effects the installer needs; {@link systemRunner} is the real one. */
export interface SystemRunner {
  /** True when `command` is an executable file on PATH. */
  onPath(command: string): boolean;
  /** Effective user id (0 = root). */
  uid(): number;
  /** Exit status 0? Output is discarded. Never rejects. */
  succeeds(command: string, args: string[]): Promise<boolean>;
  /** stdout + stderr of a command, or undefined when it cannot be run. Never rejects. */
  output(command: string, args: string[]): Promise<string | undefined>;
  /** Runs a command with its output passed through to ours; rejects on a non-zero exit. */
  run(command: string, args: string[], env: Record<string, string>): Promise<void>;
}

/** The real {@link SystemRunner}: PATH lookup, child processes, process.getuid(). */
export const systemRunner: SystemRunner = {
  onPath(command) {
    for (const dir of (process.env.PATH ?? '').split(delimiter)) {
      if (!dir) continue;
      try {
        accessSync(join(dir, command), constants.X_OK);
        return true;
      } catch {
        // not in this directory; try the next
      }
    }
    return false;
  },
  uid: () => process.getuid?.() ?? -1,
  succeeds: (command, args) =>
    new Promise((resolve) => {
      const child = spawn(command, args, { stdio: 'ignore' });
      child.on('error', () => resolve(false));
      child.on('exit', (code) => resolve(code === 0));
    }),
  output: (command, args) =>
    new Promise((resolve) => {
      execFile(command, args, { timeout: 30_000 }, (err, stdout, stderr) => {
        if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') resolve(undefined);
        else resolve(`${stdout}${stderr}`);
      });
    }),
  run: (command, args, env) =>
    new Promise((resolve, reject) => {
      // Output goes to our stderr: stdout of `pinrich stack up` is its JSON answer.
      const child = spawn(command, args, { stdio: ['ignore', process.stderr, process.stderr], env: { ...process.env, ...env } });
      child.on('error', (err) => reject(new Error(`cannot run ${command}: ${err.message}`)));
      child.on('exit', (code, signal) =>
        code === 0 ? resolve() : reject(new Error(`${[command, ...args].join(' ')} failed (${signal ?? `exit code ${code}`})`)),
      );
    }),
};

/** One program the stack needs, and the Debian package that provides it. */
export interface SystemTool {
  /** What the user reads, e.g. "redis-server" or "Java 17+". */
  label: string;
  /** Debian package to install. */
  aptPackage: string;
  /** True when the program is present and good enough. */
  present(runner: SystemRunner): Promise<boolean>;
}

/** The Java major version `java -version` reports (1.8 -> 8), or undefined. */
export function javaMajorVersion(versionOutput: string): number | undefined {
  const m = /version "(\d+)(?:\.(\d+))?/.exec(versionOutput);
  if (!m) return undefined;
  const first = Number(m[1]);
  return first === 1 && m[2] ? Number(m[2]) : first;
}

const onPath = (command: string) => async (runner: SystemRunner) => runner.onPath(command);

/** redis-server, for the local Redis. */
export const REDIS_SERVER: SystemTool = { label: 'redis-server', aptPackage: 'redis-server', present: onPath('redis-server') };
/** redis-cli (Debian's redis-tools, which redis-server depends on), e.g. for `--cluster create`. */
export const REDIS_CLI: SystemTool = { label: 'redis-cli', aptPackage: 'redis-tools', present: onPath('redis-cli') };
/** Java 17+: Kafka 4.x brokers do not run on older JVMs. */
export const JAVA_17: SystemTool = {
  label: 'Java 17+',
  aptPackage: 'openjdk-17-jre-headless',
  present: async (runner) => {
    if (!runner.onPath('java')) return false;
    const major = javaMajorVersion((await runner.output('java', ['-version'])) ?? '');
    return major !== undefined && major >= 17;
  },
};
/** Maven, which resolves the Kafka jars from Maven Central on first use. */
export const MAVEN: SystemTool = { label: 'Maven', aptPackage: 'maven', present: onPath('mvn') };

/** Options of {@link ensureSystemTools}. */
export interface EnsureOptions {
  /** One line per decision ("installing …"); apt-get's own output goes to stderr. */
  log: (line: string) => void;
  /** Directory for the install lock, e.g. ~/.cache/pinrich. */
  lockDir: string;
  /** Default {@link systemRunner}. */
  runner?: SystemRunner;
}

const INSTALL_LOCK_WAIT_MS = 15 * 60_000; // a slow mirror may take minutes for a JRE

/**
 * Makes sure every tool in `tools` is present, installing the missing ones with apt-get when
 * that is possible without a password (see the module comment).
 *
 * @throws Error naming the missing programs and the exact command that installs them, when
 *   they are missing and cannot be installed here; or apt-get's failure.
 */
export async function ensureSystemTools(tools: readonly SystemTool[], opts: EnsureOptions): Promise<void> {
  const runner = opts.runner ?? systemRunner;
  const missing = async () => {
    const flags = await Promise.all(tools.map((t) => t.present(runner)));
    return tools.filter((_, i) => !flags[i]);
  };
  if ((await missing()).length === 0) return; // the common case: no lock, no child processes
  await withFileLock(join(opts.lockDir, 'install'), INSTALL_LOCK_WAIT_MS, opts.log, async () => {
    // Another process may have installed them while we waited for the lock.
    const absent = await missing();
    if (absent.length === 0) return;
    const packages = [...new Set(absent.map((t) => t.aptPackage))];
    const labels = absent.map((t) => t.label).join(', ');
    const installArgs = ['install', '-y', '-q', '--no-install-recommends', ...packages];
    const sudo = runner.uid() === 0 ? undefined : (await runner.succeeds('sudo', ['-n', 'true'])) ? 'sudo' : 'no';
    if (!runner.onPath('apt-get') || sudo === 'no') {
      const how = runner.onPath('apt-get')
        ? `sudo apt-get update && sudo apt-get ${installArgs.join(' ')}`
        : `install ${packages.length > 1 ? 'them' : 'it'} with your system's package manager (Debian/Ubuntu: apt-get ${installArgs.join(' ')})`;
      throw new Error(`stack: ${labels} not found on PATH, and pinrich cannot install ${absent.length > 1 ? 'them' : 'it'} here; run: ${how}`);
    }
    opts.log(`stack: ${labels} not found; installing Debian's ${packages.join(' ')} with apt-get (first use only)`);
    const env = { DEBIAN_FRONTEND: 'noninteractive' };
    // sudo drops the environment, so DEBIAN_FRONTEND goes through env(1) on its command line.
    const apt = (args: string[]) =>
      sudo ? runner.run('sudo', ['-n', 'env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', ...args], env) : runner.run('apt-get', args, env);
    await apt(['update', '-q']);
    await apt(installArgs);
    const still = await missing();
    if (still.length > 0) {
      throw new Error(`stack: apt-get installed ${packages.join(' ')} but ${still.map((t) => t.label).join(', ')} is still not usable on PATH`);
    }
  });
}

/**
 * redis-server and redis-cli, installed on first use. For every launcher that runs Redis
 * (the local stack, a local Redis Cluster).
 */
export function ensureRedisBinaries(opts: EnsureOptions): Promise<void> {
  return ensureSystemTools([REDIS_SERVER, REDIS_CLI], opts);
}
