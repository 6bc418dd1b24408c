import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JSON_DIR, renderJsonSchemas } from '../../schemas/generate.js';

describe('generated JSON Schema', () => {
  it('matches the zod contracts (run `npm run schemas:gen` after changing schemas/)', () => {
    const expected = renderJsonSchemas();
    const committed = readdirSync(JSON_DIR).filter((f) => f.endsWith('.json'));
    expect(committed.sort()).toEqual([...expected.keys()].sort());
    for (const [file, text] of expected) expect(readFileSync(join(JSON_DIR, file), 'utf8'), file).toBe(text);
  });
});
