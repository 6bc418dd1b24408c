/**
 * Writes JSON Schema for every contract into schemas/json/, for consumers that don't speak
 * TypeScript. `npm run schemas:gen` rewrites them; test/unit/schemas.test.ts fails when the
 * committed files differ from what this produces (drift).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { CONTRACTS } from './index.js';
import { PARQUET_LABEL_COLUMNS } from './parquet-label.js';

export const JSON_DIR = join(dirname(fileURLToPath(import.meta.url)), 'json');

/** File name -> JSON text, for every contract version (and the Parquet label layout). */
export function renderJsonSchemas(): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, versions] of Object.entries(CONTRACTS)) {
    for (const [version, schema] of Object.entries(versions)) {
      const json = z.toJSONSchema(schema as z.ZodType, { target: 'draft-2020-12', io: 'output' });
      const doc = { $id: `https://pinrich.dev/schemas/${name}.v${version}.json`, title: `${name} v${version}`, ...json };
      out.set(`${name}.v${version}.schema.json`, JSON.stringify(doc, null, 2) + '\n');
    }
  }
  out.set('label.parquet.json', JSON.stringify({ columns: PARQUET_LABEL_COLUMNS }, null, 2) + '\n');
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  mkdirSync(JSON_DIR, { recursive: true });
  for (const [file, text] of renderJsonSchemas()) writeFileSync(join(JSON_DIR, file), text);
  console.log(`wrote ${renderJsonSchemas().size} files to ${JSON_DIR}`);
}
