/**
 * `pinrich labels <sync|query|eval|export>`: the data scientists' side of the label dumps.
 * Everything works on the local cache (`PINRICH_LABELS_CACHE`), which `sync` fills from S3.
 */
import { parseArgs } from 'node:util';
import { createS3 } from '../adapters/s3/client.js';
import type { Config } from '../config.js';
import { describeError, isPinrichError } from '../errors.js';
import { evaluateFile, formatEvalReport } from './eval.js';
import { exportDistill, redisPinTexts } from './export.js';
import { formatCsv, formatJson, formatTable, openLabels, runQuery } from './query.js';
import { cachePaths, syncLabels } from './sync.js';

export const LABELS_USAGE = `usage: pinrich labels <command>

  sync                               copy new label dump objects from S3 into the local cache
  query "SQL" [--format table|csv|json]
                                     run DuckDB SQL over the view \`labels\` of the cache
  eval --golden FILE [--grade-column C] [--scale 0-3 | --map '0:1,1:2,2:4,3:5']
       [--model M] [--prompt-version V] [--format text|json]
                                     agreement of the teacher with human labels (CSV or JSONL)
  export --distill OUT.parquet [--model M] [--prompt-version V] [--no-pin-text]
                                     training set: pin text, query, soft label p1..p5, hard label, provenance

cache: PINRICH_LABELS_CACHE (a mirror of s3://PINRICH_S3_BUCKET/PINRICH_S3_PREFIX labels/)
`;

class UsageError extends Error {}

/** Runs `pinrich labels ...`; returns the exit code (0 ok, 1 failed, 2 usage error). */
export async function runLabelsCommand(argv: string[], config: Config, out: (s: string) => void): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case 'sync':
        return await sync(rest, config, out);
      case 'query':
        return await query(rest, config, out);
      case 'eval':
        return await evalCommand(rest, config, out);
      case 'export':
        return await exportCommand(rest, config, out);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out(LABELS_USAGE);
        return sub === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown labels command "${sub}"`);
    }
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      out(`pinrich labels: ${(err as Error).message}\n\n${LABELS_USAGE}`);
      return 2;
    }
    out(`pinrich labels ${sub}: ${isPinrichError(err) ? `${err.code}: ` : ''}${describeError(err)}\n`);
    return 1;
  }
}

async function sync(args: string[], config: Config, out: (s: string) => void): Promise<number> {
  parseArgs({ args, options: {}, allowPositionals: false });
  const store = createS3(config);
  const paths = cachePaths(config);
  try {
    const r = await syncLabels(store, paths, { onProgress: (l) => out(l + '\n') });
    out(
      `synced s3://${store.bucket}/${paths.labelsPrefix} -> ${paths.labelsDir}: ${r.listed} objects, ` +
        `${r.copied} copied (${r.bytesCopied} bytes), ${r.skipped} already cached, ${r.deleted} removed\n`,
    );
    return 0;
  } finally {
    store.close();
  }
}

async function withDb<T>(config: Config, fn: (db: Awaited<ReturnType<typeof openLabels>>) => Promise<T>): Promise<T> {
  const db = await openLabels(cachePaths(config).labelsDir);
  try {
    return await fn(db);
  } finally {
    db.close();
  }
}

async function query(args: string[], config: Config, out: (s: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { format: { type: 'string', default: 'table' } }, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('query takes exactly one SQL string');
  const format = values.format;
  if (format !== 'table' && format !== 'csv' && format !== 'json') throw new UsageError(`--format must be table, csv or json (got ${format})`);
  return withDb(config, async (db) => {
    if (db.files.length === 0) out(`note: no label files in ${cachePaths(config).labelsDir}; run \`pinrich labels sync\`\n`);
    const r = await runQuery(db, positionals[0]!);
    out(format === 'csv' ? formatCsv(r) : format === 'json' ? formatJson(r) : formatTable(r));
    return 0;
  });
}

async function evalCommand(args: string[], config: Config, out: (s: string) => void): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      golden: { type: 'string' },
      'grade-column': { type: 'string' },
      scale: { type: 'string' },
      map: { type: 'string' },
      model: { type: 'string' },
      'prompt-version': { type: 'string' },
      format: { type: 'string', default: 'text' },
    },
    allowPositionals: false,
  });
  if (!values.golden) throw new UsageError('eval needs --golden FILE');
  if (values.format !== 'text' && values.format !== 'json') throw new UsageError('--format must be text or json');
  return withDb(config, async (db) => {
    const report = await evaluateFile(db, values.golden!, {
      gradeColumn: values['grade-column'],
      scale: values.scale,
      map: values.map,
      model: values.model,
      promptVersion: values['prompt-version'],
    });
    out(values.format === 'json' ? JSON.stringify(report, null, 2) + '\n' : formatEvalReport(report));
    return report.matched > 0 ? 0 : 1;
  });
}

async function exportCommand(args: string[], config: Config, out: (s: string) => void): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      distill: { type: 'string' },
      model: { type: 'string' },
      'prompt-version': { type: 'string' },
      'no-pin-text': { type: 'boolean', default: false },
    },
    allowPositionals: false,
  });
  if (!values.distill) throw new UsageError('export needs --distill OUT.parquet');
  const pinTexts = values['no-pin-text'] ? undefined : await redisPinTexts(config);
  try {
    return await withDb(config, async (db) => {
      const r = await exportDistill(db, values.distill!, pinTexts, { model: values.model, promptVersion: values['prompt-version'] });
      out(`wrote ${r.rows} rows to ${values.distill}\n`);
      if (!pinTexts) {
        out(`pin_text: ${values['no-pin-text'] ? 'not requested' : 'Redis is unreachable'}; pin_text is NULL in every row\n`);
      } else {
        out(`pin_text: ${r.withPinText} of ${r.rows} rows from the enriched documents in Redis; ${r.rows - r.withPinText} NULL (no document)`);
        out(r.pinTextChanged > 0 ? `; ${r.pinTextChanged} from a newer document than the teacher saw (pin_text_matches_label = false)\n` : '\n');
      }
      return 0;
    });
  } finally {
    pinTexts?.close();
  }
}
