import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { describe, expect, it } from 'vitest';
import { gradeMapping, readGoldenCsv } from '../../src/labels/eval.js';
import { agreement, averageRanks, confusionMatrix, exactAccuracy, quadraticWeightedKappa, spearman, withinOneAccuracy } from '../../src/labels/metrics.js';

/*
 * Fixture: human h = [1, 2, 3, 4, 5], teacher t = [1, 3, 3, 5, 4] (n = 5).
 *
 * exact: (1,1) and (3,3) agree -> 2/5 = 0.4; within one: |h-t| = 0,1,0,1,1 -> 5/5 = 1.
 *
 * Quadratic kappa, K = 5, w_ij = (i-j)^2 / 16:
 *   sum w*O = w(2,3) + w(4,5) + w(5,4) = 3/16.
 *   human totals r = [1,1,1,1,1]; teacher totals c = [1,0,2,1,1]; E_ij = r_i c_j / 5.
 *   sum_i (i-j)^2 over i = 1..5 is S = [30, 15, 10, 15, 30] for j = 1..5,
 *   so sum w*E = (1/80) * (1*30 + 0*15 + 2*10 + 1*15 + 1*30) = 95/80.
 *   kappa = 1 - (3/16) / (95/80) = 1 - 15/95 = 16/19 = 0.8421052...
 *
 * Spearman: ranks(h) = [1,2,3,4,5]; ranks(t) = [1, 2.5, 2.5, 5, 4] (the two 3s share 2 and 3).
 *   Both means are 3; dx = [-2,-1,0,1,2], dy = [-2,-0.5,-0.5,2,1];
 *   sxy = 4 + 0.5 + 0 + 2 + 2 = 8.5; sxx = 10; syy = 4 + 0.25 + 0.25 + 4 + 1 = 9.5;
 *   rho = 8.5 / sqrt(95) = 0.8720815...
 */
const h = [1, 2, 3, 4, 5];
const t = [1, 3, 3, 5, 4];

describe('label agreement metrics', () => {
  it('match the hand-computed values on the fixture', () => {
    expect(exactAccuracy(h, t)).toBe(0.4);
    expect(withinOneAccuracy(h, t)).toBe(1);
    expect(quadraticWeightedKappa(h, t)).toBeCloseTo(16 / 19, 12);
    expect(spearman(h, t)).toBeCloseTo(8.5 / Math.sqrt(95), 12);
    expect(averageRanks(t)).toEqual([1, 2.5, 2.5, 5, 4]);
    expect(confusionMatrix(h, t)).toEqual([
      [1, 0, 0, 0, 0],
      [0, 0, 1, 0, 0],
      [0, 0, 1, 0, 0],
      [0, 0, 0, 0, 1],
      [0, 0, 0, 1, 0],
    ]);
  });

  it.each([
    // perfect agreement: kappa 1, rho 1
    { name: 'perfect', a: [1, 2, 5], b: [1, 2, 5], kappa: 1, rho: 1 },
    // h = [1,5], t = [5,1]: sum w*O = 1 + 1 = 2; r = c = [1,0,0,0,1], E = 0.5 at the four corners,
    // sum w*E = 0.5 + 0.5 = 1 -> kappa = 1 - 2 = -1; rho = -1
    { name: 'reversed', a: [1, 5], b: [5, 1], kappa: -1, rho: -1 },
    // both graders constant and equal: expected disagreement 0 -> kappa undefined; rho undefined
    { name: 'constant', a: [3, 3, 3], b: [3, 3, 3], kappa: null, rho: null },
    { name: 'empty', a: [], b: [], kappa: null, rho: null },
  ])('$name', ({ a, b, kappa, rho }) => {
    const k = quadraticWeightedKappa(a, b);
    const r = spearman(a, b);
    if (kappa === null) expect(k).toBeNull();
    else expect(k).toBeCloseTo(kappa, 12);
    if (rho === null) expect(r).toBeNull();
    else expect(r).toBeCloseTo(rho, 12);
  });

  it('agreement() bundles them', () => {
    const a = agreement(h, t);
    expect(a.n).toBe(5);
    expect(a.kappa).toBeCloseTo(16 / 19, 12);
  });

  it('maps other scales to 1..5', () => {
    const linear = gradeMapping({ scale: '0-3' });
    expect([0, 1, 2, 3, 4].map(linear)).toEqual([1, 2, 4, 5, undefined]);
    const explicit = gradeMapping({ map: '0:1,1:2,2:4,3:5' });
    expect([0, 1, 2, 3, 7].map(explicit)).toEqual([1, 2, 4, 5, undefined]);
    const identity = gradeMapping({});
    expect([0, 1, 5, 6, 2.5].map(identity)).toEqual([undefined, 1, 5, undefined, undefined]);
  });

  it('reads RFC 4180 golden CSV through DuckDB, and names a file it cannot read', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pinrich-golden-'));
    const instance = await DuckDBInstance.create(':memory:');
    const conn = await instance.connect();
    try {
      const good = join(dir, 'golden.csv');
      // CRLF and LF line ends, a quoted comma and quotes, a quoted newline, an empty field, a short row.
      await writeFile(good, '\uFEFFpair_id, query ,grade\r\na,"red, ""big"" shoes",3\nb,"two\nlines",\nc,x\n');
      expect(await readGoldenCsv(conn, good)).toEqual([
        { pair_id: 'a', query: 'red, "big" shoes', grade: '3' },
        { pair_id: 'b', query: 'two\nlines', grade: null },
        { pair_id: 'c', query: 'x', grade: null },
      ]);
      const bad = join(dir, 'bad.csv');
      await writeFile(bad, 'pair_id,grade\n"a,1\n');
      await expect(readGoldenCsv(conn, bad)).rejects.toMatchObject({ code: 'schema_violation', message: expect.stringContaining(`${bad}: not a readable CSV file`) });
    } finally {
      conn.closeSync();
      instance.closeSync();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
