/**
 * Micro-benchmark of the `set-document` script (src/adapters/redis/lua/set-document.lua): 20,000
 * documents in pipelines of 2,000, each a ~1.3 KB document of a new version over the last, one
 * per script run (as on a Redis Cluster) and 200 per run (one server), reporting Redis' CPU
 * (`INFO cpu`) per document beside a plain `SET` of the same documents, so two trees can be
 * compared:
 *
 *   npx tsx bench/micro/set-document.ts                       # this checkout, the local stack's Redis
 *   ROOT=/path/to/other/checkout npx tsx bench/micro/set-document.ts
 *
 * (The script takes two keys per document since its tombstone marker: a ROOT before that commit
 * runs with one key per document, and this file of its own tree.)
 *
 * PINRICH_REDIS_URL picks another Redis; the run's keys are deleted at the end.
 */
import { Redis as IORedis } from 'ioredis';
import { benchStack, REPO_ROOT, redisCpuSeconds, unlinkByPrefix } from '../lib.js';

const ROOT = process.env.ROOT ?? REPO_ROOT;
const url = process.env.PINRICH_REDIS_URL ?? (await benchStack(() => {})).redisUrl;
const { withScripts } = (await import(`${ROOT}/src/adapters/redis/lua.ts`)) as typeof import('../../src/adapters/redis/lua.js');
const redis = withScripts(new IORedis(url) as never);
const prefix = `micro-${Date.now()}:`;
const PINS = 2_000;
const ROUNDS = 10;
const text = 'Summer outfit ideas, linen dresses and sandals for the beach. '.repeat(16);
const doc = (pin: number, version: number) =>
  JSON.stringify({ schema: 'enriched_document', schema_version: 1, pin_id: `pin-${pin}`, pin_text: text, content_hash: 'h'.repeat(64), version, updated_at: new Date(1_800_000_000_000 + version).toISOString() });
const redisCpu = () => redisCpuSeconds(redis);
async function measure(name: string, add: (pipe: ReturnType<typeof redis.pipeline>, pin: number, version: number) => void): Promise<void> {
  const run = async (v: number) => {
    const pipe = redis.pipeline();
    for (let p = 0; p < PINS; p++) add(pipe, p, v);
    await pipe.exec();
  };
  await run(0); // warm-up (and the first version)
  const before = await redisCpu();
  for (let v = 1; v <= ROUNDS; v++) await run(v);
  const us = (((await redisCpu()) - before) * 1e6) / (ROUNDS * PINS);
  console.log(`${name}: ${us.toFixed(1)} µs of Redis CPU per document (${(doc(0, 1).length / 1024).toFixed(1)} KB document)`);
}
const setDocument = (pipe: ReturnType<typeof redis.pipeline>, ...args: unknown[]) => (pipe as unknown as Record<string, (...a: unknown[]) => void>).pinrichSetDocument!(...args);
// Two keys per document: the document and its tombstone marker (the script's KEYS layout).
const keysOf = (p: number) => [`${prefix}doc:{${p}}`, `${prefix}doc-deleted:{${p}}`];
await measure('set-document, one per call (a cluster)', (pipe, p, v) => setDocument(pipe, 2, ...keysOf(p), doc(p, v + 1), v + 1));
// 200 per call, as the enrich store sends them on one server (the call goes with its last pin).
await measure('set-document, 200 per call', (pipe, p, v) => {
  if (p % 200 !== 199) return;
  const pins = Array.from({ length: 200 }, (_, i) => p - 199 + i);
  setDocument(pipe, 400, ...pins.flatMap(keysOf), ...pins.flatMap((q) => [doc(q, v + 1), v + 1]));
});
await measure('plain SET', (pipe, p, v) => pipe.set(`${prefix}set:${p}`, doc(p, v + 1)));
await unlinkByPrefix(redis, prefix);
redis.disconnect();
