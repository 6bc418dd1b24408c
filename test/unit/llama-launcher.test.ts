/**
 * The llama-server launcher's cache discipline (src/stack/llama.ts), without building anything:
 * cached files are used as they are, and the build lock is exclusive but never held by the dead.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { acquireLock, ensureLlamaServer, llamaBuildFlavor, llamaCacheRoot, llamaLocation, startLlamaServer } from '../../src/stack/llama.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'pinrich-llama-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('llama-server launcher', () => {
  it('caches under PINRICH_CACHE_DIR (default ~/.cache/pinrich), beside the Kafka jars', () => {
    expect(llamaCacheRoot({ PINRICH_CACHE_DIR: '/c' })).toBe('/c');
    expect(llamaCacheRoot({})).toMatch(/\.cache\/pinrich$/);
    expect(llamaLocation('/c')).toEqual({
      serverBinary: `/c/llama.cpp-11434.0.0-${llamaBuildFlavor().name}/bin/llama-server`,
      modelFile: '/c/models/SmolLM2-135M-Instruct-Q4_1.gguf',
    });
  });

  it('builds for x86-64-v3 on x86-64, never native and never AMX (faults in VMs without the tile state)', () => {
    const x64 = llamaBuildFlavor('x64');
    expect(x64.name).toBe('x86-64-v3');
    expect(x64.cmakeFlags).toContain('-DGGML_NATIVE=OFF');
    for (const f of ['AVX2', 'FMA', 'F16C']) expect(x64.cmakeFlags).toContain(`-DGGML_${f}=ON`);
    for (const f of ['AVX512', 'AMX_TILE', 'AMX_INT8', 'AMX_BF16']) expect(x64.cmakeFlags).toContain(`-DGGML_${f}=OFF`);
    // Other architectures stay native, under their own cache name: a binary is never reused across flavors.
    expect(llamaBuildFlavor('arm64')).toEqual({ name: 'native', cmakeFlags: ['-DGGML_NATIVE=ON'] });
  });

  it('uses a complete cache as it is: no build, no download, no lock', async () => {
    const root = tmp();
    const loc = llamaLocation(root);
    for (const f of [loc.serverBinary, loc.modelFile]) {
      mkdirSync(dirname(f), { recursive: true });
      writeFileSync(f, 'x');
    }
    const lines: string[] = [];
    expect(await ensureLlamaServer({ cacheRoot: root, log: (l) => lines.push(l) })).toEqual(loc);
    expect(lines).toEqual([]);
    expect(existsSync(join(root, 'llama.lock'))).toBe(false);
  });

  it('takes over the lock of a dead owner at once', async () => {
    const lock = join(tmp(), 'llama.lock');
    mkdirSync(lock);
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => dead.on('exit', r));
    writeFileSync(join(lock, 'pid'), String(dead.pid));
    const lines: string[] = [];
    const release = await acquireLock(lock, 5_000, (l) => lines.push(l));
    expect(readFileSync(join(lock, 'pid'), 'utf8')).toBe(String(process.pid));
    expect(lines.join('\n')).toMatch(/stale lock of dead process/);
    release();
    expect(existsSync(lock)).toBe(false);
  });

  it('waits while a live process holds the lock, and gets it once released', async () => {
    const lock = join(tmp(), 'llama.lock');
    const first = await acquireLock(lock, 5_000, () => {});
    let second = false;
    const waiting = acquireLock(lock, 10_000, () => {}).then((release) => {
      second = true;
      return release;
    });
    await new Promise((r) => setTimeout(r, 1_500));
    expect(second).toBe(false);
    first();
    const release = await waiting;
    expect(second).toBe(true);
    release();
  });

  it('names the signal when the server crashes while starting, with its log', async () => {
    const dir = tmp();
    const serverBinary = join(dir, 'llama-server');
    // What the AMX build did: a line of log, then a fault while the model warms up.
    writeFileSync(serverBinary, '#!/bin/sh\necho "init: llama threadpool init"\nkill -SEGV $$\n', { mode: 0o755 });
    const started = startLlamaServer({
      location: { serverBinary, modelFile: join(dir, 'model.gguf') },
      logFile: join(dir, 'server.log'),
      healthTimeoutMs: 20_000,
    });
    await expect(started).rejects.toThrow(/exited during start-up \(killed by SIGSEGV\):\n.*threadpool init/);
  });
});
