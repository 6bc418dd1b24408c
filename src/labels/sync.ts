/**
 * `pinrich labels sync`: mirror the label dump objects of S3 into a local cache, incrementally.
 *
 * The cache is `<cacheDir>/<bucket>/<key>`, plus `<cacheDir>/<bucket>/.manifest.json` holding the
 * size and ETag each cached object had. An object listed with the same size and ETag as cached
 * (and still on disk) is skipped; others are downloaded to a temp file and renamed into place.
 * Cached files whose object is gone from S3 are deleted too: the dump replaces partial objects by
 * larger versions, and a stale partial left in the cache would duplicate rows in queries.
 */
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import type { ObjectStore } from '../adapters/s3/client.js';
import type { Config } from '../config.js';
import { PinrichError } from '../errors.js';

export interface SyncResult {
  listed: number;
  copied: number;
  skipped: number;
  deleted: number;
  bytesCopied: number;
}

interface Manifest {
  version: 1;
  objects: Record<string, { size: number; etag: string }>;
}

/** The local mirror of the configured bucket, and the label directory inside it. */
export function cachePaths(config: Pick<Config, 'labelsCache' | 's3Bucket' | 's3Prefix'>): { bucketDir: string; labelsDir: string; labelsPrefix: string } {
  const root = config.labelsCache.startsWith('~') ? join(homedir(), config.labelsCache.slice(1)) : config.labelsCache;
  const bucketDir = join(root, config.s3Bucket);
  const labelsPrefix = `${config.s3Prefix}labels/`;
  return { bucketDir, labelsDir: join(bucketDir, labelsPrefix), labelsPrefix };
}

/** A key as a path under `bucketDir`; refuses keys that would escape it. */
function localPath(bucketDir: string, key: string): string {
  const segments = key.split('/');
  if (key.startsWith('/') || segments.some((s) => s === '..' || s === '.') || key.includes('\\') || key.includes('\0')) {
    throw new PinrichError('processing_error', `refusing to cache object key ${JSON.stringify(key)}: not a plain relative path`);
  }
  return join(bucketDir, ...segments);
}

async function readManifest(path: string): Promise<Manifest> {
  try {
    const m = JSON.parse(await readFile(path, 'utf8')) as Manifest;
    if (m.version === 1 && m.objects && typeof m.objects === 'object') return m;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return { version: 1, objects: {} };
}

async function sizeOnDisk(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined; // not cached (or unreadable): download it again
  }
}

/** Every *.parquet file under `dir`, recursively (absolute paths); none if `dir` is missing. */
export async function listParquetFiles(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile() && e.name.endsWith('.parquet')).map((e) => join(e.parentPath, e.name)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

export async function syncLabels(
  store: ObjectStore,
  paths: { bucketDir: string; labelsDir: string; labelsPrefix: string },
  opts: { signal?: AbortSignal; onProgress?: (line: string) => void } = {},
): Promise<SyncResult> {
  const manifestPath = join(paths.bucketDir, '.manifest.json');
  await mkdir(paths.bucketDir, { recursive: true });
  const manifest = await readManifest(manifestPath);
  const result: SyncResult = { listed: 0, copied: 0, skipped: 0, deleted: 0, bytesCopied: 0 };
  const listed = new Set<string>();
  try {
    for await (const o of store.list(paths.labelsPrefix, { signal: opts.signal })) {
      if (!o.key.endsWith('.parquet')) continue;
      result.listed++;
      listed.add(o.key);
      const path = localPath(paths.bucketDir, o.key);
      const cached = manifest.objects[o.key];
      if (cached && cached.size === o.size && cached.etag === o.etag && (await sizeOnDisk(path)) === o.size) {
        result.skipped++;
        continue;
      }
      const got = await store.get(o.key, { signal: opts.signal });
      if (!got) continue; // replaced by a larger version since the listing; the next sync gets that
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, got.body);
      await rename(tmp, path);
      manifest.objects[o.key] = { size: got.body.byteLength, etag: got.etag || o.etag };
      result.copied++;
      result.bytesCopied += got.body.byteLength;
      if (result.copied % 100 === 0) opts.onProgress?.(`copied ${result.copied} objects`);
    }
    // Mirror deletions (superseded partial versions) and drop strays.
    for (const key of Object.keys(manifest.objects)) {
      if (key.startsWith(paths.labelsPrefix) && !listed.has(key)) {
        await rm(localPath(paths.bucketDir, key), { force: true });
        delete manifest.objects[key];
        result.deleted++;
      }
    }
    for (const file of await listParquetFiles(paths.labelsDir)) {
      const key = relative(paths.bucketDir, file).split(sep).join('/');
      if (!listed.has(key)) {
        await rm(file, { force: true });
        result.deleted++;
      }
    }
  } finally {
    // Whatever was copied stays recorded, even when the listing failed half-way.
    await writeFile(`${manifestPath}.tmp`, JSON.stringify(manifest));
    await rename(`${manifestPath}.tmp`, manifestPath);
  }
  return result;
}
