/**
 * Scale-out on a Redis Cluster, against a clean run as the other fault cases are: the whole
 * pipeline as worker processes on the stack's 3-master Redis Cluster (PINRICH_REDIS_CLUSTER),
 * 4 partitions so that 3 enrich instances all own some, and
 * - enrich as 3 instances while instances are added and removed mid-stream (rebalances under
 *   load) and one is SIGKILLed;
 * - a zombie owner: an enrich instance that owns partitions frozen (SIGSTOP) past the session
 *   timeout while its partitions move, then resumed (SIGCONT);
 * - one master of a private cluster restarted empty: the loss is detected (nothing published from
 *   partial state), `pinrich enrich rebuild` repairs it, the run continues.
 * Every case must end with exactly the clean run's result (fleet.ts `compare`), and no pin's
 * document version may go backwards on pins.enriched (read committed, as every reader must).
 */
import { spawn } from 'node:child_process';
import { AssignerProtocol } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisFromConfig } from '../../src/adapters/redis/client.js';
import { redisKeys } from '../../src/adapters/redis/keys.js';
import { topics as topicNames, type Config } from '../../src/config.js';
import { startModelServer, type ModelServer } from '../../src/model-server/server.js';
import { stack, testKafka } from '../support/harness.js';
import { useStackS3Credentials } from '../support/labels.js';
import {
  clusterRedisEnv,
  compare,
  faultEnv,
  makeInput,
  readAll,
  REPO,
  runPipeline,
  sleep,
  startPrivateRedisCluster,
  versionsGoingBack,
  type Fleet,
  type Input,
  logDigest,
  type Outcome,
  type WorkerProc,
} from './support/fleet.js';

let server: ModelServer;
let input: Input;
let clean: Outcome;

/** A run on the stack's Redis Cluster (or `urls`), 4 partitions. */
const clusterEnv = (over: Record<string, string> = {}, urls = stack().redisCluster ?? []) =>
  faultEnv(server.baseUrl, { ...clusterRedisEnv(urls), PINRICH_TOPIC_PARTITIONS: '4', ...over });

beforeAll(async () => {
  if (!stack().redisCluster?.length) throw new Error('the fault suite needs the stack Redis Cluster (test/global-setup.ts starts it)');
  useStackS3Credentials(stack());
  server = await startModelServer({ defaults: { latencyMs: 20 } });
  input = makeInput();
  const run = await runPipeline(clusterEnv(), input);
  clean = run.outcome;
  console.log(`[faults/cluster] clean run on the Redis Cluster: ${clean.docs.size} documents, ${clean.labels.size} labelled pairs, ${clean.dump.rows} dump rows, ${(run.ms / 1000).toFixed(0)} s`);
  expect(clean.labels.size).toBe(input.pairs.length);
  expect(clean.dump).toEqual({ rows: clean.labelRecords, unique: clean.labelRecords, missing: 0, extra: 0 });
  expect([...clean.docs.values()].filter((d) => d !== null).length).toBeGreaterThan(80);
});

afterAll(async () => {
  await server?.close();
});

async function expectSameAsCleanAndMonotonic(what: string, run: { config: Config; outcome: Outcome; ms: number; fleet: Fleet }): Promise<void> {
  const diffs = compare(clean, run.outcome);
  const back = versionsGoingBack(await readAll(run.config, topicNames(run.config).enriched));
  console.log(`[faults/cluster] ${what}: ${diffs.length ? `${diffs.length} differences` : 'same as the clean run'}, ${back.length} versions going back, ${(run.ms / 1000).toFixed(0)} s`);
  if (diffs.length || back.length) console.log(`[faults/cluster] ${what}: the workers' warnings and errors:\n${logDigest(run.fleet)}`);
  expect(diffs, diffs.join('\n')).toEqual([]);
  expect(back, back.join('\n')).toEqual([]);
}

/** Partitions (of every topic) each member of `group` owns, by Kafka client id. */
async function assignment(config: Config, group: string): Promise<Map<string, number>> {
  const admin = testKafka(config).admin();
  await admin.connect();
  try {
    const { groups } = await admin.describeGroups([group]);
    const out = new Map<string, number>();
    for (const m of groups[0]?.members ?? []) {
      const a = AssignerProtocol.MemberAssignment.decode(m.memberAssignment);
      const n = Object.values(a?.assignment ?? {}).reduce((s, ps) => s + ps.length, 0);
      out.set(m.clientId, (out.get(m.clientId) ?? 0) + n);
    }
    return out;
  } finally {
    await admin.disconnect();
  }
}

/** Waits until the instance started with `tag` owns at least one partition of the group. */
async function untilOwns(config: Config, tag: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const a = await assignment(config, `${config.groupPrefix}.enrich`).catch(() => new Map<string, number>());
    if ([...a].some(([client, n]) => client.endsWith(`-${tag}`) && n > 0)) return;
    if (Date.now() > end) throw new Error(`enrich instance ${tag} owns no partition after ${timeoutMs} ms: ${JSON.stringify([...a])}`);
    await sleep(250);
  }
}

/** End offset of every partition of pins.enriched. */
async function enrichedEnds(config: Config): Promise<Map<number, string>> {
  const admin = testKafka(config).admin();
  await admin.connect();
  try {
    return new Map((await admin.fetchTopicOffsets(topicNames(config).enriched)).map((p) => [p.partition, p.high]));
  } finally {
    await admin.disconnect();
  }
}

/** Records on pins.enriched so far. */
const enrichedCount = async (config: Config) => (await readAll(config, topicNames(config).enriched).catch(() => [])).length;

function rebuild(env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/pinrich.js', 'enrich', 'rebuild'], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`enrich rebuild exited ${code}:\n${out}`))));
  });
}

describe('fault suite on a Redis Cluster: enrich scaled out, compared with a clean run', () => {
  it('3 enrich instances; instances added and removed mid-stream, one SIGKILLed', async () => {
    const events: string[] = [];
    const run = await runPipeline(clusterEnv(), input, {
      phase1: async ({ config, fleet }) => {
        // Three instances while pins and engagement stream in.
        const b = fleet.add('enrich', 'b');
        const c = fleet.add('enrich', 'c');
        await untilOwns(config, 'b');
        await untilOwns(config, 'c');
        events.push('3 instances');
        await sleep(1_500);
        const d = fleet.add('enrich', 'd'); // scale out to 4 (one per partition)
        await untilOwns(config, 'd');
        events.push('added d');
        await fleet.remove(b, 'SIGTERM'); // scale in: drains and leaves the group
        events.push('removed b');
        await sleep(1_000);
        await fleet.remove(c, 'SIGKILL'); // crash: its partitions move after the session timeout
        events.push('killed c');
        fleet.add('enrich', 'e');
        events.push('added e');
        void d;
      },
    });
    expect(events).toEqual(['3 instances', 'added d', 'removed b', 'killed c', 'added e']);
    expect(run.fleet.kills).toBe(1);
    await expectSameAsCleanAndMonotonic('3 enrich instances with rebalances and a SIGKILL', run);
  });

  // Once resumed, the zombie still holds documents it built before it froze. Its state writes
  // are fenced by the owner epoch (Redis), its publishing by its partitions' transactional ids
  // (Kafka: the new owner's InitProducerId), its `doc:{pin}` writes by version (set-document).
  // Without the Kafka fence 30 pins ended with an early, stale document and 47 versions went back.
  it('a zombie enrich owner (SIGSTOP past the session timeout, then SIGCONT) writes no stale state and publishes no older document', async () => {
    let zombie: WorkerProc | undefined;
    let fleetRef: Fleet | undefined;
    try {
      const run = await runPipeline(clusterEnv(), input, {
        // Engagement keeps arriving through the freeze: the other owner must have later records of
        // the zombie's partitions to publish while it is frozen (with the default 6 s, a slow
        // machine's two new instances joined after the input had ended: nothing to move on to).
        engagementSpreadMs: 24_000,
        phase1: async ({ config, fleet }) => {
          fleetRef = fleet;
          fleet.add('enrich', 'y');
          zombie = fleet.add('enrich', 'z');
          await untilOwns(config, 'z');
          // Freeze it while documents are flowing and it holds partitions with work in flight.
          for (let i = 0; i < 100 && (await enrichedCount(config)) < 10; i++) await sleep(200);
          zombie.child.kill('SIGSTOP');
          // Past the session timeout (6 s): the group moves its partitions to the others, which
          // carry on with later records of those partitions meanwhile.
          const before = await enrichedCount(config);
          await sleep(14_000);
          const owners = await assignment(config, `${config.groupPrefix}.enrich`);
          expect([...owners.keys()].some((c) => c.endsWith('-z'))).toBe(false);
          expect(await enrichedCount(config)).toBeGreaterThan(before);
          // Resumed: it still believes it owns its old partitions for a moment, with a batch in
          // hand. Whatever it writes or publishes now must be fenced.
          zombie.child.kill('SIGCONT');
          await sleep(5_000);
        },
      });
      await expectSameAsCleanAndMonotonic('zombie enrich owner', run);
    } finally {
      zombie?.child.kill('SIGCONT');
      void fleetRef;
    }
  });

  // The restarted master lost the meta hash of some partitions: the fenced scripts check the
  // state (`ready`, an epoch at all) before the epoch's value, so the worker reports `state is
  // missing` and holds those partitions (the others go on) instead of taking the loss for another
  // owner's claim; after the rebuild it claims them again with its own epoch and continues.
  it('one master of the cluster restarted empty: nothing published from partial state, `enrich rebuild`, then the clean result', async () => {
    const cluster = await startPrivateRedisCluster();
    try {
      const env = clusterEnv({}, cluster.urls);
      const run = await runPipeline(env, input, {
        phase1: async ({ config, fleet }) => {
          for (let i = 0; i < 100 && (await enrichedCount(config)) < 10; i++) await sleep(200);
          // The master that holds partition 0's enrich state (its hash tag's slot), and every
          // partition whose state lives there too (pins.enriched is co-partitioned with the inputs).
          const redis = createRedisFromConfig(config);
          const keys = redisKeys(config.redisKeyPrefix);
          let victim: number;
          const lost: number[] = [];
          try {
            const slots = await redis.cluster('SLOTS');
            const portOf = async (key: string) => {
              const slot = Number(await redis.cluster('KEYSLOT', key));
              return slots.find(([lo, hi]) => slot >= lo && slot <= hi)![2]![1];
            };
            const port = await portOf(keys.enrich.dirty(0));
            victim = cluster.nodes.findIndex((n) => n.port === port);
            for (let p = 0; p < config.topicPartitions; p++) if ((await portOf(keys.enrich.dirty(p))) === port) lost.push(p);
          } finally {
            redis.disconnect();
          }
          await cluster.restart(victim);
          // The enrich worker must not publish from the partial state: nothing new on the
          // partitions whose state was lost, for 4 s (the others' state is intact: they may go on).
          await sleep(3_000);
          const before = await enrichedEnds(config);
          await sleep(4_000);
          const after = await enrichedEnds(config);
          for (const p of lost) expect(after.get(p), `pins.enriched partition ${p}`).toBe(before.get(p));
          // Detected: the worker says so (once its client is back on the restarted node).
          for (let i = 0; i < 150 && !fleet.procs.get('enrich')!.log().includes('state is missing'); i++) await sleep(200);
          expect(fleet.procs.get('enrich')!.log()).toContain('state is missing');
          expect(await rebuild(env)).toContain('rebuild: done');
        },
      });
      await expectSameAsCleanAndMonotonic('a cluster master restarted empty + rebuild', run);
    } finally {
      await cluster.stop();
    }
  });
});
