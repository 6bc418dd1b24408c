/**
 * The one builder of every Redis key pinrich writes or reads. Production code and tests take
 * keys from here; nothing else spells a key out, so a layout change cannot silently break a
 * reader (the score worker, `labels export`) or a test.
 *
 * Redis Cluster: a Lua script or MULTI may only touch keys of one hash slot. Redis hashes only
 * the part of a key inside its first `{...}` (the hash tag), so:
 * - the enrich state of one input partition shares the tag `{p<N>}`: every pin of partition N,
 *   its dirty set and its partition metadata live in one slot, and one script can change many
 *   pins of a partition atomically (the enrich inputs are co-partitioned by pin id, so a pin's
 *   state belongs to exactly one partition);
 * - a published document is tagged by its pin (`{<pin id>}`): readers look documents up by pin
 *   id alone, without knowing partitions, and they spread over the whole cluster;
 * - cache entries and rate limits are single keys (each its own slot).
 *
 * The prefix (PINRICH_REDIS_PREFIX) must not contain `{` or `}`: it would become the hash tag.
 *
 * Layout (P = prefix, N = partition of the enrich inputs):
 *   P{pN}:pin:<id>          hash: pin (JSON), caption (JSON), etime, deleted, gen, engagements, ver, hash
 *   P{pN}:pin:<id>:boards   zset: folded board title -> saves
 *   P{pN}:pin:<id>:queries  zset: folded query -> search engagements
 *   P{pN}:pin:<id>:newq     set: folded queries not yet published as relevance pairs
 *   P{pN}:seen:<bucket>     set with TTL: engagement event ids seen in one time bucket of the
 *                           dedup horizon (the newest buckets together cover it)
 *   P{pN}:dirty             zset: pin id -> ms when it first changed since its last flush
 *   P{pN}:meta              hash: epoch (owner epoch, fences a zombie owner), ready (the state
 *                           of this partition is complete), o:<topic> (next input offset the
 *                           state covers: written atomically with the state)
 *   Pdoc:{<id>}             string: the last published enriched document (score, labels export)
 *   Pdoc-deleted:{<id>}     string with TTL: the version a tombstone ended (set-document refuses
 *                           a late write of an older document after it)
 *   Pstate:v2:epoch         string (JSON): the state marker (see stages/enrich/rebuild.ts); the
 *                           layout version is in its name, so state written by an older layout
 *                           reads as "missing" and is rebuilt rather than misread
 *   Pcap:<model>:<prompt version>:<image key>                  caption cache entry
 *   Plabel:<model>:<prompt version>:<params>:<prompt hash>     label cache entry
 *   Pratelimit:<vlm|teacher>:<model>                           shared rate-limit window
 */

/** The hash tag of partition `partition`'s enrich state. */
const partitionTag = (partition: number) => `{p${partition}}`;

export interface EnrichStateKeys {
  /** The hash of a pin's fields and bookkeeping. */
  pin(partition: number, pinId: string): string;
  boards(partition: number, pinId: string): string;
  queries(partition: number, pinId: string): string;
  newQueries(partition: number, pinId: string): string;
  /** Engagement event ids seen in dedup time bucket `bucket` (pins of a partition share the slot). */
  seen(partition: number, bucket: number): string;
  /** Owner epoch, readiness and covered input offsets of a partition. */
  meta(partition: number): string;
  /** Pins of a partition changed since their last flush. */
  dirty(partition: number): string;
  /** The state marker (see stages/enrich/rebuild.ts). */
  stateMarker(): string;
}

export interface RedisKeys {
  readonly prefix: string;
  readonly enrich: EnrichStateKeys;
  /** The last published enriched document of a pin. */
  document(pinId: string): string;
  /** The version the pin's last tombstone ended (in the document's slot). */
  deletedDocument(pinId: string): string;
  captionCache(model: string, promptVersion: string, imageKey: string): string;
  labelCache(k: { model: string; promptVersion: string; params: string; promptHash: string }): string;
  rateLimit(kind: 'vlm' | 'teacher', model: string): string;
}

/** The keys under `prefix` (PINRICH_REDIS_PREFIX). */
export function redisKeys(prefix: string): RedisKeys {
  if (/[{}]/.test(prefix)) throw new Error(`Redis key prefix ${JSON.stringify(prefix)} must not contain { or }: it would become the cluster hash tag`);
  const pin = (partition: number, pinId: string) => `${prefix}${partitionTag(partition)}:pin:${pinId}`;
  return {
    prefix,
    enrich: {
      pin,
      boards: (partition, pinId) => `${pin(partition, pinId)}:boards`,
      queries: (partition, pinId) => `${pin(partition, pinId)}:queries`,
      newQueries: (partition, pinId) => `${pin(partition, pinId)}:newq`,
      seen: (partition, bucket) => `${prefix}${partitionTag(partition)}:seen:${bucket}`,
      meta: (partition) => `${prefix}${partitionTag(partition)}:meta`,
      dirty: (partition) => `${prefix}${partitionTag(partition)}:dirty`,
      stateMarker: () => `${prefix}state:v2:epoch`,
    },
    document: (pinId) => `${prefix}doc:{${pinId}}`,
    deletedDocument: (pinId) => `${prefix}doc-deleted:{${pinId}}`,
    captionCache: (model, promptVersion, imageKey) => `${prefix}cap:${model}:${promptVersion}:${imageKey}`,
    labelCache: (k) => `${prefix}label:${k.model}:${k.promptVersion}:${k.params}:${k.promptHash}`,
    rateLimit: (kind, model) => `${prefix}ratelimit:${kind}:${model}`,
  };
}
