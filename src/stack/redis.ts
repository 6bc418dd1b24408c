/**
 * Redis as a local process (Debian's redis-server), without persistence: the stack is for
 * tests and demos, and a restart should start clean.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { freePort, spawnDetached } from './process.js';

/** Substring of redis-server's command line (it rewrites argv to "redis-server 127.0.0.1:<port>"). */
export const REDIS_MARKER = 'redis-server';

/** Starts redis-server detached on a free port; returns its pid, port and log file. */
export async function startRedis(dir: string): Promise<{ pid: number; port: number; logFile: string }> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const logFile = join(dir, 'redis.log');
  const pid = spawnDetached({
    command: 'redis-server',
    args: [
      '--port', String(port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no', '--daemonize', 'no',
      // Working dir for any file redis might still write (none with the settings above).
      '--dir', dir,
    ],
    logFile,
  });
  return { pid, port, logFile };
}

/**
 * Sends PING (after AUTH, when the URL carries credentials) over a raw RESP connection and
 * resolves true on +PONG. A raw socket keeps the launcher free of a Redis client dependency
 * and works for `redis://` and `rediss://` URLs alike.
 */
export function redisPing(url: string, timeoutMs = 2_000): Promise<boolean> {
  const u = new URL(url);
  const host = u.hostname || '127.0.0.1';
  const port = Number(u.port || 6379);
  const commands: string[][] = [];
  if (u.password) {
    const password = decodeURIComponent(u.password);
    commands.push(u.username ? ['AUTH', decodeURIComponent(u.username), password] : ['AUTH', password]);
  }
  commands.push(['PING']);
  const payload = commands
    .map((c) => `*${c.length}\r\n` + c.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''))
    .join('');

  return new Promise((resolve) => {
    const socket: Socket =
      u.protocol === 'rediss:' ? tlsConnect({ host, port, servername: host }) : new Socket().connect(port, host);
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once(u.protocol === 'rediss:' ? 'secureConnect' : 'connect', () => socket.write(payload));
    socket.on('data', (d: Buffer) => {
      reply += d.toString('utf8');
      if (reply.startsWith('-')) done(false); // e.g. -NOAUTH, -WRONGPASS, -LOADING
      else if (reply.includes('+PONG\r\n')) done(true);
    });
  });
}
