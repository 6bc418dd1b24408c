/**
 * Model-call metrics as decorators of the model ports (`Captioner`, `Teacher`): the stages stay
 * unaware of metrics, and every request — retries included, since the retry loop sits in the
 * stage around the port — is timed, counted by outcome, and its token usage recorded.
 */
import type { Captioner } from '../adapters/openai/captioner.js';
import type { Teacher } from '../adapters/openai/teacher.js';
import type { TokenUsage } from '../../schemas/common.js';
import { isPinrichError } from '../errors.js';
import type { PipelineMetrics } from './metrics.js';

async function timed<T extends { usage: TokenUsage | null }>(metrics: PipelineMetrics, labels: { worker: string; model: string }, call: () => Promise<T>): Promise<T> {
  metrics.modelInFlight.inc(labels);
  const started = performance.now();
  let outcome = 'ok';
  try {
    const result = await call();
    const u = result.usage;
    if (u) {
      metrics.modelTokens.inc({ ...labels, kind: 'prompt' }, u.prompt_tokens);
      metrics.modelTokens.inc({ ...labels, kind: 'completion' }, u.completion_tokens);
      metrics.modelTokens.inc({ ...labels, kind: 'cached_prompt' }, u.cached_prompt_tokens);
    }
    return result;
  } catch (err) {
    outcome = isPinrichError(err) ? err.code : 'error';
    throw err;
  } finally {
    metrics.modelInFlight.dec(labels);
    metrics.modelLatency.observe({ ...labels, outcome }, (performance.now() - started) / 1000);
  }
}

export function instrumentCaptioner(captioner: Captioner, metrics: PipelineMetrics, worker = 'caption'): Captioner {
  const labels = { worker, model: captioner.model };
  return {
    model: captioner.model,
    promptVersion: captioner.promptVersion,
    describe: (imageUrl, opts) => timed(metrics, labels, () => captioner.describe(imageUrl, opts)),
  };
}

export function instrumentTeacher(teacher: Teacher, metrics: PipelineMetrics, worker = 'score'): Teacher {
  const labels = { worker, model: teacher.model };
  return {
    model: teacher.model,
    params: teacher.params,
    ...(teacher.api ? { api: teacher.api } : {}),
    score: (prompt, opts) => timed(metrics, labels, () => teacher.score(prompt, opts)),
  };
}
