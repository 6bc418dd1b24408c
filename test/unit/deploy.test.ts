/**
 * deploy/ stays true to the code: every manifest parses, refers only to real config options,
 * the real metrics port, real `pinrich` commands and the real consumer groups and topics; the
 * image runs as non-root; the dashboard queries only metrics pinrich exports. (No Docker here:
 * the image itself is not built by the tests.)
 */
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_HEAP_MB, heapFlags, heapMbFor, WORKER_HEAP_MB } from '../../bin/heap.js';
import { registerStageCollectors } from '../../src/app.js';
import { loadConfig, OPTIONS, topics } from '../../src/config.js';
import { DEV_MODULE_PATHS, DEV_ONLY_DIRS, type DevModules } from '../../src/dev-modules.js';
import { createPipelineMetrics, registerProcessMetrics } from '../../src/runtime/metrics.js';
import { groupIdOf, WORKER_NAMES, WORKERS, type WorkerName } from '../../src/workers.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const ROOT = join(import.meta.dirname, '../..');
const DEPLOY = join(ROOT, 'deploy');
const K8S = join(DEPLOY, 'k8s');
const OPTION_ENVS = new Set(Object.values(OPTIONS).map((o) => o.env));
const SECRET_ENVS = new Set(Object.values(OPTIONS).filter((o) => 'secret' in o && o.secret).map((o) => o.env));
/** Read by the AWS SDK's default provider chain, not by pinrich's config. */
const AWS_ENVS = new Set(['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_REGION', 'AWS_PROFILE', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE']);
const DEFAULT_METRICS_PORT = Number(OPTIONS.metricsPort.default);
/** Read by node itself: pinrich's heap settings ship in it (bin/heap.js). */
const NODE_ENVS = new Set(['NODE_OPTIONS']);
const SHIPPED_NODE_OPTIONS = `--max-old-space-size=${DEFAULT_HEAP_MB}`;
/** What the `pinrich` bin starts the command `args` with (a worker may have its own cap). */
const nodeOptionsFor = (args: readonly string[]) => `--max-old-space-size=${heapMbFor(args)}`;

function docs(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8'), { merge: true }).map((d) => {
    expect(d.errors, `${file}: ${d.errors.join('; ')}`).toEqual([]);
    return d.toJS() as Obj;
  });
}
const k8s = readdirSync(K8S)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => docs(join(K8S, f)).map((doc) => ({ file: f, doc })));
const byKind = (kind: string) => k8s.filter((d) => d.doc.kind === kind).map((d) => d.doc);
const configMap = byKind('ConfigMap').find((c) => c.metadata.name === 'pinrich-config')!;
/** The config the pods get (ConfigMap values over defaults), secrets aside. */
const podConfig = loadConfig({ ...configMap.data, PINRICH_KAFKA_SASL_PASSWORD: 'x' });
const compose = docs(join(DEPLOY, 'docker-compose.yml'))[0]!;

/** `pinrich` commands and their sub-commands, from the CLI's own usage text. */
const usage = spawnSync(process.execPath, ['bin/pinrich.js'], { encoding: 'utf8' }).stderr;
const COMMANDS = new Map<string, string[] | null>();
for (const line of usage.split('\n').slice(1)) {
  const m = /^ {2}([a-z-]+)(?: ([^\s[]+))?/.exec(line);
  // A command may take several lines (`topics create`, `topics tail <topic>`): their sub-commands add up.
  if (m) COMMANDS.set(m[1]!, m[2] ? [...new Set([...(COMMANDS.get(m[1]!) ?? []), ...m[2].replace(/[<>]/g, '').split('|')])] : (COMMANDS.get(m[1]!) ?? null));
}
function checkCommand(args: unknown, where: string) {
  expect(Array.isArray(args), `${where}: args must be a list`).toBe(true);
  const [cmd, sub] = args as string[];
  expect(COMMANDS.has(cmd!), `${where}: "${cmd}" is not a pinrich command (${[...COMMANDS.keys()].join(', ')})`).toBe(true);
  const subs = COMMANDS.get(cmd!);
  if (subs) expect(subs, `${where}: "${cmd} ${sub}"`).toContain(sub);
}

/**
 * deploy/tsconfig.build.json compiled once into a temporary directory (as the Dockerfile's build
 * stage does): the emitted files (relative .js paths) and a way to run the compiled CLI.
 */
let built: { files: string[]; cli: (...args: string[]) => SpawnSyncReturns<string> } | undefined;
function productionBuild(): NonNullable<typeof built> {
  if (built) return built;
  const dir = mkdtempSync(join(tmpdir(), 'pinrich-build-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(DEPLOY, 'tsconfig.build.json'), '--outDir', join(dir, 'dist')], { encoding: 'utf8' });
  expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  const files = (readdirSync(join(dir, 'dist'), { recursive: true }) as string[]).filter((f) => f.endsWith('.js')).map((f) => f.replaceAll('\\', '/'));
  const cli = (...args: string[]) => spawnSync(process.execPath, [join(dir, 'dist/src/cli.js'), ...args], { encoding: 'utf8', env: { ...process.env, PINRICH_STACK: 'none' } });
  built = { files, cli };
  return built;
}

/** Input topics per worker, from the worker registry (what app.ts subscribes). */
function inputTopics(worker: string): readonly string[] {
  expect(WORKER_NAMES, `${worker} is not a worker`).toContain(worker);
  return WORKERS[worker as WorkerName].inputs(topics(podConfig));
}

describe('deploy/', () => {
  it('the CLI usage lists the commands the manifests use', () => {
    expect(COMMANDS.get('run')).toEqual([...WORKER_NAMES, 'all']);
    expect(COMMANDS.get('topics')).toContain('create');
    expect(COMMANDS.has('model-server')).toBe(true);
  });

  it('k8s: every env var is a pinrich option (or AWS), and secrets come from Secret references only', () => {
    for (const key of Object.keys(configMap.data)) {
      expect(OPTION_ENVS.has(key) || AWS_ENVS.has(key), `ConfigMap key ${key}`).toBe(true);
      expect(SECRET_ENVS.has(key), `${key} is a secret: reference it from pinrich-secrets, not the ConfigMap`).toBe(false);
    }
    const pods = [...byKind('Deployment'), ...byKind('Job')].map((d) => d.spec.template.spec);
    expect(pods.length).toBe(WORKER_NAMES.length + 1);
    for (const pod of pods) {
      for (const c of pod.containers) {
        for (const e of c.env ?? []) {
          expect(OPTION_ENVS.has(e.name) || AWS_ENVS.has(e.name) || NODE_ENVS.has(e.name), `env ${e.name}`).toBe(true);
          if (SECRET_ENVS.has(e.name)) {
            expect(e.value, `${e.name} must not have a literal value`).toBeUndefined();
            expect(e.valueFrom?.secretKeyRef?.name).toBe('pinrich-secrets');
          }
        }
        for (const ef of c.envFrom ?? []) expect(ef.configMapRef?.name).toBe('pinrich-config');
      }
    }
  });

  it('k8s: one Deployment per worker, running `pinrich run <worker>`, probed on the metrics port', () => {
    const deployments = byKind('Deployment');
    const port = podConfig.metricsPort;
    expect(port).toBe(DEFAULT_METRICS_PORT);
    expect(deployments.map((d) => d.spec.template.spec.containers[0].args[1]).sort()).toEqual([...WORKER_NAMES].sort());
    for (const d of deployments) {
      const pod = d.spec.template.spec;
      const c = pod.containers[0];
      checkCommand(c.args, d.metadata.name);
      expect(d.metadata.name).toBe(`pinrich-${c.args[1]}`);
      expect(c.ports).toEqual([{ name: 'metrics', containerPort: port, protocol: 'TCP' }]);
      expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
      expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
      expect(Number(d.spec.template.metadata.annotations['prometheus.io/port'])).toBe(port);
      expect(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory).toBeTruthy();
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      expect(pod.securityContext.runAsUser).not.toBe(0);
      expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
      expect(d.spec.selector.matchLabels).toEqual(d.spec.template.metadata.labels);
    }
    const job = byKind('Job')[0]!;
    checkCommand(job.spec.template.spec.containers[0].args, 'topics Job');
    expect(job.spec.template.spec.containers[0].args).toEqual(['topics', 'create']);
  });

  it('k8s: a PodDisruptionBudget and a KEDA ScaledObject per worker, on the real group and topics', () => {
    const deployments = new Map(byKind('Deployment').map((d) => [d.metadata.name as string, d]));
    const pdbs = byKind('PodDisruptionBudget');
    expect(pdbs.length).toBe(WORKER_NAMES.length);
    for (const p of pdbs) {
      const d = deployments.get(p.metadata.name);
      expect(d, `PDB ${p.metadata.name} has no Deployment`).toBeDefined();
      expect(p.spec.selector.matchLabels).toEqual(d!.spec.selector.matchLabels);
    }
    const scaled = byKind('ScaledObject');
    expect(scaled.length).toBe(WORKER_NAMES.length);
    const auth = new Set(byKind('TriggerAuthentication').map((a) => a.metadata.name));
    for (const s of scaled) {
      const d = deployments.get(s.spec.scaleTargetRef.name);
      expect(d, `ScaledObject ${s.metadata.name} targets no Deployment`).toBeDefined();
      const worker = d!.spec.template.spec.containers[0].args[1];
      const [trigger] = s.spec.triggers;
      expect(trigger.type).toBe('kafka');
      expect(auth.has(trigger.authenticationRef.name)).toBe(true);
      expect(trigger.metadata.consumerGroup).toBe(groupIdOf(podConfig, worker));
      expect(trigger.metadata.bootstrapServers.split(',')).toEqual([...podConfig.kafkaBrokers]);
      if (trigger.metadata.topic !== undefined) expect(inputTopics(worker)).toEqual([trigger.metadata.topic]);
      else expect(inputTopics(worker).length).toBeGreaterThan(1); // all of the group's topics
      expect(Number(trigger.metadata.lagThreshold)).toBeGreaterThan(0);
      // More members than partitions would sit idle.
      expect(s.spec.maxReplicaCount).toBeLessThanOrEqual(podConfig.topicPartitions);
    }
  });

  it('k8s: every worker runs with the shipped heap settings, and its memory limit leaves room above the heap cap', () => {
    const toMiB = (q: string) => {
      const m = /^(\d+)(Mi|Gi)$/.exec(q);
      expect(m, `memory quantity ${q} (Mi or Gi)`).not.toBeNull();
      return Number(m![1]) * (m![2] === 'Gi' ? 1024 : 1);
    };
    for (const d of byKind('Deployment')) {
      const c = d.spec.template.spec.containers[0];
      const nodeOptions = (c.env as Obj[]).find((e) => e.name === 'NODE_OPTIONS');
      expect(nodeOptions?.value, d.metadata.name).toBe(nodeOptionsFor(c.args));
      const cap = heapMbFor(c.args);
      const request = toMiB(c.resources.requests.memory);
      const limit = toMiB(c.resources.limits.memory);
      // Old generation + young generation (3 x 16 MB semi-spaces) + code, Buffers and native
      // memory (DuckDB, TLS) must fit under the limit, or the OOM killer acts before the GC does.
      expect(limit, `${d.metadata.name} limit`).toBeGreaterThanOrEqual(cap + 48 + 150);
      expect(request, `${d.metadata.name} request`).toBeLessThanOrEqual(limit);
      expect(request, `${d.metadata.name} request`).toBeGreaterThanOrEqual(cap + 48);
    }
  });

  it('compose: real options, real commands, the metrics port, and every worker', () => {
    const services = compose.services as Record<string, Obj>;
    const pinrich = Object.entries(services).filter(([, s]) => s.image === 'pinrich:dev');
    const workers = pinrich.filter(([, s]) => s.command[0] === 'run').map(([, s]) => s.command[1]);
    expect(workers.sort()).toEqual([...WORKER_NAMES].sort());
    for (const [name, s] of pinrich) {
      checkCommand(s.command, `compose service ${name}`);
      for (const key of Object.keys(s.environment ?? {})) expect(OPTION_ENVS.has(key) || AWS_ENVS.has(key) || NODE_ENVS.has(key), `compose ${name}: ${key}`).toBe(true);
      if (s.command[0] === 'run') {
        // The image's NODE_OPTIONS carries the default cap; a worker with its own sets it here.
        expect(s.environment.NODE_OPTIONS ?? SHIPPED_NODE_OPTIONS, `compose ${name}: NODE_OPTIONS`).toBe(nodeOptionsFor(s.command));
        const port = Number(s.environment.PINRICH_METRICS_PORT ?? DEFAULT_METRICS_PORT);
        expect(s.ports.map((p: string) => Number(p.split(':')[1]))).toEqual([port]);
        expect(s.healthcheck.test.join(' ')).toContain(`:${port}/readyz`);
      }
    }
    const loaded = loadConfig(services.caption!.environment);
    expect(loaded.kafkaBrokers).toEqual(['kafka:9092']);
  });

  it('Dockerfile: multi-stage, non-root, runs the pinrich CLI, exposes the metrics port', () => {
    const all = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8').split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
    expect(all.filter((l) => /^FROM /.test(l)).length).toBeGreaterThanOrEqual(2);
    // The production image is the last stage (what `docker build` builds without --target).
    const lastFrom = all.length - 1 - [...all].reverse().findIndex((l) => /^FROM /.test(l));
    const lines = all.slice(lastFrom);
    // It takes only the compiled build from the build stage: no sources, so no dev-only code.
    for (const l of lines.filter((x) => /^(COPY|ADD) /.test(x))) expect(l, l).toMatch(/^COPY (--from=build \/app\/dist\/ \.\/dist\/|package\.json package-lock\.json \.\/)$/);
    const users = lines.filter((l) => /^USER /.test(l)).map((l) => l.slice(5).trim());
    expect(users.length).toBeGreaterThan(0);
    expect(['root', '0']).not.toContain(users.at(-1));
    const entry = JSON.parse(lines.find((l) => l.startsWith('ENTRYPOINT '))!.slice('ENTRYPOINT '.length)) as string[];
    expect(entry[0]).toBe('node');
    // The compiled CLI: deploy/tsconfig.build.json emits src/cli.ts as dist/src/cli.js.
    expect(entry.at(-1)).toBe('dist/src/cli.js');
    const build = JSON.parse(readFileSync(join(DEPLOY, 'tsconfig.build.json'), 'utf8'));
    expect(build.compilerOptions.outDir).toBe('../dist');
    expect(build.include).toContain('../src/**/*.ts');
    checkCommand(JSON.parse(lines.find((l) => l.startsWith('CMD '))!.slice(4)), 'Dockerfile CMD');
    expect(lines).toContain(`EXPOSE ${DEFAULT_METRICS_PORT}`);
    // The heap settings the `pinrich` bin starts node with (the image runs node directly).
    expect(lines).toContain(`ENV NODE_OPTIONS=${SHIPPED_NODE_OPTIONS}`);
  });

  it('compose: the stand-in model server comes from the development-only `standin` target, not the production image', () => {
    const services = compose.services as Record<string, Obj>;
    const standin = services['model-server']!;
    expect(standin.image).not.toBe('pinrich:dev');
    expect(standin.build.target).toBe('standin');
    expect(readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8')).toMatch(/^FROM build AS standin$/m);
    // No service of the production image runs a development-only command.
    const devCommands = new Set(['stack', 'demo', 'model-server']);
    for (const [name, s] of Object.entries(services)) if (s.image === 'pinrich:dev') expect(devCommands.has(s.command[0]), `compose ${name}`).toBe(false);
  });

  it('the production build leaves out the stand-in model server, the stack launcher, the demo, benchmarks and tests', () => {
    const build = JSON.parse(readFileSync(join(DEPLOY, 'tsconfig.build.json'), 'utf8'));
    for (const dir of DEV_ONLY_DIRS) expect(build.exclude, dir).toContain(`../${dir}/**`);
    // What tsc actually emits: the included files and everything they import (a static import,
    // or a literal dynamic one, of a dev-only file would pull it back in, whatever `exclude` says).
    const emitted = productionBuild().files;
    expect(emitted).toContain('src/cli.js');
    expect(emitted).toContain('src/app.js');
    expect(emitted).toContain('src/workers.js');
    for (const file of emitted) for (const dir of DEV_ONLY_DIRS) expect(file.startsWith(`${dir}/`), `${file} is development-only but in the production build`).toBe(false);
    // The CLI reaches them only through dev-modules.ts, by paths the build does not follow.
    for (const path of Object.values(DEV_MODULE_PATHS)) expect(DEV_ONLY_DIRS.some((d) => `src/${path.slice(2)}`.startsWith(`${d}/`)), path).toBe(true);
  }, 180_000);

  it('the compiled production CLI runs, and says a development command is not in this build', () => {
    const { cli } = productionBuild();
    const doc = cli('config', 'doc');
    expect(doc.status, doc.stderr).toBe(0);
    expect(doc.stdout).toContain('PINRICH_KAFKA_BROKERS');
    for (const [args, folder] of [[['demo'], 'src/demo/'], [['stack', 'status'], 'src/stack/'], [['model-server'], 'src/model-server/']] as const) {
      const r = cli(...args);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toContain(`\`pinrich ${args.join(' ')}\` is a development command and is not in this build`);
      expect(r.stderr).toContain(folder);
    }
  }, 180_000);

  it('Grafana: every metric the dashboard queries is one pinrich exports', async () => {
    const m = createPipelineMetrics();
    registerProcessMetrics(m.registry);
    registerStageCollectors(m, () => ({}));
    const families = [...(await m.registry.expose()).matchAll(/^# TYPE (\S+) (\S+)$/gm)];
    const exported = new Set(families.flatMap(([, name, kind]) => (kind === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name!])));
    const dash = JSON.parse(readFileSync(join(DEPLOY, 'grafana/pinrich-dashboard.json'), 'utf8'));
    const exprs: string[] = dash.panels.flatMap((p: Obj) => p.targets.map((t: Obj) => t.expr));
    const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\b((?:pinrich|process|nodejs)_[a-z0-9_]+)\b/g)].map((x) => x[1]!)));
    expect(used.size).toBeGreaterThan(10);
    for (const name of used) expect(exported.has(name), `dashboard queries unknown metric ${name}`).toBe(true);
    // And every pinrich family is on the dashboard somewhere.
    for (const [, name] of families) if (name!.startsWith('pinrich_') && name !== 'pinrich_stage_events_total') expect(exprs.join(' '), name).toContain(name);
    // And the Node.js runtime from prom-client's default metrics: event-loop lag, heap, GC.
    for (const name of ['nodejs_eventloop_lag_p99_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_gc_duration_seconds_sum']) expect(used, name).toContain(name);
  });
});

describe('the pinrich bin starts node with the shipped heap settings', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pinrich-heap-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  // Preloaded into every node process the bin starts (NODE_OPTIONS is inherited): each one
  // appends its pid, parent pid and V8 heap limit to `log`.
  const probe = join(dir, 'probe.cjs');
  writeFileSync(probe, `require('fs').appendFileSync(process.env.HEAP_PROBE_LOG, JSON.stringify({ pid: process.pid, ppid: process.ppid, limitMB: require('v8').getHeapStatistics().heap_size_limit / 2 ** 20 }) + '\\n');`);
  let runs = 0;
  const pinrich = (args: string[], env: Record<string, string> = {}) => {
    const log = join(dir, `run-${++runs}.log`);
    const r = spawnSync(process.execPath, ['bin/pinrich.js', ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: `--require ${probe} ${env.NODE_OPTIONS ?? ''}`, HEAP_PROBE_LOG: log, PINRICH_STACK: 'none', ...Object.fromEntries(Object.entries(env).filter(([k]) => k !== 'NODE_OPTIONS')) } });
    const lines = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { pid: number; ppid: number; limitMB: number }) : [];
    // One per process (tsx's loader thread runs the preload again, in the same process).
    const nodes = lines.filter((n, i) => lines.findIndex((m) => m.pid === n.pid) === i);
    return { ...r, nodes };
  };
  // V8's limit is the old generation plus the young one (3 semi-spaces of 16 MB).
  const young = 48;

  it('by default: the command runs in a node whose old generation is DEFAULT_HEAP_MB', () => {
    const r = pinrich(['config', 'doc']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('PINRICH_KAFKA_BROKERS');
    expect(r.nodes).toHaveLength(2);
    const [launcher, worker] = r.nodes;
    expect(worker!.ppid).toBe(launcher!.pid);
    expect(worker!.limitMB).toBe(DEFAULT_HEAP_MB + young);
    expect(launcher!.limitMB).toBeGreaterThan(DEFAULT_HEAP_MB + young);
  });

  it('a worker with a cap of its own (WORKER_HEAP_MB) starts under it; everything else under the default', () => {
    expect(WORKER_HEAP_MB.enrich).toBeLessThan(DEFAULT_HEAP_MB);
    expect(heapFlags({}, [], ['run', 'enrich'])).toEqual([`--max-old-space-size=${WORKER_HEAP_MB.enrich}`]);
    for (const args of [['run', 'dump'], ['run', 'all'], ['enrich', 'rebuild'], []]) expect(heapFlags({}, [], args), args.join(' ')).toEqual([SHIPPED_NODE_OPTIONS]);
    expect(heapFlags({ PINRICH_HEAP_MB: '300' }, [], ['run', 'enrich'])).toEqual(['--max-old-space-size=300']); // the override wins
    // The real bin: `run enrich` with a setting out of range, so the command exits at once (after
    // the relaunched node started: the probe saw its heap).
    const r = pinrich(['run', 'enrich'], { PINRICH_REDIS_WAIT_MS: '1' });
    expect(r.status, r.stderr).not.toBe(0);
    expect(r.nodes.at(-1)!.limitMB).toBe(WORKER_HEAP_MB.enrich! + young);
  });

  it('PINRICH_HEAP_MB sets the cap, a --max-old-space-size in NODE_OPTIONS wins, and a bad value is a clear error', () => {
    expect(pinrich(['config', 'doc'], { PINRICH_HEAP_MB: '320' }).nodes.at(-1)!.limitMB).toBe(320 + young);
    const own = pinrich(['config', 'doc'], { NODE_OPTIONS: '--max-old-space-size=400', PINRICH_HEAP_MB: '320' });
    expect(own.status, own.stderr).toBe(0);
    expect(own.nodes.map((n) => n.limitMB)).toEqual([400 + young]); // no relaunch
    expect(heapFlags({ PINRICH_HEAP_MB: '0' }, [])).toEqual([]); // V8's own sizing
    const bad = pinrich(['config', 'doc'], { PINRICH_HEAP_MB: '12' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('PINRICH_HEAP_MB must be a whole number of MB, at least 64');
  });

  it('the relaunched node gets the launcher\'s signals and exit status, and dies with it even on SIGKILL', async () => {
    const start = () => {
      const log = join(dir, `run-${++runs}.log`);
      const child = spawn(process.execPath, ['bin/pinrich.js', 'model-server', '--port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: `--require ${probe}`, HEAP_PROBE_LOG: log, PINRICH_STACK: 'none' } });
      // The model server prints its base URL once it listens (in the relaunched node).
      const listening = new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
      const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
      const workerPid = async () => {
        await listening;
        return JSON.parse(readFileSync(log, 'utf8').trim().split('\n').at(-1)!).pid as number;
      };
      return { child, exited, workerPid };
    };
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    const gone = async (pid: number) => {
      for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
      return !alive(pid);
    };

    const a = start();
    const aPid = await a.workerPid();
    expect(aPid).not.toBe(a.child.pid);
    a.child.kill('SIGTERM');
    const aExit = await a.exited;
    expect(await gone(aPid)).toBe(true);
    // The model server stops on SIGTERM: the launcher reports what the worker did.
    expect(aExit.code !== null || aExit.signal === 'SIGTERM').toBe(true);

    const b = start();
    const bPid = await b.workerPid();
    b.child.kill('SIGKILL');
    await b.exited;
    expect(await gone(bPid), 'the relaunched node outlived its killed launcher').toBe(true);
  }, 60_000);
});

// The CLI declares what it uses of each development-only module (src/dev-modules.ts) so that the
// production build need not see them; this keeps those declarations true (npm run typecheck).
type Conforms<Real extends Declared, Declared> = Real;
export type DevModulesConform = [
  Conforms<typeof import('../../src/stack/index.js'), DevModules['stack']>,
  Conforms<typeof import('../../src/demo/run.js'), DevModules['demo']>,
  Conforms<typeof import('../../src/model-server/main.js'), DevModules['modelServer']>,
];
