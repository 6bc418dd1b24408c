/**
 * Dump stage: relevance.labels -> Parquet (zstd) objects on S3, for data scientists.
 *
 *   <s3Prefix>labels/dt=YYYY-MM-DD/hour=HH/<topic>-p<partition>-<first>-<last>.parquet
 *
 * ## Object boundaries, and why a replay never duplicates a row
 *
 * Offsets of each partition are cut into aligned blocks of `flushRows` offsets
 * ([k*N, (k+1)*N - 1]). An object only ever holds records of one block; `first` is the offset
 * of the first record the stage saw in that block, `last` that of the last one; dt/hour come
 * from the first record (its label time; its Kafka timestamp if it is not a valid label).
 *
 * - A block is *sealed* when its last offset arrives (or a record of a later block does: the
 *   block's tail held no records). Sealing uploads the block's object, deletes the older
 *   versions of it (below), and only then is the block's end committed. Offsets are committed
 *   nowhere else, so the committed offset of a partition is always a block boundary (or
 *   nothing), and every replay restarts at the first record of a block.
 * - Age flush (tick): rows waiting longer than `flushAgeMs` are uploaded as a *partial*
 *   version of the open block, named by the same `first` and the current `last`; nothing is
 *   committed and the rows stay buffered. Every later upload of the block (partial or sealed)
 *   lists `<dir>/<topic>-p<partition>-<first>-` and deletes the versions with a smaller `last`.
 *   If a version with a larger `last` exists (written before a crash or by a previous owner of
 *   the partition), it already holds every row of ours, so ours is the one deleted.
 *
 * Invariant: for each (partition, block) the objects on S3 are versions of one growing prefix
 * of the block starting at the same deterministic `first` record (a replay starts at the
 * block's beginning and meets the same record first, so it computes the same `first` and dt/hour
 * directory); each upload removes the smaller versions. So once the stage has caught up and
 * flushed, each label record is in exactly one object, whatever was killed when. Between an
 * upload and its deletes (or after a crash in between) two versions can briefly coexist;
 * `labels query` reads only the largest version of each object for that reason.
 *
 * What this costs, and cannot do:
 * - committed offsets lag by up to `flushRows` records per partition (consumer-lag alarms must
 *   allow for that), and a restart re-reads up to that many records;
 * - if topic retention deletes the start of a block that was never sealed, a replay starts
 *   at a different first record and the old partial version is left beside the new one (the
 *   reader's version rule does not catch it): size `flushRows` so a block fills well within
 *   retention;
 * - dt/hour is the hour of the object's first label; rows of one object may be later
 *   (`labeled_at` is exact);
 * - invalid records are dead-lettered every time they are delivered, so a replay can
 *   dead-letter one twice.
 *
 * On a rebalance (onAssignment) or when a partition is no longer assigned (tick), buffered rows
 * are dropped: their offsets were never committed, so the partition's next owner re-reads them.
 */
import type { Label } from '../../../schemas/label.js';
import type { ObjectStore } from '../../adapters/s3/client.js';
import type { Clock } from '../../runtime/clock.js';
import type { Logger } from '../../runtime/log.js';
import type { InRecord, Rejection, Stage, StageContext, StageResult } from '../../runtime/stage.js';
import { decodeLabel } from './decode-label.js';
import { labelLine, type BlockTable, type ParquetWriter } from './parquet.js';

export interface DumpStageDeps {
  store: ObjectStore;
  writer: ParquetWriter;
  /** Key prefix inside the bucket ("" or ending in "/"). */
  s3Prefix: string;
  /** Block size in offsets: objects never span an aligned block of this many offsets. */
  flushRows: number;
  /** Buffered rows older than this are uploaded as a partial object. */
  flushAgeMs: number;
  maxRecordBytes: number;
  clock: Clock;
  log: Logger;
}

export interface DumpStats {
  rows: number;
  /** Sealed (complete-block) objects written. */
  sealed: number;
  /** Partial (age-flushed) versions written. */
  partials: number;
  /** Older versions deleted. */
  superseded: number;
  rejected: number;
}

/**
 * Rows a block holds as NDJSON lines before they go into its table in one statement (each
 * statement costs DuckDB a fixed overhead: per-batch inserts of ~1,400 rows took ~40 % more
 * CPU per row than 10,000-row ones), in UTF-16 units (~bytes: labels are mostly ASCII). The
 * bound of the JS memory per open block.
 */
export const PENDING_CHARS = 4 * 1024 * 1024;

/**
 * An open block of one partition: rows since the last seal. They are held in a DuckDB table
 * (columnar, off the JS heap: memory per open block stays small however large flushRows is);
 * `pending` holds the rows not yet inserted, as `labelLine`s, at most ~PENDING_CHARS of them
 * between batches.
 */
interface Block {
  topic: string;
  partition: number;
  index: bigint;
  first: bigint;
  last: bigint;
  dir: string;
  pending: Array<{ offset: bigint; line: string }>;
  pendingChars: number;
  /** Rows in `table`. */
  stored: number;
  table: BlockTable | undefined;
  /** Clock time at which the oldest row not yet in any uploaded version arrived. */
  pendingSince: number | null;
}

/** `dt=YYYY-MM-DD/hour=HH` (UTC) of a time in ms. */
export function hourDir(ms: number): string {
  const iso = new Date(ms).toISOString();
  return `dt=${iso.slice(0, 10)}/hour=${iso.slice(11, 13)}`;
}

/** The object key of the rows of `topic`/`partition` from `first` to `last`. */
export function dumpObjectKey(s3Prefix: string, dir: string, topic: string, partition: number, first: bigint | string, last: bigint | string): string {
  return `${s3Prefix}labels/${dir}/${topic}-p${partition}-${first}-${last}.parquet`;
}

/** Parses a dump object's file name (the key's last segment); undefined if it is not one. */
export function parseDumpObjectName(name: string): { topic: string; partition: number; first: bigint; last: bigint } | undefined {
  const m = /^(.+)-p(\d+)-(\d+)-(\d+)\.parquet$/.exec(name);
  if (!m) return undefined;
  return { topic: m[1]!, partition: Number(m[2]), first: BigInt(m[3]!), last: BigInt(m[4]!) };
}

export function createDumpStage(deps: DumpStageDeps): Stage & { stats(): DumpStats } {
  const { store, writer, clock, log } = deps;
  const N = BigInt(deps.flushRows);
  const stats: DumpStats = { rows: 0, sealed: 0, partials: 0, superseded: 0, rejected: 0 };
  /** Open block per "topic:partition". */
  const blocks = new Map<string, Block>();
  /**
   * Highest offset per partition that is in a sealed, uploaded object. A handle() that fails
   * after sealing a block is retried with the same records: those are skipped (not rebuilt
   * into a smaller block with another `first`), and their block end is committed.
   */
  const sealedThrough = new Map<string, bigint>();
  const locks = new Map<string, Promise<unknown>>();

  /** Runs `fn` after any other work on the same partition (handle and tick may overlap). */
  function withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    locks.set(key, tail);
    void tail.then(() => {
      if (locks.get(key) === tail) locks.delete(key);
    });
    return run;
  }

  /** Move the block's pending rows into its table. */
  async function storePending(block: Block): Promise<void> {
    if (block.pending.length === 0) return;
    block.table ??= await writer.open({ topic: block.topic, partition: block.partition });
    const rows = block.pending;
    block.pending = [];
    block.pendingChars = 0;
    await block.table.append(rows.map((r) => r.line));
    block.stored += rows.length;
  }

  /** Detach the block's table and drop it now (the caller holds the partition's lock). */
  async function dropTableNow(block: Block): Promise<void> {
    const table = block.table;
    block.table = undefined;
    await table?.drop();
  }

  /** Free a block's table once the work queued on its partition is done. */
  function dropTable(key: string, block: Block): void {
    const table = block.table;
    block.table = undefined;
    block.pending = [];
    block.pendingChars = 0;
    block.stored = 0;
    if (table) void withLock(key, () => table.drop()).catch((err: unknown) => log.warn('dropping a dump block table failed', { error: String(err) }));
  }

  /** Upload the block's current rows as its newest version, then delete the older versions. */
  async function upload(block: Block, sealed: boolean, signal: AbortSignal): Promise<void> {
    await storePending(block);
    if (block.stored === 0 || !block.table) return; // only dead letters in it: no object
    const rowCount = block.stored;
    const key = dumpObjectKey(deps.s3Prefix, block.dir, block.topic, block.partition, block.first, block.last);
    const bytes = await block.table.write();
    await store.put(key, bytes, { signal, contentType: 'application/vnd.apache.parquet' });
    const prefix = dumpObjectKey(deps.s3Prefix, block.dir, block.topic, block.partition, block.first, '').replace(/\.parquet$/, '');
    const older: string[] = [];
    let newer = false;
    for await (const o of store.list(prefix, { signal })) {
      const parsed = parseDumpObjectName(o.key.slice(o.key.lastIndexOf('/') + 1));
      if (o.key === key || !parsed || parsed.topic !== block.topic || parsed.partition !== block.partition || parsed.first !== block.first) continue;
      if (parsed.last < block.last) older.push(o.key);
      else newer = true;
    }
    for (const k of older) await store.delete(k, { signal });
    stats.superseded += older.length;
    if (newer && !sealed) {
      // A larger version (from before a crash, or a previous owner) holds all our rows already.
      await store.delete(key, { signal });
      stats.superseded++;
    }
    if (sealed) stats.sealed++;
    else stats.partials++;
    block.pendingSince = null;
    log.info('dump object written', { key, rows: rowCount, sealed, superseded: older.length });
  }

  async function seal(key: string, block: Block, ctx: StageContext): Promise<void> {
    await upload(block, true, ctx.signal);
    blocks.delete(key);
    await dropTableNow(block);
    sealedThrough.set(key, (block.index + 1n) * N - 1n);
    await ctx.heartbeat();
  }

  /** A record at or before the block's last offset arrived again (a retried or redelivered batch). */
  async function rewind(key: string, block: Block, offset: bigint): Promise<Block | undefined> {
    if (offset <= block.first) {
      blocks.delete(key);
      await dropTableNow(block);
      return undefined;
    }
    block.pending = block.pending.filter((r) => r.offset < offset);
    block.pendingChars = block.pending.reduce((n, r) => n + r.line.length, 0);
    if (block.table) block.stored = await block.table.truncateFrom(offset);
    block.last = offset - 1n;
    return block;
  }

  return {
    name: 'dump',
    stats: () => ({ ...stats }),

    handle(batch: InRecord[], ctx: StageContext): Promise<StageResult> {
      if (batch.length === 0) return Promise.resolve({ outputs: [], rejected: [], commitOffset: null });
      const { topic, partition } = batch[0]!;
      const key = `${topic}:${partition}`;
      return withLock(key, async () => {
        const rejected: Rejection[] = [];
        for (const record of batch) {
          const offset = BigInt(record.offset);
          const decoded = decodeLabel(record.value, deps.maxRecordBytes);
          if (!decoded.ok) {
            rejected.push({ record, code: decoded.code, reason: decoded.reason });
            stats.rejected++;
          }
          if (offset <= (sealedThrough.get(key) ?? -1n)) continue; // already in a sealed object
          let block = blocks.get(key);
          if (block && offset <= block.last) block = await rewind(key, block, offset);
          if (block && offset / N !== block.index) {
            // A record past the block's end: the block's last offsets hold no records.
            await seal(key, block, ctx);
            block = undefined;
          }
          if (!block) {
            const label: Label | undefined = decoded.ok ? decoded.value : undefined;
            block = {
              topic,
              partition,
              index: offset / N,
              first: offset,
              last: offset,
              dir: hourDir(label ? Date.parse(label.labeled_at) : record.timestamp),
              pending: [],
              pendingChars: 0,
              stored: 0,
              table: undefined,
              pendingSince: null,
            };
            blocks.set(key, block);
          }
          block.last = offset;
          if (decoded.ok) {
            const line = labelLine(decoded.value, decoded.text, record.offset);
            block.pending.push({ offset, line });
            block.pendingChars += line.length;
            block.pendingSince ??= clock.now();
            stats.rows++;
          }
          if (offset === (block.index + 1n) * N - 1n) await seal(key, block, ctx);
        }
        // Into the block's table once a few MiB are pending (seal and upload store the rest first).
        const open = blocks.get(key);
        if (open && open.pendingChars >= PENDING_CHARS) await storePending(open);
        // Commit up to the end of the last sealed block if this batch reached into it.
        const sealed = sealedThrough.get(key);
        const commitOffset = sealed !== undefined && sealed >= BigInt(batch[0]!.offset) ? (sealed + 1n).toString() : null;
        return { outputs: [], rejected, commitOffset };
      });
    },

    async tick(assigned, ctx) {
      for (const [key, block] of [...blocks]) {
        if (!assigned.get(block.topic)?.includes(block.partition)) {
          blocks.delete(key); // revoked: its next owner re-reads these uncommitted records
          dropTable(key, block);
          sealedThrough.delete(key);
          continue;
        }
        if (block.pendingSince === null || clock.now() - block.pendingSince < deps.flushAgeMs) continue;
        await withLock(key, async () => {
          if (blocks.get(key) !== block || block.pendingSince === null) return; // sealed or dropped meanwhile
          await upload(block, false, ctx.signal);
        });
      }
      return { outputs: [], rejected: [] };
    },

    onAssignment() {
      // After a rejoin every partition is redelivered from its committed offset (a block start).
      for (const [key, block] of blocks) dropTable(key, block);
      blocks.clear();
      sealedThrough.clear();
    },

    async close() {
      blocks.clear();
      sealedThrough.clear();
      writer.close();
      store.close();
    },
  };
}
