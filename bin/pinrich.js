#!/usr/bin/env node
// The `pinrich` command. It runs the TypeScript sources directly through tsx (no build step),
// in a node started with pinrich's heap settings (bin/heap.js): when they are not in effect yet
// (the usual `npx pinrich ...` or `node bin/pinrich.js ...`), this process relaunches node with
// them and stands in for it: same stdio and environment, signals forwarded, same exit.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { heapFlags } from './heap.js';

const RELAUNCHED = 'PINRICH_RELAUNCHED';

function relaunch(flags) {
  // Its own process group, so a terminal's Ctrl-C reaches it once (forwarded from here), not
  // twice (a second SIGINT would cut the graceful drain short). The IPC channel is only there
  // so that the child notices when this process dies, even by SIGKILL (see below).
  const child = spawn(process.execPath, [...process.execArgv, ...flags, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, [RELAUNCHED]: '1' },
    detached: true,
  });
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('error', (err) => {
    process.stderr.write(`pinrich: cannot start node: ${err.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (!signal) process.exit(code ?? 1);
    // Die of the same signal, so the caller sees what the child saw.
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  });
}

let flags;
try {
  flags = heapFlags();
} catch (err) {
  process.stderr.write(`pinrich: ${err.message}\n`);
  process.exit(2);
}
if (flags.length) {
  relaunch(flags);
} else {
  if (process.env[RELAUNCHED] && process.channel) {
    delete process.env[RELAUNCHED];
    // The launcher gone (killed, even by SIGKILL: a crash test, the OOM killer) means this
    // process must go too, at once, as it would have without the relaunch. Unref'd: the
    // channel alone does not keep the process alive.
    process.channel.unref();
    process.on('disconnect', () => process.kill(process.pid, 'SIGKILL'));
  }
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli.ts');
}
