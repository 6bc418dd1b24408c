/**
 * S3 wiring: the only module that imports the AWS SDK. Everything else sees the narrow
 * `ObjectStore` port (put/get/list/delete on one bucket), whose errors are PinrichErrors:
 * `state_unavailable` (retriable: 5xx, throttling, timeouts, connection errors) or
 * `config_invalid` / `processing_error` (not retriable: missing bucket, access denied, other 4xx).
 *
 * Checksums are only computed when an operation requires them. With the SDK's defaults a
 * PutObject is sent with aws-chunked framing plus a trailing checksum, which s3rver (and some
 * other S3-compatible servers) store verbatim: silent corruption of every object.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import type { Config } from '../../config.js';
import { PinrichError } from '../../errors.js';

/** One listed object. `etag` is as S3 reports it, quotes removed. */
export interface ObjectInfo {
  key: string;
  size: number;
  etag: string;
  lastModified: Date | undefined;
}

export interface CallOptions {
  signal?: AbortSignal;
}

/** The object-storage port, bound to one bucket. */
export interface ObjectStore {
  readonly bucket: string;
  put(key: string, body: Uint8Array, opts?: CallOptions & { contentType?: string }): Promise<void>;
  /** The object's bytes, or null when there is no such key. */
  get(key: string, opts?: CallOptions): Promise<{ body: Uint8Array; etag: string } | null>;
  /** Every object under `prefix`, in key order, ListObjectsV2 paged (1,000 keys a page). */
  list(prefix: string, opts?: CallOptions): AsyncIterable<ObjectInfo>;
  /** Deleting a missing key succeeds (S3 semantics). */
  delete(key: string, opts?: CallOptions): Promise<void>;
  close(): void;
}

export type S3Settings = Pick<Config, 's3Endpoint' | 's3Region' | 's3Bucket' | 's3ForcePathStyle'> &
  Partial<Pick<Config, 's3AccessKeyId' | 's3SecretAccessKey'>>;

/**
 * An S3 client for the configured endpoint. Credentials: PINRICH_S3_ACCESS_KEY_ID/SECRET when
 * set (local stacks, MinIO), else the default AWS provider chain (AWS_* variables, profile,
 * instance or pod role).
 */
export function createS3Client(config: S3Settings): S3Client {
  return new S3Client({
    region: config.s3Region,
    ...(config.s3Endpoint ? { endpoint: config.s3Endpoint } : {}),
    ...(config.s3AccessKeyId && config.s3SecretAccessKey
      ? { credentials: { accessKeyId: config.s3AccessKeyId, secretAccessKey: config.s3SecretAccessKey } }
      : {}),
    forcePathStyle: config.s3ForcePathStyle,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
  });
}

/** The `ObjectStore` for the configured bucket. */
export function createS3(config: S3Settings, client: S3Client = createS3Client(config)): ObjectStore {
  const Bucket = config.s3Bucket;
  const call = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw classifyS3Error(err, `S3 ${what} (bucket ${Bucket})`);
    }
  };
  return {
    bucket: Bucket,
    async put(key, body, opts = {}) {
      await call(`put ${key}`, () =>
        client.send(
          new PutObjectCommand({ Bucket, Key: key, Body: body, ContentLength: body.byteLength, ContentType: opts.contentType ?? 'application/octet-stream' }),
          { abortSignal: opts.signal },
        ),
      );
    },
    async get(key, opts = {}) {
      return call(`get ${key}`, async () => {
        try {
          const res = await client.send(new GetObjectCommand({ Bucket, Key: key }), { abortSignal: opts.signal });
          const body = res.Body ? await res.Body.transformToByteArray() : new Uint8Array();
          return { body, etag: unquote(res.ETag) };
        } catch (err) {
          if (errorName(err) === 'NoSuchKey' || statusOf(err) === 404) return null;
          throw err;
        }
      });
    },
    async *list(prefix, opts = {}) {
      let token: string | undefined;
      do {
        const page: ListObjectsV2CommandOutput = await call(`list ${prefix}`, () =>
          client.send(new ListObjectsV2Command({ Bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: 1_000 }), { abortSignal: opts.signal }),
        );
        for (const o of page.Contents ?? []) {
          if (o.Key === undefined) continue;
          yield { key: o.Key, size: o.Size ?? 0, etag: unquote(o.ETag), lastModified: o.LastModified };
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    },
    async delete(key, opts = {}) {
      await call(`delete ${key}`, () => client.send(new DeleteObjectCommand({ Bucket, Key: key }), { abortSignal: opts.signal }));
    },
    close: () => client.destroy(),
  };
}

const unquote = (etag: string | undefined) => (etag ?? '').replace(/^"|"$/g, '');
const statusOf = (err: unknown): number | undefined => (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
const errorName = (err: unknown): string | undefined => (err instanceof Error ? err.name : undefined);

const RETRIABLE_NAMES = new Set(['SlowDown', 'InternalError', 'ServiceUnavailable', 'RequestTimeout', 'RequestTimeTooSkewed', 'TimeoutError', 'ThrottlingException']);
const CONFIG_NAMES = new Set(['NoSuchBucket', 'AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'CredentialsProviderError', 'PermanentRedirect', 'AuthorizationHeaderMalformed']);

/**
 * SDK error -> PinrichError, by error name and HTTP status (never by message text). An error with
 * no HTTP status is a transport failure (refused connection, DNS, socket reset): retriable.
 */
export function classifyS3Error(err: unknown, what: string): PinrichError {
  if (err instanceof PinrichError) return err;
  const name = errorName(err);
  const status = statusOf(err);
  const detail = `${what}: ${name ?? 'error'}${status ? ` (HTTP ${status})` : ''}: ${err instanceof Error ? err.message : String(err)}`.slice(0, 1_000);
  if (name === 'AbortError') return new PinrichError('aborted', detail, { cause: err });
  if (name !== undefined && CONFIG_NAMES.has(name)) return new PinrichError('config_invalid', detail, { cause: err });
  if (name !== undefined && RETRIABLE_NAMES.has(name)) return new PinrichError('state_unavailable', detail, { retriable: true, cause: err });
  if (status === undefined || status >= 500 || status === 429 || status === 408) {
    return new PinrichError('state_unavailable', detail, { retriable: true, cause: err });
  }
  if (status === 401 || status === 403) return new PinrichError('config_invalid', detail, { cause: err });
  return new PinrichError('processing_error', detail, { cause: err });
}
