/**
 * Smoke test of the benchmark suite: the quick variant of one cheap sub-benchmark (dump) runs on
 * the local stack and reports its figures with commands and settings. No timing assertions:
 * the figures depend on the machine; `npm run bench` is where they are read.
 */
import { describe, expect, inject, it } from 'vitest';
import { runDump } from '../../bench/dump.js';

describe.skipIf(!inject('stack'))('bench smoke (dump, --quick)', () => {
  it('produces a result with figures, commands, settings and targets', async () => {
    const r = await runDump({ quick: true, profile: false, log: () => {} });
    expect(r.bench).toBe('dump');
    const names = r.figures.map((f) => f.name);
    expect(names).toEqual(['dump throughput', 'dump peak RSS']);
    for (const f of r.figures) {
      expect(f.value).toBeGreaterThan(0);
      expect(f.unit).toMatch(/rows\/s|MB/);
      expect(f.command).toContain('bench/dump.ts');
      expect(f.settings.rows).toBe(50_000);
      expect(f.target).toMatchObject({ op: expect.stringMatching(/^(>=|<=)$/), met: expect.any(Boolean) });
    }
    // Every label of the backlog went through the worker and into sealed objects.
    expect(r.details).toMatchObject({ stats: { rows: 50_000, sealed: 4, rejected: 0 } });
  });
});
