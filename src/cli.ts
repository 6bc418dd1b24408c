/**
 * The `pinrich` command: entry point and composition root for the CLI.
 *
 *   pinrich stack up|down|status       local Kafka + Redis + S3 (no Docker)
 *   pinrich topics create              every topic and its dead-letter twin
 *   pinrich run <worker|all>           run workers until SIGTERM/SIGINT (workers: src/workers.ts)
 *   pinrich demo [--pins N] [--events N] [--summary FILE]
 *   pinrich labels sync|query|eval|export  label dumps on S3, for data scientists
 *   pinrich enrich rebuild             replay the enrich inputs into Redis (after Redis lost them)
 *   pinrich model-server [--port N]    the stand-in OpenAI-compatible server
 *   pinrich config show|doc|readme     effective config (secrets masked) | option table | update README
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createTopics } from './adapters/kafka/admin.js';
import { createKafka } from './adapters/kafka/client.js';
import { untilKafkaAnswers } from './adapters/kafka/transient.js';
import { startApp } from './app.js';
import { ConfigError, configTable, loadConfig, redactConfig, secretValues, type Config } from './config.js';
import { devModule, tryDevModule } from './dev-modules.js';
import { describeError, isPinrichError } from './errors.js';
import { createLogger, silentLogger } from './runtime/log.js';
import { rebuildEnrichState } from './stages/enrich/rebuild.js';
import { createRedactor, type Redactor } from './runtime/redact.js';
import { WORKER_NAMES, type WorkerName } from './workers.js';

const USAGE = `usage: pinrich <command>
  stack up|down|status              local Kafka (KRaft), Redis and S3 (s3rver), no Docker
  stack up --redis-cluster          ... plus a local 3-master Redis Cluster (PINRICH_REDIS_CLUSTER)
  topics create                     create every topic and its .dlq twin (idempotent)
  topics tail <topic> [--limit N] [--key K]
                                    print a topic's latest records, one JSON line each
                                    (topic without PINRICH_TOPIC_PREFIX, e.g. pins.enriched)
  run <${WORKER_NAMES.join('|')}|all>          run workers until SIGTERM/SIGINT
  demo [--pins N] [--events N] [--summary FILE] [--teacher llama] [--golden FILE]
                                    the main job end to end on the local stack
  labels sync|query|eval|export     label dumps for data scientists (pinrich labels help)
  enrich rebuild                    replay the enrich inputs into Redis after it lost its data
  model-server [--port N] [--latency-ms N]
                                    the stand-in OpenAI-compatible model server
  config show|doc|readme            effective configuration (secrets masked) | option table | update README`;

const out = (line: string) => process.stdout.write(line + '\n');

/** A JSON logger on stderr that scrubs the config's secrets from every line. */
const processLogger = (config: Config) => {
  const redact = createRedactor(secretValues(config));
  return createLogger(config.logLevel, {}, (line) => process.stderr.write(redact(line) + '\n'));
};

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
  return v;
}

/**
 * The environment a command's config is loaded from: the process's, plus the endpoints of the
 * local stack (`pinrich stack up`, a demo) for each service the environment does not configure,
 * announced in one line on stderr (see localStackOverlay). The lookup lives in src/stack/, which
 * the production image leaves out; there the module is absent and the environment is used as is.
 */
async function commandEnv(): Promise<Record<string, string | undefined>> {
  const stack = await tryDevModule('stack');
  if (!stack) return process.env;
  const overlay = stack.localStackOverlay(process.env);
  if (overlay.notice) process.stderr.write(overlay.notice + '\n');
  return { ...process.env, ...overlay.env };
}

/** `pinrich topics tail <topic> [--limit N] [--key K]`: one JSON line per record, oldest first. */
async function topicsTail(args: string[], config: Config): Promise<number> {
  const name = args[0];
  const limit = Number(flag(args, '--limit') ?? 10);
  if (!name || name.startsWith('--') || !Number.isInteger(limit) || limit < 1) {
    process.stderr.write('usage: pinrich topics tail <topic> [--limit N] [--key K]   (N >= 1; topic without PINRICH_TOPIC_PREFIX)\n');
    return 2;
  }
  const topic = config.topicPrefix && name.startsWith(config.topicPrefix) ? name : config.topicPrefix + name;
  const { tailTopic } = await import('./adapters/kafka/tail.js');
  const kafka = createKafka(config, processLogger(config).child({ command: 'topics tail' }));
  const records = await tailTopic(kafka, topic, { limit, key: flag(args, '--key') });
  for (const r of records) out(JSON.stringify({ ...r, value: parseJson(r.value) }));
  if (records.length === 0) process.stderr.write(`pinrich: ${topic} has no records${flag(args, '--key') ? ' with that key' : ''}\n`);
  return 0;
}

/** A record value as JSON when it is JSON (documents, labels, dead letters), else its text. */
function parseJson(value: string | null): unknown {
  if (value === null) return null;
  try {
    return JSON.parse(value) as unknown;
  } catch {
    return value;
  }
}

async function main(argv: string[]): Promise<number> {
  const [cmd, sub, ...rest] = argv;
  switch (cmd) {
    case 'stack': {
      const { stackDown, stackStatus, stackUp } = await devModule('stack', `stack ${sub ?? ''}`.trim());
      const log = (l: string) => out(l);
      if (sub === 'up') {
        // --redis-cluster: also a local 3-master Redis Cluster (else PINRICH_STACK_REDIS_CLUSTER=1).
        const e = await stackUp({ log, ...(rest.includes('--redis-cluster') ? { redisCluster: true } : {}) });
        out(JSON.stringify(e, null, 2));
        return 0;
      }
      if (sub === 'down') {
        await stackDown({ log });
        return 0;
      }
      if (sub === 'status') {
        const s = await stackStatus();
        out(JSON.stringify(s, null, 2));
        return s.up ? 0 : 1;
      }
      break;
    }
    case 'topics': {
      if (sub === 'tail') return topicsTail(rest, loadConfig(await commandEnv()));
      if (sub !== 'create') break;
      const config = loadConfig(await commandEnv());
      // The workers' client settings (TLS, SASL), not a bare client: a secured cluster needs them too.
      const log = processLogger(config).child({ command: 'topics create' });
      const kafka = createKafka(config, log);
      // Retried like a worker's start-up: a broker that is still starting, or one that briefly
      // answers UNKNOWN_TOPIC_OR_PARTITION for topics it has just created, is waited for.
      const created = new Set<string>();
      // createTopics waits until every partition has a serving leader (so a first produce right
      // after this command succeeds); its probes' expected refusals stay out of the log.
      const probe = createKafka(config, silentLogger);
      await untilKafkaAnswers('topics create', async () => (await createTopics(kafka, config, { probe })).forEach((t) => created.add(t)), { log, timeoutMs: config.kafkaWaitMs });
      out(created.size ? `created: ${[...created].join(', ')}` : 'all topics exist');
      return 0;
    }
    case 'run': {
      const which: WorkerName[] = sub === 'all' ? [...WORKER_NAMES] : WORKER_NAMES.includes(sub as WorkerName) ? [sub as WorkerName] : [];
      if (which.length === 0) break;
      const config = loadConfig(await commandEnv());
      const log = processLogger(config);
      // Listen before starting: a SIGTERM during start-up (a rolling restart, a test) must still
      // drain and leave the groups cleanly, not kill the process half-started.
      const startup = new AbortController();
      const signalled = new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log.info('signal received; draining', { signal });
          startup.abort(); // ends a wait for an unreachable Redis; see StartOptions.signal
          resolve();
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      log.info('starting', { workers: which, config: redactConfig(config) });
      let app: Awaited<ReturnType<typeof startApp>>;
      try {
        app = await startApp(config, which, log, { serveOps: true, signal: startup.signal });
      } catch (err) {
        if (startup.signal.aborted && isPinrichError(err) && err.code === 'aborted') {
          log.info('stopped during start-up, before any worker joined its group');
          return 0;
        }
        throw err;
      }
      await signalled;
      await app.stop();
      return 0;
    }
    case 'demo': {
      const args = [sub, ...rest].filter((a): a is string => a !== undefined);
      const { runDemo } = await devModule('demo', 'demo');
      await runDemo({
        pins: Number(flag(args, '--pins') ?? 1_200),
        events: Number(flag(args, '--events') ?? 24_000),
        summaryFile: flag(args, '--summary'),
        teacher: flag(args, '--teacher'),
        goldenFile: flag(args, '--golden'),
        out,
      });
      return 0;
    }
    case 'enrich': {
      if (sub !== 'rebuild') break;
      const config = loadConfig(await commandEnv());
      const log = processLogger(config).child({ command: 'enrich rebuild' });
      const report = await rebuildEnrichState(config, log, out);
      out(JSON.stringify(report));
      return 0;
    }
    case 'labels': {
      // The demo, labels (DuckDB, the AWS SDK) and the model server are imported by their own
      // commands only, so `pinrich run <worker>` does not carry them in its RSS.
      const { runLabelsCommand } = await import('./labels/command.js');
      return runLabelsCommand([sub, ...rest].filter((a): a is string => a !== undefined), loadConfig(await commandEnv()), (s) => process.stdout.write(s));
    }
    case 'model-server': {
      const { main: modelServerMain } = await devModule('modelServer', 'model-server');
      await modelServerMain([sub, ...rest].filter((a): a is string => a !== undefined));
      return -1; // keeps running until a signal
    }
    case 'config': {
      if (sub === 'show') {
        out(JSON.stringify(redactConfig(loadConfig(await commandEnv())), null, 2));
        return 0;
      }
      if (sub === 'doc') {
        out(configTable());
        return 0;
      }
      if (sub === 'readme') {
        // Rewrites the table between the config-table markers of README.md.
        const path = new URL('../README.md', import.meta.url);
        const readme = readFileSync(path, 'utf8');
        const updated = readme.replace(/(<!-- config-table:start -->\n)[\s\S]*?(<!-- config-table:end -->)/, `$1${configTable()}\n$2`);
        writeFileSync(path, updated);
        out(updated === readme ? 'README.md already up to date' : 'README.md updated');
        return 0;
      }
      break;
    }
  }
  process.stderr.write(USAGE + '\n');
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof ConfigError) process.stderr.write(err.message + '\n');
    else process.stderr.write(`pinrich: ${errorRedactor()(describeError(err))}\n`);
    process.exit(1);
  },
);

/** Scrubs the configured secrets from a fatal error (identity when the config does not load). */
function errorRedactor(): Redactor {
  try {
    return createRedactor(secretValues(loadConfig()));
  } catch {
    return (text) => text;
  }
}
