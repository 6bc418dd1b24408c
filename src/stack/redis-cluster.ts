/**
 * A local Redis Cluster: three masters, no replicas, started from the same Debian `redis-server`
 * binary as the single Redis and joined with `redis-cli --cluster create` (redis-cli comes with
 * Debian's redis-tools, a dependency of redis-server).
 *
 * Each node runs without persistence (`--save ''`, no AOF), like the single Redis: a restarted
 * node comes back EMPTY. It keeps its `nodes.conf` (`cluster-config-file`, the node's identity,
 * its slots and the cluster's epoch), so a restart models what production sees when a master
 * without persistence restarts: the node rejoins the cluster serving its old slots with no data.
 * That is the loss pinrich must detect (see the enrich state marker), not hide.
 *
 * The cluster is optional in the stack (`pinrich stack up --redis-cluster`,
 * PINRICH_STACK_REDIS_CLUSTER=1, and the test global setup): the single Redis stays the default.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, spawnDetached, waitUntil } from './process.js';

/**
 * Substring of a cluster node's command line: redis-server rewrites its argv to
 * "redis-server 127.0.0.1:<port> [cluster]" when cluster mode is on, which also tells a cluster
 * node from the single Redis (whose marker is plain "redis-server").
 */
export const REDIS_CLUSTER_MARKER = '[cluster]';

/** Masters in the local cluster: the smallest Redis Cluster that `redis-cli --cluster create` accepts. */
export const REDIS_CLUSTER_MASTERS = 3;

/** One node as started: its pid (= process group), port, data directory and log file. */
export interface ClusterNode {
  pid: number;
  port: number;
  dir: string;
  logFile: string;
}

/**
 * The command line of a node. The same arguments restart it with its identity (nodes.conf in
 * `dir`) and without its data. A short node timeout makes a stopped master fail fast (tests).
 */
export function clusterNodeArgs(dir: string, port: number): string[] {
  return [
    '--port', String(port), '--bind', '127.0.0.1',
    '--cluster-enabled', 'yes',
    '--cluster-config-file', join(dir, 'nodes.conf'),
    '--cluster-node-timeout', '3000',
    // No replicas: a master that is down leaves its slots uncovered. Let the other masters keep
    // serving their own slots meanwhile (reads and writes of the lost slots fail and are retried).
    '--cluster-require-full-coverage', 'no',
    '--save', '', '--appendonly', 'no', '--daemonize', 'no',
    '--dir', dir,
  ];
}

/** Starts one node detached (its own process group) on `port`, in `dir` (kept: nodes.conf). */
export function spawnClusterNode(dir: string, port: number): ClusterNode {
  mkdirSync(dir, { recursive: true });
  const logFile = join(dir, 'redis.log');
  const pid = spawnDetached({ command: 'redis-server', args: clusterNodeArgs(dir, port), logFile });
  return { pid, port, dir, logFile };
}

/**
 * Starts {@link REDIS_CLUSTER_MASTERS} nodes under `dir` (wiped first) on free ports. They are
 * not a cluster yet: {@link createCluster} joins them. `onSpawn` sees each node as soon as it
 * exists, so the caller can record it for clean-up before anything can fail.
 */
export async function startClusterNodes(dir: string, onSpawn: (n: ClusterNode) => void = () => {}): Promise<ClusterNode[]> {
  rmSync(dir, { recursive: true, force: true });
  const nodes: ClusterNode[] = [];
  for (let i = 0; i < REDIS_CLUSTER_MASTERS; i++) {
    const node = spawnClusterNode(join(dir, `node-${i}`), await freePort());
    nodes.push(node);
    onSpawn(node);
  }
  return nodes;
}

/**
 * Joins freshly started nodes into one cluster (slots split evenly, no replicas) and waits until
 * every node reports `cluster_state:ok`.
 */
export async function createCluster(ports: readonly number[], timeoutMs = 30_000): Promise<void> {
  await waitUntil('redis cluster nodes', async () => (await Promise.all(ports.map((p) => clusterInfo(p).then(() => true, () => false)))).every(Boolean), {
    timeoutMs,
    intervalMs: 100,
  });
  const args = ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'];
  try {
    await promisify(execFile)('redis-cli', args, { timeout: timeoutMs });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`redis-cli ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`, { cause: err });
  }
  await waitUntil('redis cluster_state:ok on every node', () => clusterOk(ports), { timeoutMs, intervalMs: 100 });
}

/** True when every node answers and reports `cluster_state:ok` with all 16384 slots assigned. */
export async function clusterOk(ports: readonly number[]): Promise<boolean> {
  const infos = await Promise.all(ports.map((p) => clusterInfo(p).catch(() => '')));
  return infos.every((i) => /^cluster_state:ok\r?$/m.test(i) && /^cluster_slots_assigned:16384\r?$/m.test(i));
}

/** Seed-node URLs of a local cluster, as PINRICH_REDIS_URL takes them with PINRICH_REDIS_CLUSTER=true. */
export function clusterSeedUrls(ports: readonly number[]): string[] {
  return ports.map((p) => `redis://127.0.0.1:${p}`);
}

/**
 * `CLUSTER INFO` of the node on `port` over a raw RESP connection (like redisPing: no Redis
 * client in the launcher). Rejects when the node does not answer in time or answers an error.
 */
export function clusterInfo(port: number, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    let reply = Buffer.alloc(0);
    const done = (err: Error | undefined, value = '') => {
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    socket.setTimeout(timeoutMs, () => done(new Error(`redis 127.0.0.1:${port}: no answer to CLUSTER INFO in ${timeoutMs} ms`)));
    socket.once('error', (err) => done(err));
    socket.connect(port, '127.0.0.1', () => socket.write('*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n'));
    socket.on('data', (d: Buffer) => {
      reply = Buffer.concat([reply, d]);
      const text = reply.toString('utf8');
      if (text.startsWith('-')) return done(new Error(`redis 127.0.0.1:${port}: ${text.trim()}`));
      // A bulk string: "$<length>\r\n<payload>\r\n".
      const m = /^\$(\d+)\r\n/.exec(text);
      if (m && reply.length >= m[0].length + Number(m[1])) done(undefined, reply.subarray(m[0].length, m[0].length + Number(m[1])).toString('utf8'));
    });
  });
}
