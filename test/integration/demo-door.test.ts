/**
 * The demo is a door: it ends with command lines that explore its own output, and each of them
 * works when pasted as printed. The demo runs as a user runs it (`bin/pinrich.js demo`, no
 * PINRICH_* service variables: the local stack global setup started or reused), then every
 * printed line runs through a real shell with the same environment, and its output must show
 * this run's data: label rows by level and language, a distillation file with pin text, the
 * example pin's enriched document, labels, dead letters.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { runProcess } from '../support/cli.js';

const stack = inject('stack');

const stackDir = resolve(process.env.PINRICH_STACK_DIR || join(process.env.PINRICH_CACHE_DIR || join(homedir(), '.cache', 'pinrich'), 'stack'));

const run = runProcess;

const jsonLines = (stdout: string) =>
  stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { key: string | null; value: Record<string, unknown> | null });

describe.skipIf(!stack)('the demo ends with command lines that work as printed', () => {
  const cache = mkdtempSync(join(tmpdir(), 'pinrich-demo-door-'));
  afterAll(() => rmSync(cache, { recursive: true, force: true }));
  // A newcomer's shell: no PINRICH_* settings but where the stack lives; a private labels cache
  // so the test does not write into the user's.
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('PINRICH_')) env[k] = v;
  Object.assign(env, { PINRICH_STACK_DIR: stackDir, PINRICH_LABELS_CACHE: join(cache, 'labels') });

  it('runs the demo, then each printed line in a shell, each showing this run’s output', async () => {
    const demo = await run(process.execPath, ['bin/pinrich.js', 'demo', '--pins', '60', '--events', '600'], env);
    expect(demo.code, demo.stderr.slice(-3000)).toBe(0);
    const lines = demo.stdout.split('\n');
    const header = lines.findIndex((l) => l.startsWith("explore this run's output"));
    expect(header, demo.stdout.slice(-3000)).toBeGreaterThan(0);
    const commands = lines.slice(header + 1).filter((l) => l.startsWith('  ') && l.includes('npx pinrich')).map((l) => l.trim());
    const find = (re: RegExp) => {
      const found = commands.filter((c) => re.test(c));
      expect(found, `no printed line matches ${re}:\n${commands.join('\n')}`).not.toHaveLength(0);
      return found;
    };
    const sync = find(/ labels sync$/);
    const byLevel = find(/ labels query ".*group by all/);
    const top = find(/ labels query ".*limit 5"$/);
    const exportLine = find(/ labels export --distill /);
    const docByKey = find(/ topics tail pins\.enriched --key /);
    const docs = find(/ topics tail pins\.enriched --limit 3$/);
    const labels = find(/ topics tail relevance\.labels --limit 3$/);
    const dlqs = find(/ topics tail \S+\.dlq --limit 3$/);

    const sh = async (line: string) => {
      const r = await run('bash', ['-c', line], env);
      expect(r.code, `${line}\n${r.stdout}\n${r.stderr}`).toBe(0);
      return r.stdout;
    };
    await sh(sync[0]!);
    // Levels by language: a table with at least one row per level seen, all counts positive.
    const levels = await sh(`${byLevel[0]!.replace(/"$/, '')}" --format json`);
    const rows = JSON.parse(levels) as Array<{ language: string; label: number; n: number }>;
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((r) => r.label >= 1 && r.label <= 5 && Number(r.n) > 0)).toBe(true);
    // As printed (table format), the same query names the languages it found.
    const table = await sh(byLevel[0]!);
    for (const r of rows) expect(table).toContain(r.language);
    expect((await sh(top[0]!)).split('\n').filter((l) => l.trim()).length).toBeGreaterThan(3);

    const exported = await sh(exportLine[0]!);
    expect(exported).toMatch(/wrote [1-9]\d* rows to /);
    expect(exported).toMatch(/pin_text: [1-9]\d* of [1-9]\d* rows from the enriched documents in Redis/);
    rmSync(/--distill (\S+)/.exec(exportLine[0]!)![1]!, { force: true });

    const pinId = /--key (\S+)/.exec(docByKey[0]!)![1]!.replace(/^'|'$/g, '');
    const versions = jsonLines(await sh(docByKey[0]!));
    expect(versions.length).toBeGreaterThan(0);
    expect(versions.every((v) => v.key === pinId && v.value?.pin_id === pinId)).toBe(true);

    const latest = jsonLines(await sh(docs[0]!));
    expect(latest).toHaveLength(3);
    expect(latest.every((d) => d.value === null || typeof d.value.pin_text === 'string')).toBe(true);

    const lab = jsonLines(await sh(labels[0]!));
    expect(lab).toHaveLength(3);
    expect(lab.every((l) => [1, 2, 3, 4, 5].includes(l.value?.label as number))).toBe(true);

    for (const line of dlqs) {
      const dead = jsonLines(await sh(line));
      expect(dead.length, line).toBeGreaterThan(0);
      expect(dead.every((d) => typeof d.value?.error_code === 'string')).toBe(true);
    }
  }, 600_000);
});
