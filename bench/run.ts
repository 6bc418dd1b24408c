/**
 * `npm run bench`: every sub-benchmark, one after another, on the local stack (the same
 * launcher as the tests), then bench/results/latest.json and bench/results/latest.md.
 *
 *   npm run bench                    full sizes (1,000,000-event enrich backlog; ~10-15 min)
 *   npm run bench -- --quick         smoke sizes (~2 min)
 *   npm run bench -- --only enrich,dump   some of: kafka-tools, enrich, streams, score, dump, freshness, clients
 *   npm run bench -- --profile       CPU-profile the measured workers (top self-time functions)
 *   npm run bench -- --soak [--soak-minutes N]   all four workers together for 30 (N) minutes at
 *                                    a steady load: RSS and lag over time, their slopes, a plot
 *                                    (bench/soak.ts: bench/results/soak.json, soak.md, soak.svg)
 *
 * Each sub-benchmark also runs alone: `npx tsx bench/<name>.ts [--quick] [--profile]`.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runClients } from './clients.js';
import { runDump } from './dump.js';
import { runEnrich } from './enrich.js';
import { runFreshness } from './freshness.js';
import { runKafkaTools } from './kafka-tools.js';
import { figure, machine, parseFlags, RESULTS_DIR, round, type BenchOptions, type BenchResult, type Figure } from './lib.js';
import { runScore } from './score.js';
import { runSoak, soakMinutes } from './soak.js';
import { runStreams } from './streams.js';

const BENCHES: Record<string, (o: BenchOptions) => Promise<BenchResult>> = {
  'kafka-tools': runKafkaTools,
  enrich: runEnrich,
  streams: runStreams,
  score: runScore,
  dump: runDump,
  freshness: runFreshness,
  clients: runClients,
};

function markdown(results: BenchResult[], meta: Record<string, unknown>): string {
  const lines = [
    '# pinrich benchmark results',
    '',
    `Run ${String(meta.startedAt)} (${String(meta.mode)}), ${String(meta.wallSeconds)} s wall; machine: ${JSON.stringify(meta.machine)}.`,
    'The stack (Kafka, Redis, s3rver) and the model server share this machine with the worker under test,',
    'and with whatever else runs on it: compare ratios within one run rather than absolute figures across runs.',
    '',
    '| figure | value | target | met | command | settings |',
    '|---|---:|---|---|---|---|',
  ];
  for (const r of results) {
    for (const f of r.figures) {
      const target = f.target ? `${f.target.op} ${f.target.value.toLocaleString('en')}` : '';
      const met = f.target ? (f.target.met ? 'yes' : '**no**') : '';
      const settings = Object.entries(f.settings).map(([k, v]) => `${k}=${v}`).join(', ');
      lines.push(`| ${f.name} | ${f.value.toLocaleString('en')} ${f.unit} | ${target} | ${met} | \`${f.command.replace(/\|/g, '\\|')}\` | ${settings} |`);
    }
  }
  // Whatever else each benchmark returned (its run details), so no field it reports is lost.
  const detailed = results.filter((r) => r.details && Object.keys(r.details).length);
  if (detailed.length) {
    lines.push('', '## Details', '');
    for (const r of detailed) lines.push(`- **${r.bench}**: \`${JSON.stringify(r.details).replace(/\|/g, '\\|')}\``);
  }
  const profiled = results.filter((r) => r.profile?.length);
  if (profiled.length) {
    lines.push('', '## CPU profiles of the measured workers (top self time)', '');
    for (const r of profiled) {
      lines.push(`### ${r.bench}`, '', '| self % | function | where |', '|---:|---|---|');
      for (const p of r.profile!) lines.push(`| ${p.selfPct} | ${p.fn} | ${p.where} |`);
      lines.push('');
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * Figures computed across sub-benchmarks of the same run: enrich and the Kafka Streams peer
 * against Kafka's own consumer tool, and enrich against the peer (issue 8: enrich >= 0.5x the
 * peer's exactly-once figure). A ratio is left out when either of its figures is missing.
 */
function derived(results: BenchResult[], ranNow: readonly string[]): Figure[] {
  const find = (name: string) => results.flatMap((r) => r.figures).find((f) => f.name === name);
  const benchOf = (f: Figure) => results.find((r) => r.figures.includes(f))?.bench ?? '';
  const consumerTool = find('Kafka ConsumerPerformance (fetch rate)');
  const enrich = find('enrich throughput');
  const eos = find('Kafka Streams exactly_once_v2 throughput');
  const alos = find('Kafka Streams at_least_once throughput');
  const out: Figure[] = [];
  const ratio = (a: Figure | undefined, b: Figure | undefined, name: string, target?: { op: '>=' | '<='; value: number }) => {
    if (!a || !b || !b.value) return;
    out.push(
      figure({
        name,
        value: round(a.value / b.value, 3),
        unit: 'x',
        command: 'ratio of the two figures named in settings',
        settings: { [a.name]: a.value, [b.name]: b.value },
        ...(target ? { target } : {}),
        // A partial run (--only) keeps the other benchmarks' last figures: say so when a ratio mixes runs.
        ...(ranNow.includes(benchOf(a)) === ranNow.includes(benchOf(b)) ? {} : { note: 'the two figures come from different runs (--only)' }),
      }),
    );
  };
  ratio(enrich, consumerTool, 'enrich / Kafka ConsumerPerformance');
  ratio(eos, consumerTool, 'Kafka Streams exactly_once_v2 / Kafka ConsumerPerformance');
  ratio(alos, consumerTool, 'Kafka Streams at_least_once / Kafka ConsumerPerformance');
  ratio(enrich, eos, 'enrich / Kafka Streams exactly_once_v2', { op: '>=', value: 0.5 });
  ratio(enrich, alos, 'enrich / Kafka Streams at_least_once');
  return out;
}

async function main(): Promise<void> {
  if (process.argv.includes('--soak')) {
    // The soak is a run of its own (its own results files), not one of the sub-benchmarks.
    const report = await runSoak({ minutes: soakMinutes(process.argv), log: (l) => process.stderr.write(`[soak] ${l}\n`) });
    process.exit(report.samples.length ? 0 : 1);
  }
  const flags = parseFlags(process.argv.slice(2));
  const names = flags.only.length ? flags.only : Object.keys(BENCHES);
  for (const n of names) if (!BENCHES[n]) throw new Error(`unknown benchmark ${n}; known: ${Object.keys(BENCHES).join(', ')}`);
  const log = (l: string) => process.stderr.write(`[bench] ${l}\n`);
  const started = Date.now();
  const results: BenchResult[] = [];
  const failures: Array<{ bench: string; error: string }> = [];
  for (const name of names) {
    log(`--- ${name}${flags.quick ? ' (quick)' : ''}`);
    const t = Date.now();
    try {
      const r = await BENCHES[name]!({ quick: flags.quick, profile: flags.profile, log });
      results.push(r);
      for (const f of r.figures) log(`${f.name}: ${f.value.toLocaleString('en')} ${f.unit}${f.target ? ` (target ${f.target.op} ${f.target.value}: ${f.target.met ? 'met' : 'MISSED'})` : ''}`);
    } catch (err) {
      failures.push({ bench: name, error: err instanceof Error ? err.message : String(err) });
      log(`${name} FAILED: ${err instanceof Error ? err.stack : String(err)}`);
    }
    log(`${name} took ${Math.round((Date.now() - t) / 1000)} s`);
  }
  const base = flags.quick ? 'latest-quick' : 'latest';
  const file = join(RESULTS_DIR, `${base}.json`);
  if (flags.only.length && existsSync(file)) {
    // A partial run (--only) updates its benchmarks in the last results and keeps the others.
    const previous = JSON.parse(readFileSync(file, 'utf8')) as { results: BenchResult[] };
    const kept = previous.results.filter((r) => r.bench !== 'ratios' && !names.includes(r.bench));
    results.unshift(...kept);
    results.sort((a, b) => Object.keys(BENCHES).indexOf(a.bench) - Object.keys(BENCHES).indexOf(b.bench));
  }
  const extra = derived(results, names);
  if (extra.length) results.push({ bench: 'ratios', figures: extra });
  const meta = {
    startedAt: new Date(started).toISOString(),
    mode: flags.quick ? 'quick' : 'full',
    wallSeconds: Math.round((Date.now() - started) / 1000),
    machine: machine(),
    failures,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(file, JSON.stringify({ ...meta, ...(flags.only.length ? { partialRun: names } : {}), results }, null, 2) + '\n');
  writeFileSync(join(RESULTS_DIR, `${base}.md`), markdown(results, meta));
  log(`wrote bench/results/${base}.json and ${base}.md`);
  process.exit(failures.length ? 1 : 0);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
