/**
 * Child-process entry point that runs s3rver (an S3-compatible server from npm) for the local
 * stack. The launcher starts it detached with `node [--import tsx] s3rver-main.(ts|js)` so the
 * server outlives the CLI that started it, and configures it through environment variables:
 *
 *   PINRICH_S3RVER_PORT       port to listen on (127.0.0.1)
 *   PINRICH_S3RVER_DIRECTORY  where objects are stored
 *   PINRICH_S3RVER_BUCKET     bucket created at start-up
 *
 * NODE_OPTIONS=--openssl-legacy-provider must be set by the parent: s3rver's continuation
 * tokens use a cipher that OpenSSL 3 only offers through the legacy provider, and without it
 * every paged ListObjectsV2 answers HTTP 500.
 */
import { createRequire } from 'node:module';

/** The part of s3rver's (untyped, CommonJS) API used here. */
interface S3rverInstance {
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}
type S3rverConstructor = new (options: {
  port: number;
  address: string;
  silent: boolean;
  directory: string;
  configureBuckets: Array<{ name: string }>;
}) => S3rverInstance;

const require = createRequire(import.meta.url);
const S3rver = require('s3rver') as S3rverConstructor;

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`s3rver-main: ${name} is not set`);
  return value;
}

const server = new S3rver({
  port: Number(requiredEnv('PINRICH_S3RVER_PORT')),
  address: '127.0.0.1',
  // Per-request logging would grow the log without bound over a long demo.
  silent: true,
  directory: requiredEnv('PINRICH_S3RVER_DIRECTORY'),
  configureBuckets: [{ name: requiredEnv('PINRICH_S3RVER_BUCKET') }],
});

const address = await server.run();
console.log(`s3rver listening on http://${address.address}:${address.port}`);

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    // http.Server.close() waits for idle keep-alive sockets of SDK clients; nothing here
    // needs flushing (objects are written before a PUT is answered), so don't wait long.
    setTimeout(() => process.exit(0), 1_000).unref();
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error('s3rver close failed', err);
        process.exit(1);
      },
    );
  });
}
