/**
 * First-use installation decisions of the local stack (src/stack/install.ts), with a scripted
 * SystemRunner: which command would run, what is announced, and the message when nothing may
 * be installed. No real apt-get runs here; the real path is exercised by `.ci/run` on a fresh
 * machine (it no longer installs these itself).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ensureRedisBinaries,
  ensureSystemTools,
  JAVA_17,
  javaMajorVersion,
  MAVEN,
  REDIS_SERVER,
  type SystemRunner,
} from '../../src/stack/install.js';

interface Machine {
  uid: number;
  /** Programs on PATH; apt-get "installs" packages by adding their programs. */
  path: Set<string>;
  sudoWorks?: boolean;
  javaVersion?: string;
  aptFails?: boolean;
}

const PROGRAMS: Record<string, string[]> = {
  'redis-server': ['redis-server', 'redis-cli'], // Debian's redis-server depends on redis-tools
  'redis-tools': ['redis-cli'],
  'openjdk-17-jre-headless': ['java'],
  maven: ['mvn'],
};

function fakeRunner(m: Machine): { runner: SystemRunner; ran: string[] } {
  const ran: string[] = [];
  const runner: SystemRunner = {
    onPath: (c) => m.path.has(c),
    uid: () => m.uid,
    succeeds: async (c, args) => c === 'sudo' && args.join(' ') === '-n true' && m.sudoWorks === true,
    output: async (c) => (c === 'java' && m.path.has('java') ? (m.javaVersion ?? 'openjdk version "17.0.13" 2024-10-15') : undefined),
    run: async (c, args, env) => {
      ran.push(`${env.DEBIAN_FRONTEND === 'noninteractive' ? 'DEBIAN_FRONTEND=noninteractive ' : ''}${[c, ...args].join(' ')}`);
      if (m.aptFails) throw new Error('apt-get failed (exit code 100)');
      const i = args.indexOf('install');
      if (i >= 0) {
        for (const pkg of args.slice(i + 1).filter((a) => !a.startsWith('-'))) for (const p of PROGRAMS[pkg] ?? []) m.path.add(p);
        if (args.includes('openjdk-17-jre-headless')) m.javaVersion = 'openjdk version "17.0.13" 2024-10-15';
      }
    },
  };
  return { runner, ran };
}

const lockDir = () => mkdtempSync(join(tmpdir(), 'pinrich-install-test-'));

describe('first-use install of the stack programs', () => {
  it('as root with apt-get: announces the install in one line and runs apt-get update + install', async () => {
    const m: Machine = { uid: 0, path: new Set(['apt-get', 'java', 'mvn']) };
    const { runner, ran } = fakeRunner(m);
    const lines: string[] = [];
    await ensureRedisBinaries({ log: (l) => lines.push(l), lockDir: lockDir(), runner });
    expect(lines).toEqual(["stack: redis-server, redis-cli not found; installing Debian's redis-server redis-tools with apt-get (first use only)"]);
    expect(ran).toEqual([
      'DEBIAN_FRONTEND=noninteractive apt-get update -q',
      'DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server redis-tools',
    ]);
    expect(m.path.has('redis-server')).toBe(true);
  });

  it('with passwordless sudo: the same through sudo -n', async () => {
    const m: Machine = { uid: 1000, sudoWorks: true, path: new Set(['apt-get', 'redis-cli']) };
    const { runner, ran } = fakeRunner(m);
    await ensureSystemTools([REDIS_SERVER], { log: () => {}, lockDir: lockDir(), runner });
    expect(ran).toEqual([
      'DEBIAN_FRONTEND=noninteractive sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -q',
      'DEBIAN_FRONTEND=noninteractive sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server',
    ]);
  });

  it('not root and no passwordless sudo: installs nothing and names the exact command', async () => {
    const m: Machine = { uid: 1000, sudoWorks: false, path: new Set(['apt-get', 'java', 'mvn']) };
    const { runner, ran } = fakeRunner(m);
    await expect(ensureRedisBinaries({ log: () => {}, lockDir: lockDir(), runner })).rejects.toThrow(
      'stack: redis-server, redis-cli not found on PATH, and pinrich cannot install them here; run: sudo apt-get update && sudo apt-get install -y -q --no-install-recommends redis-server redis-tools',
    );
    expect(ran).toEqual([]);
  });

  it('without apt-get: names the package for another package manager', async () => {
    const m: Machine = { uid: 0, path: new Set(['java']) };
    const { runner, ran } = fakeRunner(m);
    await expect(ensureSystemTools([REDIS_SERVER], { log: () => {}, lockDir: lockDir(), runner })).rejects.toThrow(
      /redis-server not found on PATH.*system's package manager \(Debian\/Ubuntu: apt-get install -y -q --no-install-recommends redis-server\)/,
    );
    expect(ran).toEqual([]);
  });

  it('Java older than 17 and no Maven: one apt-get run installs both', async () => {
    const m: Machine = { uid: 0, path: new Set(['apt-get', 'java']), javaVersion: 'openjdk version "11.0.2" 2019-01-15' };
    const { runner, ran } = fakeRunner(m);
    const lines: string[] = [];
    await ensureSystemTools([JAVA_17, MAVEN], { log: (l) => lines.push(l), lockDir: lockDir(), runner });
    expect(lines).toEqual(["stack: Java 17+, Maven not found; installing Debian's openjdk-17-jre-headless maven with apt-get (first use only)"]);
    expect(ran.at(-1)).toBe('DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openjdk-17-jre-headless maven');
  });

  it('everything present: runs nothing and says nothing', async () => {
    const m: Machine = { uid: 0, path: new Set(['apt-get', 'java', 'mvn', 'redis-server', 'redis-cli']) };
    const { runner, ran } = fakeRunner(m);
    const lines: string[] = [];
    await ensureSystemTools([REDIS_SERVER, JAVA_17, MAVEN], { log: (l) => lines.push(l), lockDir: lockDir(), runner });
    expect([...ran, ...lines]).toEqual([]);
  });

  it('a failing apt-get is reported, not swallowed', async () => {
    const m: Machine = { uid: 0, path: new Set(['apt-get']), aptFails: true };
    const { runner } = fakeRunner(m);
    await expect(ensureSystemTools([MAVEN], { log: () => {}, lockDir: lockDir(), runner })).rejects.toThrow('apt-get failed');
  });

  it('reads Java major versions old and new', () => {
    expect(javaMajorVersion('openjdk version "17.0.13" 2024-10-15')).toBe(17);
    expect(javaMajorVersion('java version "1.8.0_392"')).toBe(8);
    expect(javaMajorVersion('openjdk version "21" 2023-09-19')).toBe(21);
    expect(javaMajorVersion('garbage')).toBeUndefined();
  });
});
