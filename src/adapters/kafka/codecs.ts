/**
 * Compressed record batches written by other producers. kafkajs 2.2.4 decodes gzip itself and
 * nothing else: its consumer crashed on a snappy, lz4 or zstd batch (kafkajs has no codec of its
 * own for them), and the worker could never get past it. Those are common: franz-go (and so rpk) compresses with
 * snappy by default, and Java producers are often set to lz4 or zstd. Registered
 * here once, in pure JavaScript (no native build):
 * - snappy: kafkajs-snappy (by kafkajs' author): raw snappy and the xerial framing Java writes;
 * - lz4: lz4js, the LZ4 frame format Kafka uses (checksums are not verified: the broker checked
 *   the batch's CRC);
 * - zstd: fzstd, decompression only (pinrich's own producers do not compress).
 *
 * An lz4 or zstd batch that decompresses to more than {@link MAX_DECOMPRESSED_BYTES} is refused
 * with an error (lz4: before allocating, from its block headers).
 */
import { createRequire } from 'node:module';
import { decompress as zstdDecompress } from 'fzstd';
import { CompressionTypes, type CompressionCodecs as CodecRegistry } from 'kafkajs';

const require = createRequire(import.meta.url);
// CommonJS modules without types (or, for kafkajs' registry, not an ESM named export: it is
// `Compression.Codecs` in kafkajs' exports object, which Node's CJS export detection misses).
const { CompressionCodecs } = require('kafkajs') as { CompressionCodecs: typeof CodecRegistry };
const snappyCodec = require('kafkajs-snappy') as () => Codec;
const lz4 = require('lz4js') as {
  compress(src: Uint8Array): Uint8Array | number[];
  /** An upper bound of the decompressed size, read from the frame's headers. */
  decompressBound(src: Uint8Array): number;
  decompress(src: Uint8Array, maxSize?: number): Uint8Array | number[];
};

/** The most a compressed batch may decompress to: far above Kafka's 1 MiB default batch limit. */
export const MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024;

interface Codec {
  compress(encoder: { buffer: Buffer }): Promise<Buffer>;
  decompress(buffer: Buffer): Promise<Buffer>;
}

const asBuffer = (bytes: Uint8Array | number[]): Buffer => (bytes instanceof Uint8Array ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : Buffer.from(bytes));

function tooLarge(codec: string, bytes: number): Error {
  return new Error(`${codec} batch would decompress to ${bytes} bytes, over the ${MAX_DECOMPRESSED_BYTES}-byte limit`);
}

const lz4Codec = (): Codec => ({
  async compress(encoder) {
    return asBuffer(lz4.compress(encoder.buffer));
  },
  async decompress(buffer) {
    const bound = lz4.decompressBound(buffer); // from the frame's block headers: no allocation yet
    if (bound > MAX_DECOMPRESSED_BYTES) throw tooLarge('lz4', bound);
    return asBuffer(lz4.decompress(buffer, bound));
  },
});

const zstdCodec = (): Codec => ({
  async compress() {
    throw new Error('zstd compression is not available to pinrich producers (they send batches uncompressed)');
  },
  async decompress(buffer) {
    const out = zstdDecompress(buffer);
    if (out.byteLength > MAX_DECOMPRESSED_BYTES) throw tooLarge('zstd', out.byteLength);
    return asBuffer(out);
  },
});

const codecs = CompressionCodecs as Record<CompressionTypes, () => Codec>;
codecs[CompressionTypes.Snappy] = snappyCodec;
codecs[CompressionTypes.LZ4] = lz4Codec;
codecs[CompressionTypes.ZSTD] = zstdCodec;
