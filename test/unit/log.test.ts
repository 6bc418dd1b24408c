/** The logger (pino underneath): the line format operators parse, levels, child fields, redaction. */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/runtime/log.js';
import { createRedactor, REDACTED } from '../../src/runtime/redact.js';

describe('logger', () => {
  it('writes one JSON object per line: level name, ISO time t, msg, bound and call fields', () => {
    const lines: string[] = [];
    const log = createLogger('info', { service: 'pinrich' }, (line) => lines.push(line));
    log.debug('not at info');
    log.info('started', { workers: ['enrich'] });
    log.child({ worker: 'enrich' }).warn('slow', { ms: 12 });
    log.error('failed', { err: new Error('boom') });
    expect(lines).toHaveLength(3);
    for (const l of lines) expect(l).not.toContain('\n');
    const [a, b, c] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(a).toEqual({ level: 'info', t: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/), service: 'pinrich', workers: ['enrich'], msg: 'started' });
    expect(b).toMatchObject({ level: 'warn', service: 'pinrich', worker: 'enrich', ms: 12, msg: 'slow' });
    // No pid/hostname: the orchestrator adds where a line came from.
    expect(Object.keys(b!).sort()).toEqual(['level', 'ms', 'msg', 'service', 't', 'worker']);
    // An Error field keeps its message (plain JSON.stringify would write {}).
    expect(c).toMatchObject({ level: 'error', msg: 'failed', err: { message: 'boom' } });
  });

  it('honours the level', () => {
    const lines: string[] = [];
    const log = createLogger('warn', {}, (line) => lines.push(line));
    log.info('no');
    log.warn('yes');
    log.child({ a: 1 }).debug('no');
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['yes']);
  });

  it('lines pass through the writer, where the CLI scrubs secrets, also JSON-escaped ones', () => {
    const lines: string[] = [];
    const secret = 'pa"ss\\word';
    const redact = createRedactor([secret]);
    const log = createLogger('info', {}, (line) => lines.push(redact(line)));
    log.info(`connecting with ${secret}`, { url: `redis://:${secret}@h:6379` });
    expect(lines.join('\n')).not.toContain('ss\\\\word');
    const parsed = JSON.parse(lines[0]!) as { msg: string; url: string };
    expect(parsed.msg).toBe(`connecting with ${REDACTED}`);
    expect(parsed.url).toBe(`redis://:${REDACTED}@h:6379`);
  });
});
