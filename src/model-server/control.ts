/**
 * Remote control under /_control, for a separate process (demo, benchmarks, fault tests)
 * that cannot call {@link ModelServer.script} directly:
 * - POST /_control/script — body: a ScriptRule as JSON (`times: null` = Infinity)
 * - POST /_control/clear  — drop queued scripts
 * - GET  /_control/stats  — { requests: {caption, teacher, other, total}, byStatus }
 * - POST /_control/reset  — zero the counters and recorded requests
 * - GET  /_control/requests — recorded requests (for debugging a failing fault test)
 * No authentication: the server binds to loopback and exists for tests.
 */
import { errorBody } from './openai-shapes.js';
import { remoteScriptRuleSchema } from './script-queue.js';
import type { ModelServerStats, RecordedRequest, ScriptRule } from './types.js';

/** What the control endpoints may do to the server. */
export interface ControlTarget {
  script(rule: ScriptRule): void;
  clearScripts(): void;
  stats(): ModelServerStats;
  resetCounters(): void;
  requests(): RecordedRequest[];
}

/** Handle one control request; never throws. */
export function handleControl(method: string, path: string, body: string, target: ControlTarget): { status: number; json: unknown } {
  const route = `${method} ${path}`;
  switch (route) {
    case 'POST /_control/script': {
      let json: unknown;
      try {
        json = JSON.parse(body);
      } catch {
        return { status: 400, json: errorBody(400, 'Script rule is not valid JSON.') };
      }
      const parsed = remoteScriptRuleSchema.safeParse(json);
      if (!parsed.success) return { status: 400, json: errorBody(400, `Invalid script rule: ${parsed.error.message}`) };
      target.script(parsed.data as ScriptRule);
      return { status: 200, json: { ok: true } };
    }
    case 'POST /_control/clear':
      target.clearScripts();
      return { status: 200, json: { ok: true } };
    case 'GET /_control/stats':
      return { status: 200, json: target.stats() };
    case 'POST /_control/reset':
      target.resetCounters();
      return { status: 200, json: { ok: true } };
    case 'GET /_control/requests':
      return { status: 200, json: target.requests() };
    default:
      return { status: 404, json: errorBody(404, `Unknown control endpoint ${route}.`) };
  }
}
