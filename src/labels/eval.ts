/**
 * `pinrich labels eval --golden FILE`: agreement of the teacher's labels with human labels.
 *
 * The golden file is CSV (with a header; read by DuckDB's read_csv) or JSON Lines. Each row names a pair by `pair_id`, or by
 * `query` + `pin_id` (matched on pin_id and the query trimmed and lower-cased), and carries a
 * human grade (column `--grade-column`, else the first of grade, human_grade, human_label,
 * rating, label, score). Grades on another scale are mapped to 1..5: `--scale 0-3` maps
 * linearly and rounds (0,1,2,3 -> 1,2,4,5), `--map '0:1,1:2,2:4,3:5'` maps explicitly. An
 * optional `language` column overrides the label's language for the per-language breakdown.
 *
 * The teacher label of a pair is its latest (by labeled_at) in the cache, optionally restricted
 * to one model / prompt version.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { PinrichError } from '../errors.js';
import { agreement, confusionMatrix, spearman, type Agreement } from './metrics.js';
import type { LabelsDb } from './query.js';

export type GoldenRow = Record<string, string | number | null>;

/**
 * The rows of a golden CSV file (RFC 4180, with a header; quoted fields may hold commas, quotes
 * and newlines), read by DuckDB's `read_csv`: every value as text, an empty field as null, a
 * short row padded with nulls, header names trimmed. A file DuckDB cannot read as CSV (an
 * unterminated quote, say) is a `schema_violation` naming the file.
 */
export async function readGoldenCsv(conn: LabelsDb['conn'], path: string): Promise<GoldenRow[]> {
  let rows: Array<Record<string, unknown>>;
  try {
    // strict_mode off: mixed \r\n / \n line ends and quoted newlines read as RFC 4180 allows.
    const reader = await conn.runAndReadAll(
      `SELECT * FROM read_csv($path, header = true, all_varchar = true, delim = ',', quote = '"', escape = '"', null_padding = true, strict_mode = false)`,
      { path },
    );
    rows = reader.getRowObjectsJS() as Array<Record<string, unknown>>;
  } catch (err) {
    const reason = (err as Error).message.split('\n').find((l) => l.trim() !== '') ?? String(err);
    throw new PinrichError('schema_violation', `${path}: not a readable CSV file (${reason})`, { cause: err });
  }
  return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k.trim().replace(/^\uFEFF/, ''), v === null || v === undefined || v === '' ? null : String(v)])));
}

/** True when `fileName` / `text` is JSON Lines rather than CSV. */
function isJsonLines(text: string, fileName: string): boolean {
  const ext = extname(fileName).toLowerCase();
  return ext === '.jsonl' || ext === '.ndjson' || ext === '.json' || (ext !== '.csv' && text.trimStart().startsWith('{'));
}

/** JSON Lines: one object per non-empty line. */
export function parseJsonLines(text: string, fileName: string): GoldenRow[] {
  return text
    .split(/\r?\n/)
    .map((l, i) => [l.trim(), i + 1] as const)
    .filter(([l]) => l !== '')
    .map(([l, n]) => {
      try {
        const v: unknown = JSON.parse(l);
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
        return v as GoldenRow;
      } catch (err) {
        throw new PinrichError('schema_violation', `${fileName}:${n}: not a JSON object (${(err as Error).message})`);
      }
    });
}

/** The golden rows of the file at `path`: CSV through DuckDB, or JSON Lines. */
export async function readGolden(db: LabelsDb, path: string): Promise<GoldenRow[]> {
  const text = await readFile(path, 'utf8');
  if (isJsonLines(text, path)) return parseJsonLines(text, path);
  // An empty file has no header: no rows (DuckDB would invent a column0).
  if (text.trim() === '') return [];
  return readGoldenCsv(db.conn, path);
}

/** A grade mapping from `--scale lo-hi` or `--map 'a:b,...'`; identity on 1..5 without either. */
export function gradeMapping(opts: { scale?: string; map?: string }): (g: number) => number | undefined {
  if (opts.scale && opts.map) throw new PinrichError('config_invalid', 'give --scale or --map, not both');
  if (opts.map) {
    const table = new Map<number, number>();
    for (const part of opts.map.split(',').map((s) => s.trim()).filter(Boolean)) {
      const m = /^(-?\d+(?:\.\d+)?)\s*:\s*([1-5])$/.exec(part);
      if (!m) throw new PinrichError('config_invalid', `--map: "${part}" is not "grade:1..5"`);
      table.set(Number(m[1]), Number(m[2]));
    }
    return (g) => table.get(g);
  }
  if (opts.scale) {
    const m = /^(-?\d+)\s*-\s*(-?\d+)$/.exec(opts.scale);
    const lo = Number(m?.[1]);
    const hi = Number(m?.[2]);
    if (!m || !(hi > lo)) throw new PinrichError('config_invalid', `--scale: "${opts.scale}" is not "low-high" (e.g. 0-3)`);
    return (g) => (g < lo || g > hi ? undefined : Math.round(1 + ((g - lo) * 4) / (hi - lo)));
  }
  return (g) => (Number.isInteger(g) && g >= 1 && g <= 5 ? g : undefined);
}

export interface EvalOptions {
  gradeColumn?: string;
  scale?: string;
  map?: string;
  model?: string;
  promptVersion?: string;
}

export interface EvalReport {
  goldenRows: number;
  matched: number;
  /** Golden rows with no teacher label in the cache. */
  unmatched: number;
  /** Golden rows without a usable grade or key. */
  invalid: number;
  gradeColumn: string;
  overall: Agreement & { spearmanExpected: number | null };
  /** Rows: human grade 1..5; columns: teacher grade 1..5. */
  confusion: number[][];
  byLanguage: Record<string, Agreement>;
}

const GRADE_COLUMNS = ['grade', 'human_grade', 'human_label', 'rating', 'label', 'score'];

export async function evaluate(db: LabelsDb, golden: GoldenRow[], opts: EvalOptions = {}): Promise<EvalReport> {
  const columns = new Set(golden.flatMap((r) => Object.keys(r)));
  const gradeColumn = opts.gradeColumn ?? GRADE_COLUMNS.find((c) => columns.has(c));
  if (!gradeColumn || !columns.has(gradeColumn)) {
    throw new PinrichError('config_invalid', `golden file: no grade column (looked for ${opts.gradeColumn ?? GRADE_COLUMNS.join(', ')}; found ${[...columns].join(', ')})`);
  }
  const byPair = columns.has('pair_id');
  if (!byPair && !(columns.has('query') && columns.has('pin_id'))) {
    throw new PinrichError('config_invalid', 'golden file: rows need pair_id, or query and pin_id');
  }
  const map = gradeMapping(opts);
  let invalid = 0;
  await db.conn.run('CREATE OR REPLACE TEMP TABLE golden (k VARCHAR, grade INTEGER, language VARCHAR)');
  const appender = await db.conn.createAppender('golden', 'main', 'temp');
  try {
    for (const r of golden) {
      const raw = r[gradeColumn];
      const grade = raw === null || raw === undefined || String(raw).trim() === '' ? undefined : map(Number(raw));
      const k = byPair ? r.pair_id : r.query !== null && r.query !== undefined && r.pin_id ? `${r.pin_id}\u0000${String(r.query).trim().toLowerCase()}` : null;
      if (grade === undefined || k === null || k === undefined || k === '') {
        invalid++;
        continue;
      }
      appender.appendVarchar(String(k));
      appender.appendInteger(grade);
      if (r.language === null || r.language === undefined || r.language === '') appender.appendNull();
      else appender.appendVarchar(String(r.language));
      appender.endRow();
    }
    appender.flushSync();
  } finally {
    appender.closeSync();
  }
  const where: string[] = [];
  const params: Record<string, string> = {};
  if (opts.model) (where.push('teacher_model = $model'), (params.model = opts.model));
  if (opts.promptVersion) (where.push('prompt_version = $pv'), (params.pv = opts.promptVersion));
  const keyExpr = byPair ? 'pair_id' : `pin_id || chr(0) || lower(trim(query))`;
  const sql = `
    WITH latest AS (
      SELECT ${keyExpr} AS k, label, expected_score, language
      FROM labels ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
      QUALIFY row_number() OVER (PARTITION BY ${keyExpr} ORDER BY labeled_at DESC, kafka_offset DESC) = 1
    )
    SELECT g.grade AS human, l.label AS teacher, l.expected_score AS expected, coalesce(g.language, l.language) AS language
    FROM golden g JOIN latest l USING (k)`;
  const rows = (await db.conn.runAndReadAll(sql, params)).getRowObjectsJS() as Array<{ human: number; teacher: number; expected: number; language: string }>;
  const human = rows.map((r) => Number(r.human));
  const teacher = rows.map((r) => Number(r.teacher));
  const byLanguage: Record<string, Agreement> = {};
  for (const lang of [...new Set(rows.map((r) => r.language))].sort()) {
    const sel = rows.filter((r) => r.language === lang);
    byLanguage[lang] = agreement(sel.map((r) => Number(r.human)), sel.map((r) => Number(r.teacher)));
  }
  const valid = golden.length - invalid;
  return {
    goldenRows: golden.length,
    matched: rows.length,
    unmatched: valid - rows.length,
    invalid,
    gradeColumn,
    overall: { ...agreement(human, teacher), spearmanExpected: spearman(human, rows.map((r) => Number(r.expected))) },
    confusion: confusionMatrix(human, teacher),
    byLanguage,
  };
}

export async function evaluateFile(db: LabelsDb, path: string, opts: EvalOptions = {}): Promise<EvalReport> {
  return evaluate(db, await readGolden(db, path), opts);
}

const f = (v: number | null, digits = 3) => (v === null ? 'n/a' : v.toFixed(digits));

export function formatEvalReport(r: EvalReport): string {
  const lines = [
    `golden rows: ${r.goldenRows}  matched: ${r.matched}  no teacher label: ${r.unmatched}  unusable: ${r.invalid}  (grade column: ${r.gradeColumn})`,
    '',
    `exact accuracy       ${f(r.overall.exact)}`,
    `within-one accuracy  ${f(r.overall.withinOne)}`,
    `quadratic kappa      ${f(r.overall.kappa)}`,
    `spearman (hard)      ${f(r.overall.spearman)}`,
    `spearman (expected)  ${f(r.overall.spearmanExpected)}`,
    '',
    'confusion (rows: human 1-5, columns: teacher 1-5)',
    '        ' + [1, 2, 3, 4, 5].map((g) => `t${g}`.padStart(6)).join(''),
    ...r.confusion.map((row, i) => `  h${i + 1}    ` + row.map((v) => String(v).padStart(6)).join('')),
    '',
    'per language',
    `  ${'language'.padEnd(10)}${'n'.padStart(6)}${'exact'.padStart(8)}${'within1'.padStart(9)}${'kappa'.padStart(8)}${'spearman'.padStart(10)}`,
    ...Object.entries(r.byLanguage).map(
      ([lang, a]) => `  ${lang.padEnd(10)}${String(a.n).padStart(6)}${f(a.exact).padStart(8)}${f(a.withinOne).padStart(9)}${f(a.kappa).padStart(8)}${f(a.spearman).padStart(10)}`,
    ),
  ];
  return lines.join('\n') + '\n';
}
