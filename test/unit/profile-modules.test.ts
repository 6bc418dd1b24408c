/**
 * bench/profile-modules.ts: a CPU profile read in the stage's window only, its idle share, and
 * busy samples grouped by module (GC, node internals, an npm package, a pinrich file).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { profileByModule } from '../../bench/profile-modules.js';

const frame = (functionName: string, url = '') => ({ functionName, url });

describe('profileByModule', () => {
  it('counts only the stage window and groups busy samples by module', () => {
    const nodes = [
      { id: 1, callFrame: frame('(idle)') },
      { id: 2, callFrame: frame('handle', 'file:///repo/src/stages/score/stage.ts') },
      { id: 3, callFrame: frame('(garbage collector)') },
      { id: 4, callFrame: frame('fetch', 'file:///repo/node_modules/kafkajs/src/consumer.js') },
      { id: 5, callFrame: frame('send', 'file:///repo/node_modules/@aws-sdk/client-s3/dist/index.js') },
      { id: 6, callFrame: frame('emit', 'node:events') },
      { id: 7, callFrame: frame('compile', 'node:internal/modules') },
    ];
    // Start-up (compile, idle) before the first stage sample and after the last is left out.
    const samples = [7, 1, 7, 2, 3, 3, 4, 1, 5, 6, 2, 7, 1];
    const timeDeltas = samples.map(() => 1_000);
    const dir = mkdtempSync(join(tmpdir(), 'profile-modules-'));
    writeFileSync(join(dir, 'main.cpuprofile'), JSON.stringify({ nodes, samples, timeDeltas }));
    const r = profileByModule(dir);
    // Window: samples 3..10 (8 samples of 1 ms), one of them idle.
    expect(r.windowS).toBe(0.01);
    expect(r.idlePct).toBe(12.5);
    expect(r.modules).toEqual([
      { module: expect.stringMatching(/src\/stages\/score\/stage\.ts$/), pct: 28.6 },
      { module: 'GC', pct: 28.6 },
      { module: 'kafkajs', pct: 14.3 },
      { module: '@aws-sdk/client-s3', pct: 14.3 },
      { module: 'node internals', pct: 14.3 },
    ]);
  });
});
