/**
 * The compression codecs pinrich registers with kafkajs (src/adapters/kafka/codecs.ts): snappy
 * and lz4 round-trip through them, zstd reads a frame of the zstd tool (batches of a real Java
 * producer in all of them are read in test/integration/pipeline.test.ts), and an lz4 frame whose
 * block headers claim more than the limit is refused before anything is allocated.
 */
import { CompressionTypes } from 'kafkajs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { MAX_DECOMPRESSED_BYTES } from '../../src/adapters/kafka/codecs.js';

type Codec = { compress(e: { buffer: Buffer }): Promise<Buffer>; decompress(b: Buffer): Promise<Buffer> };
const { CompressionCodecs } = createRequire(import.meta.url)('kafkajs') as { CompressionCodecs: Record<number, (() => Codec) | undefined> };
const codec = (type: CompressionTypes): Codec => {
  const factory = CompressionCodecs[type];
  if (!factory) throw new Error(`no codec registered for ${CompressionTypes[type]}`);
  return factory();
};

describe('kafkajs compression codecs', () => {
  const text = Buffer.from(JSON.stringify(Array.from({ length: 2_000 }, (_, i) => ({ event_id: `e-${i}`, pin_id: `pin-${i % 17}`, type: 'save', board_title: 'Summer outfits' }))));

  it.each([
    ['snappy', CompressionTypes.Snappy],
    ['lz4', CompressionTypes.LZ4],
  ])('%s: what it compresses it decompresses, byte for byte', async (_name, type) => {
    const c = codec(type);
    const packed = await c.compress({ buffer: text });
    expect(packed.length).toBeLessThan(text.length / 4);
    expect((await c.decompress(packed)).equals(text)).toBe(true);
  });

  it('zstd: reads a frame the zstd tool wrote (pinrich never writes zstd itself)', async () => {
    // `zstd -19` of the JSON below.
    const frame = Buffer.from('KLUv/SRQLQIAUoQOEpDPAcgoRQ8dHm0SM+nerO8OmPeyl+r5QOTWZjk5s15tUjwPPZzpkSdnWNst6BZ8+BB88rRMO6Z8GwIANMUgw2wC8FKvag==', 'base64');
    const out = await codec(CompressionTypes.ZSTD).decompress(frame);
    expect(out.toString()).toBe('{"event_id":"e-1","pin_id":"pin-1","type":"save","board_title":"Summer outfits"}');
    await expect(codec(CompressionTypes.ZSTD).compress({ buffer: text })).rejects.toThrow(/not available/);
  });

  it('refuses an lz4 frame whose blocks would decompress past the limit, before allocating', async () => {
    // Frame: magic, FLG (version 01, independent blocks), BD (4 MiB blocks), header checksum;
    // then 17 one-byte compressed blocks (each may decompress to 4 MiB: 68 MiB), end mark.
    const blocks = Array.from({ length: 17 }, () => Buffer.from([1, 0, 0, 0, 0]));
    const frame = Buffer.concat([Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x60, 0x70, 0x73]), ...blocks, Buffer.alloc(4)]);
    expect(17 * 4 * 1024 * 1024).toBeGreaterThan(MAX_DECOMPRESSED_BYTES);
    await expect(codec(CompressionTypes.LZ4).decompress(frame)).rejects.toThrow(/over the \d+-byte limit/);
  });
});
