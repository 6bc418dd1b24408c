/**
 * Micro-benchmark of one path of the enrich state: `applyBatch` (the apply-batch script and its
 * client side) on a fixed synthetic input — 20 flushes of 20,000 engagement events over 1,250
 * pins, distinct texts mostly — reporting the client's CPU, Redis' CPU (`INFO cpu`) and the wall
 * time per event. Deterministic input, so two trees can be compared where the full benchmark's
 * spread hides a few µs (bench/results/enrich-levers.md):
 *
 *   npx tsx bench/micro/apply-batch.ts                        # this checkout, the local stack's Redis
 *   ROOT=/path/to/other/checkout npx tsx bench/micro/apply-batch.ts
 *
 * PINRICH_REDIS_URL picks another Redis; the run's keys are deleted at the end.
 */
import { Redis as IORedis } from 'ioredis';
import { benchStack, REPO_ROOT, redisCpuSeconds, unlinkByPrefix } from '../lib.js';

const ROOT = process.env.ROOT ?? REPO_ROOT;
const url = process.env.PINRICH_REDIS_URL ?? (await benchStack(() => {})).redisUrl;
const { createRedisEnrichStore } = (await import(`${ROOT}/src/adapters/redis/enrich-state.ts`)) as typeof import('../../src/adapters/redis/enrich-state.js');
const redis = new IORedis(url);
const prefix = `micro-${Date.now()}:`;
const store = createRedisEnrichStore(redis as never, prefix, 600, false);
await store.markStateReady({ source: 'fresh', at: new Date().toISOString() }, [0]);
const { epoch } = await store.claimPartition(0);

const PINS = 1_250;
const EVENTS = 20_000;
const ROUNDS = 20;
const words = ['red', 'shoes', 'kitchen', 'ideas', 'summer', 'dress', 'garden', 'diy', 'recipes', 'wedding'];
let seq = 0;
type Batch = Parameters<typeof store.applyBatch>[0];
type Engagements = { op: 'engagements'; events: Array<{ event: number; kind: 'board' | 'query'; text: string }> };
function batch(round: number): Batch {
  const eventIds: string[] = [];
  const pins = new Map<string, Engagements>();
  for (let i = 0; i < EVENTS; i++) {
    const pin = `pin-${(i * 7919) % PINS}`;
    const event = eventIds.push(`ev-${seq++}`) - 1;
    const op = pins.get(pin) ?? pins.set(pin, { op: 'engagements', events: [] }).get(pin)!;
    op.events.push({ event, kind: i % 3 === 0 ? 'board' : 'query', text: `${words[i % 10]} ${words[(i * 3 + round) % 10]} ${i % 97}` });
  }
  return { partition: 0, epoch, requireReady: true, offsets: [{ topic: 't', next: String((round + 1) * EVENTS) }], eventIds, pins: [...pins].map(([pinId, op]) => ({ pinId, ops: [op] })) };
}
const redisCpu = () => redisCpuSeconds(redis);

const batches = Array.from({ length: ROUNDS + 2 }, (_, r) => batch(r));
for (const b of batches.slice(0, 2)) await store.applyBatch(b, Date.now()); // warm-up
const cpu0 = process.cpuUsage();
const redis0 = await redisCpu();
const t0 = performance.now();
for (const b of batches.slice(2)) await store.applyBatch(b, Date.now());
const cpu = process.cpuUsage(cpu0);
const wall = performance.now() - t0;
const redisSeconds = (await redisCpu()) - redis0;
const n = ROUNDS * EVENTS;
console.log(JSON.stringify({ root: ROOT, events: n, clientUsPerEvent: +((cpu.user + cpu.system) / n).toFixed(2), redisUsPerEvent: +((redisSeconds * 1e6) / n).toFixed(2), wallUsPerEvent: +((wall * 1000) / n).toFixed(2) }));
await unlinkByPrefix(redis, prefix);
redis.disconnect();
