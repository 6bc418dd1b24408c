/**
 * The heap growing factor a worker process sets itself (src/runtime/heap.ts): which process gets
 * which flag, and that V8 really takes it at run time (node refuses it in NODE_OPTIONS, so a
 * flag V8 ignored at run time would silently ship nothing).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HEAP_GROWING_PERCENT, workerHeapFlags } from '../../src/runtime/heap.js';

const ROOT = join(import.meta.dirname, '..', '..');

describe('workerHeapFlags', () => {
  it('gives the enrich worker alone its growing factor, and nothing to other workers or to a process of several', () => {
    expect(HEAP_GROWING_PERCENT.enrich).toBe(200);
    expect(workerHeapFlags(['enrich'], {}, [])).toEqual(['--heap-growing-percent=200']);
    expect(workerHeapFlags(['dump'], {}, [])).toEqual([]);
    expect(workerHeapFlags(['score'], {}, [])).toEqual([]);
    expect(workerHeapFlags(['caption', 'enrich'], {}, [])).toEqual([]);
  });

  it('a flag on the command line wins; PINRICH_HEAP_GROWING_PERCENT overrides (0 = V8\'s own); a bad value is a clear error', () => {
    expect(workerHeapFlags(['enrich'], {}, ['--heap-growing-percent=120'])).toEqual([]);
    expect(workerHeapFlags(['enrich'], { PINRICH_HEAP_GROWING_PERCENT: '0' }, [])).toEqual([]);
    expect(workerHeapFlags(['dump'], { PINRICH_HEAP_GROWING_PERCENT: '150' }, [])).toEqual(['--heap-growing-percent=150']);
    expect(workerHeapFlags(['enrich'], { PINRICH_HEAP_GROWING_PERCENT: ' ' }, [])).toEqual(['--heap-growing-percent=200']);
    for (const bad of ['-1', '2.5', 'lots', '1001']) expect(() => workerHeapFlags(['enrich'], { PINRICH_HEAP_GROWING_PERCENT: bad }, [])).toThrow(/PINRICH_HEAP_GROWING_PERCENT must be a whole number from 0 to 1000/);
  });
});

describe('tuneHeapFor', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pinrich-heap-tuning-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  // The same allocation pattern (a sliding live set, short-lived garbage) in a fresh node under
  // the shipped cap, tuned for `worker` at start; prints its mark-compacts.
  const script = join(dir, 'churn.ts');
  writeFileSync(
    script,
    `import { PerformanceObserver, constants } from 'node:perf_hooks';
import { tuneHeapFor } from ${JSON.stringify(join(ROOT, 'src/runtime/heap.ts'))};
const flags = tuneHeapFor([process.argv[2]!]);
let majors = 0;
new PerformanceObserver((l) => { for (const e of l.getEntries()) if ((e.detail as { kind: number }).kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++; }).observe({ entryTypes: ['gc'] });
const live: unknown[] = [];
for (let i = 0; i < 2_000_000; i++) {
  live.push({ a: 'x'.repeat(50) + i, b: [i, i + 1] });
  if (live.length > 200_000) live.splice(0, 1_000);
}
setTimeout(() => console.log(JSON.stringify({ flags, majors })), 50);
`,
  );
  const run = (worker: string) => {
    const env = { ...process.env };
    delete env.PINRICH_HEAP_GROWING_PERCENT;
    const r = spawnSync(process.execPath, ['--max-old-space-size=192', '--import', 'tsx', script, worker], { cwd: ROOT, encoding: 'utf8', env });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { flags: string[]; majors: number };
  };

  it('V8 takes the flag at run time: the tuned process needs clearly fewer mark-compacts for the same work', () => {
    const tuned = run('enrich');
    const plain = run('dump');
    expect(tuned.flags).toEqual(['--heap-growing-percent=200']);
    expect(plain.flags).toEqual([]);
    expect(plain.majors).toBeGreaterThan(5);
    expect(tuned.majors).toBeLessThan(plain.majors * 0.85);
  }, 60_000);
});
