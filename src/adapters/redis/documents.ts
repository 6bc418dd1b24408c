/**
 * The published enriched documents on Redis, as the score worker and `labels export` read them
 * (the DocumentReader port of stages/score/ports.ts). The enrich state store writes them; this
 * adapter only reads. One key per pin (`keys.document`), each in its own cluster slot: many are
 * read as single-key GETs that ioredis pipelines, never as one cross-slot MGET.
 */
import type { Redis } from './client.js';
import type { DocumentReader } from '../../stages/score/ports.js';
import type { RedisKeys } from './keys.js';

export function createRedisDocumentReader(redis: Redis, keys: RedisKeys): DocumentReader {
  return {
    getDocument: (pinId) => redis.get(keys.document(pinId)),
    getDocuments: (pinIds) => Promise.all(pinIds.map((id) => redis.get(keys.document(id)))),
    async stateReady() {
      return (await redis.exists(keys.enrich.stateMarker())) === 1;
    },
  };
}
