/**
 * The dump's Parquet writer (src/stages/dump/parquet.ts) with a real in-memory DuckDB, read back
 * with hyparquet: records handed over as their Kafka text (DuckDB's JSON reader), as decoded
 * values (defaults applied, surrogates made well-formed) and, for a batch DuckDB refuses, cell by
 * cell — each row equal to `labelRow` of the record as the contract decoded it.
 */
import { parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeLabel } from '../../src/stages/dump/decode-label.js';
import type { Label } from '../../schemas/label.js';
import { createParquetWriter, labelLine, labelRow, type ParquetWriter } from '../../src/stages/dump/parquet.js';
import { makeLabel } from '../support/labels.js';

const base = makeLabel({
  pair_id: 'b'.repeat(32),
  pin_id: 'pin-1',
  query: 'red shoes',
  label: 4,
  distribution: [0.05, 0.1, 0.2, 0.3, 0.35],
  expected_score: 3.8,
  doc_version: 7,
  labeled_at: '2026-11-28T10:15:00.123Z',
});

/** Record values, each with what makes it worth a row of its own. */
const VALUES: Array<[string, string]> = [
  ['plain', JSON.stringify(base)],
  ['unicode, quotes, escapes, NUL', JSON.stringify({ ...base, query: 'café "au" lait ☕ 東京 \\ \n\t\u0000 end', language: 'fr' })],
  ['hard-only (null distribution)', JSON.stringify({ ...base, distribution: null, label_source: 'hard_only', expected_score: 4 })],
  ['no cached_prompt_tokens (zod defaults it to 0)', JSON.stringify({ ...base, usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } })],
  ['lone surrogate (made U+FFFD)', JSON.stringify({ ...base, query: 'x' }).replace('"x"', '"a\\ud800b"')],
  ['offset time zone', JSON.stringify({ ...base, labeled_at: '2026-11-28T23:59:59.5+02:00' })],
  ['unknown extra field', JSON.stringify({ ...base, note: { nested: [1, 2] } })],
  ['integral float spelling', JSON.stringify(base).replace('"label":4', '"label":4.0')],
];

interface Rec {
  label: Label;
  text: string | undefined;
  offset: string;
  line: string;
}

function records(values: ReadonlyArray<[string, string]>, firstOffset: bigint): Rec[] {
  return values.map(([name, v], i) => {
    const d = decodeLabel(Buffer.from(v), 100_000);
    if (!d.ok) throw new Error(`${name}: ${d.reason}`);
    const offset = String(firstOffset + BigInt(i));
    return { label: d.value, text: d.text, offset, line: labelLine(d.value, d.text, offset) };
  });
}
const lines = (rs: readonly Rec[]) => rs.map((r) => r.line);

async function readBack(bytes: Uint8Array): Promise<Array<Record<string, unknown>>> {
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  return (await parquetReadObjects({ file, compressors })) as Array<Record<string, unknown>>;
}

/** `labelRow` as hyparquet returns it (TIMESTAMP as a Date). */
function expected(r: Rec, source: { topic: string; partition: number }) {
  const row = labelRow(r.label, { ...source, offset: r.offset });
  return { ...row, labeled_at: new Date(row.labeled_at as number) };
}

describe('dump Parquet writer', () => {
  let writer: ParquetWriter | undefined;
  afterAll(() => writer?.close());
  const source = { topic: "relevance.labels'o", partition: 3 };

  it('writes each record as the row labelRow makes of its decoded value', async () => {
    writer = await createParquetWriter();
    const recs = records(VALUES, 2n ** 53n + 10n); // offsets beyond a double's integers
    expect(recs.filter((r) => r.text === undefined).length).toBe(2); // defaulted and surrogate: not their bytes
    const rows = await readBack(await writer.write(source, lines(recs)));
    expect(rows).toEqual(recs.map((r) => expected(r, source)));
    expect(rows[4]!.query).toBe('a\uFFFDb');
    expect(rows[3]!.cached_prompt_tokens).toBe(0);
    expect(writer.stats().cellByCellBatches).toBe(0);
  });

  it('appends a batch DuckDB reads otherwise than JSON.parse (a duplicate key) cell by cell', async () => {
    writer ??= await createParquetWriter();
    // JSON.parse keeps the last "label"; DuckDB's reader refuses the object. Only valid labels
    // reach the writer, so the last one is the valid one here.
    const dup = JSON.stringify(base).replace('"label":4', '"label":9,"label":2');
    const recs = records([...VALUES.slice(0, 2), ['duplicate key', dup]], 0n);
    expect(recs[2]!.label.label).toBe(2);
    expect(recs[2]!.text).toBeDefined();
    const table = await writer.open(source);
    await table.append(lines(recs.slice(0, 2)));
    await table.append(lines(recs.slice(2)));
    const rows = await readBack(await table.write());
    await table.drop();
    expect(rows).toEqual(recs.map((r) => expected(r, source)));
    expect(writer.stats().cellByCellBatches).toBe(1);
  });

  it('truncates a block from an offset (a redelivered batch) and keeps the rows before it', async () => {
    writer ??= await createParquetWriter();
    const recs = records(VALUES, 100n);
    const table = await writer.open(source);
    await table.append(lines(recs));
    expect(await table.truncateFrom(103n)).toBe(3);
    const rows = await readBack(await table.write());
    await table.drop();
    expect(rows.map((r) => r.kafka_offset)).toEqual([100n, 101n, 102n]);
  });
});
