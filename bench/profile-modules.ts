/**
 * Where a profiled worker's main thread went, by module, while its stage was running: the
 * .cpuprofile files of a `--profile` run (bench/results/profiles/<run>/), restricted to the window
 * from the first to the last sample inside src/stages/ (start-up and shutdown left out), with
 * the idle share of that window (near 0: the main thread was the bound) and the busy samples
 * grouped as GC, node's internals, one npm package, or one pinrich source file.
 *
 *   tsx bench/profile-modules.ts bench/results/profiles/<run> [top]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isMain, REPO_ROOT } from './lib.js';

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string } }>;
  samples: number[];
  timeDeltas: number[];
}

/** The module a sample's frame belongs to. */
function moduleOf(fn: string, url: string): string {
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return '(program)';
  if (!url) return `native: ${fn || '(anonymous)'}`;
  if (url.startsWith('node:')) return 'node internals';
  const inModules = url.lastIndexOf('node_modules/');
  if (inModules >= 0) {
    const parts = url.slice(inModules + 'node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  return url.replace(/^file:\/\//, '').replace(`${REPO_ROOT}/`, '');
}

export function profileByModule(dir: string): { windowS: number; idlePct: number; modules: Array<{ module: string; pct: number }> } {
  const busy = new Map<string, number>();
  let windowUs = 0;
  let idleUs = 0;
  let busyUs = 0;
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
    const prof = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
    const frames = new Map(prof.nodes.map((n) => [n.id, n.callFrame]));
    const inStage = prof.samples.map((id) => frames.get(id)!.url.includes('/src/stages/'));
    const from = inStage.indexOf(true);
    const to = inStage.lastIndexOf(true);
    if (from < 0) continue; // a thread that never ran a stage
    for (let i = from; i <= to; i++) {
      const { functionName, url } = frames.get(prof.samples[i]!)!;
      const us = prof.timeDeltas[i] ?? 0;
      windowUs += us;
      if (functionName === '(idle)') {
        idleUs += us;
        continue;
      }
      busyUs += us;
      const m = moduleOf(functionName, url);
      busy.set(m, (busy.get(m) ?? 0) + us);
    }
  }
  const pct = (us: number, of: number) => Math.round((us / of) * 1000) / 10;
  return {
    windowS: Math.round(windowUs / 1e4) / 100,
    idlePct: pct(idleUs, windowUs),
    modules: [...busy].sort((a, b) => b[1] - a[1]).map(([module, us]) => ({ module, pct: pct(us, busyUs) })),
  };
}

if (isMain(import.meta.url)) {
  const [dir, top = '20'] = process.argv.slice(2);
  if (!dir) {
    process.stderr.write('usage: tsx bench/profile-modules.ts <profile dir> [top]\n');
    process.exit(2);
  }
  const r = profileByModule(dir);
  process.stdout.write(`stage window ${r.windowS} s, main thread idle ${r.idlePct} % of it; busy samples by module:\n`);
  for (const m of r.modules.slice(0, Number(top))) process.stdout.write(`${m.pct.toFixed(1).padStart(6)} %  ${m.module}\n`);
}
