/**
 * The CLI's only way into development-only code: the local stack launcher (src/stack), the demo
 * (src/demo) and the stand-in model server (src/model-server). None of them is in the production
 * image (deploy/tsconfig.build.json excludes them; docs/architecture.md, "Layout"), so:
 *
 * - the specifiers below are plain strings, imported at run time, so the production build does
 *   not follow them into those folders (a literal `import('./stack/index.js')`, even a type
 *   query on it, would pull the folder into the compiled program);
 * - a module missing from the build is one clear error naming the command, not a crash.
 *
 * The shapes are declared here, by what the CLI uses; `test/unit/deploy.test.ts` checks at type
 * level that the real modules still have them.
 */
import { PinrichError } from './errors.js';

/** What the CLI uses of each development-only module. */
export interface DevModules {
  stack: {
    stackUp(opts: { log: (line: string) => void; redisCluster?: boolean }): Promise<unknown>;
    stackDown(opts: { log: (line: string) => void }): Promise<unknown>;
    stackStatus(): Promise<{ up: boolean }>;
    /** The recorded local stack as PINRICH_* variables for what the environment leaves unset. */
    localStackOverlay(env: Record<string, string | undefined>): { env: Record<string, string>; notice?: string | undefined };
  };
  demo: {
    runDemo(opts: { pins: number; events: number; summaryFile?: string | undefined; teacher?: string | undefined; goldenFile?: string | undefined; out: (line: string) => void }): Promise<unknown>;
  };
  modelServer: {
    main(argv: string[]): Promise<unknown>;
  };
}
export type DevModuleName = keyof DevModules;

/** Where each module is, relative to this file (the same in src/ under tsx and in dist/src/). */
export const DEV_MODULE_PATHS: Readonly<Record<DevModuleName, string>> = Object.freeze({
  stack: './stack/index.js',
  demo: './demo/run.js',
  modelServer: './model-server/main.js',
});

/** The folders the production build leaves out (relative to the repository root). */
export const DEV_ONLY_DIRS = ['src/stack', 'src/model-server', 'src/demo', 'bench', 'test'] as const;

/**
 * The development-only module `name`, or undefined when this build does not have it (the
 * production image). Any other load error (a bug in the module) is rethrown.
 */
export async function tryDevModule<N extends DevModuleName>(name: N, importer: (specifier: string) => Promise<unknown> = (s) => import(s)): Promise<DevModules[N] | undefined> {
  const specifier = DEV_MODULE_PATHS[name];
  try {
    return (await importer(specifier)) as DevModules[N];
  } catch (err) {
    if (isMissing(err, specifier)) return undefined;
    throw err;
  }
}

/** The module `name`, or a `command_unavailable` error saying that `command` is development-only. */
export async function devModule<N extends DevModuleName>(name: N, command: string, importer?: (specifier: string) => Promise<unknown>): Promise<DevModules[N]> {
  const mod = await tryDevModule(name, importer);
  if (mod) return mod;
  throw new PinrichError(
    'command_unavailable',
    `\`pinrich ${command}\` is a development command and is not in this build (the production image leaves out ${DEV_MODULE_PATHS[name].replace(/^\.\//, 'src/').replace(/\/[^/]+$/, '/')}); run it from a source checkout (npx pinrich ${command})`,
  );
}

/** True when `err` says the module at `specifier` itself does not exist (not one it imports). */
function isMissing(err: unknown, specifier: string): boolean {
  const e = err as { code?: unknown; message?: unknown };
  if (e?.code !== 'ERR_MODULE_NOT_FOUND' || typeof e.message !== 'string') return false;
  // Node: "Cannot find module '/app/dist/src/stack/index.js' imported from /app/dist/src/dev-modules.js"
  const file = specifier.replace(/^\.\//, '');
  const missing = /Cannot find module '([^']+)'/.exec(e.message)?.[1] ?? '';
  return missing.replaceAll('\\', '/').endsWith(file);
}
