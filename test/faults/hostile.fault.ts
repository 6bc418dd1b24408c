/**
 * Hostile and broken input through every worker (real processes, real services), and secrets
 * under error conditions.
 *
 * - 10,000+ bad records (invalid UTF-8, truncated and deeply nested JSON, wrong types, huge
 *   strings, control characters, unknown schemas and versions, empty values) on every topic a
 *   worker consumes: each is dead-lettered by that worker with an expected code and a reason;
 * - valid but hostile records (prompt injection in every pin field, engagement text and query;
 *   image URLs aimed at private, loopback, link-local and metadata addresses or non-http
 *   schemes) are processed safely: documents with normalised text, url_rejected captions,
 *   labels; and no model request ever carries a disallowed URL (pinrich itself fetches none);
 * - no worker crashes or stalls: all four are alive at the end and their groups caught up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dlqTopic, loadConfig, topics as topicNames, type Topics } from '../../src/config.js';
import { checkImageUrl } from '../../src/core/url-policy.js';
import { DISALLOWED_IMAGE_URLS, generateHostile, type HostileRecord, type HostileTopic } from '../../src/demo/hostile.js';
import { startModelServer, type ModelServer } from '../../src/model-server/server.js';
import { produce, setupTopics, stack, waitFor } from '../support/harness.js';
import { useStackS3Credentials } from '../support/labels.js';
import { assertNoCrash, caughtUp, faultEnv, Fleet, readAll, sleep, startPrivateRedis } from './support/fleet.js';

let server: ModelServer;
beforeAll(async () => {
  useStackS3Credentials(stack());
  server = await startModelServer({ defaults: { latencyMs: 5 } });
});
afterAll(async () => {
  await server?.close();
});

const topicOf = (t: Topics, h: HostileTopic): string => ({ pinEvents: t.pinEvents, engagement: t.engagement, captions: t.captions, pairs: t.pairs, labels: t.labels })[h];
const STAGE_OF: Record<HostileTopic, string> = { pinEvents: 'caption|enrich', engagement: 'enrich', captions: 'enrich', pairs: 'score', labels: 'dump' };

async function produceAll(config: ReturnType<typeof loadConfig>, t: Topics, records: HostileRecord[]): Promise<void> {
  const by = new Map<string, Array<{ key: string; value: unknown }>>();
  for (const r of records) {
    const topic = topicOf(t, r.topic);
    by.set(topic, [...(by.get(topic) ?? []), { key: r.key, value: r.value }]);
  }
  // Small chunks: a few records are 300 KB, and the test producer sends 1,000 at a time.
  for (const [topic, list] of by) for (let i = 0; i < list.length; i += 100) await produce(config, topic, list.slice(i, i + 100));
}

describe('fault suite: hostile input', () => {
  it('dead-letters every bad record with a reason, processes hostile-but-valid ones safely, and never calls a disallowed URL', async () => {
    const env = faultEnv(server.baseUrl);
    const config = loadConfig(env);
    const t = await setupTopics(config);
    const sample = generateHostile();
    const bad = [...sample.records, ...sample.pairs].filter((r) => r.expect.outcome === 'dlq');
    expect(bad.length).toBeGreaterThanOrEqual(10_000);
    // Sanity: every URL meant to be disallowed is rejected by the policy the workers use.
    const policy = { allowedSchemes: config.imageAllowedSchemes, allowedHosts: config.imageAllowedHosts, maxLength: 2048 };
    for (const u of DISALLOWED_IMAGE_URLS) expect(checkImageUrl(u, policy).ok, u).toBe(false);

    const before = server.requests().length;
    const fleet = new Fleet(env);
    fleet.start();
    const started = Date.now();
    try {
      await produceAll(config, t, sample.records);
      const g = config.groupPrefix;
      await waitFor(
        'caption and enrich to get through the hostile input',
        async () => {
          assertNoCrash(fleet);
          return (await caughtUp(config, `${g}.caption`, [t.pinEvents])) && (await caughtUp(config, `${g}.enrich`, [t.pinEvents, t.engagement, t.captions]));
        },
        300_000,
        1_000,
      );
      // Pairs once their pins' documents exist (the score worker waits a bounded time otherwise).
      await waitFor('documents of the hostile pins', async () => {
        const docs = new Set((await readAll(config, t.enriched)).map((r) => r.key));
        return sample.pins.every((p) => docs.has(p.id));
      }, 60_000, 1_000);
      await produceAll(config, t, sample.pairs);
      await waitFor(
        'score and dump to get through the hostile input',
        async () => {
          assertNoCrash(fleet);
          if (!(await caughtUp(config, `${g}.score`, [t.pairs]))) return false;
          const dumpDead = new Set((await readAll(config, dlqTopic(t.labels))).map((r) => r.key));
          return bad.filter((b) => b.topic === 'labels').every((b) => dumpDead.has(b.key));
        },
        300_000,
        1_000,
      );
      const seconds = (Date.now() - started) / 1000;
      await sleep(1_000);
      assertNoCrash(fleet); // nothing crashed, all four still running

      // Every bad record: dead-lettered by its stage, with an expected code and a reason.
      const dead = new Map<string, Array<{ code: string; reason: string; stage: string; topic: string }>>();
      for (const topic of [t.pinEvents, t.engagement, t.captions, t.pairs, t.labels]) {
        for (const r of await readAll(config, dlqTopic(topic))) {
          const d = JSON.parse(r.value!) as { raw_key: string; error_code: string; reason: string; stage: string; source: { topic: string } };
          dead.set(d.raw_key, [...(dead.get(d.raw_key) ?? []), { code: d.error_code, reason: d.reason, stage: d.stage, topic: d.source.topic }]);
        }
      }
      const problems: string[] = [];
      const byKind = new Map<string, number>();
      for (const b of bad) {
        byKind.set(`${b.topic}/${b.kind}`, (byKind.get(`${b.topic}/${b.kind}`) ?? 0) + 1);
        const got = dead.get(b.key);
        if (!got?.length) problems.push(`${b.topic} ${b.kind} ${b.key}: not dead-lettered`);
        else
          for (const d of got) {
            if (b.expect.outcome === 'dlq' && !b.expect.codes.includes(d.code as never)) problems.push(`${b.key} (${b.kind}): code ${d.code}, expected ${b.expect.codes.join('|')}`);
            if (!d.reason.trim()) problems.push(`${b.key}: empty reason`);
            if (!new RegExp(`^(${STAGE_OF[b.topic]})$`).test(d.stage) || d.topic !== topicOf(t, b.topic)) problems.push(`${b.key}: stage ${d.stage} topic ${d.topic}`);
          }
      }
      // Valid hostile records are never dead-lettered.
      for (const p of sample.pins) if (dead.has(p.id)) problems.push(`hostile-but-valid ${p.id} was dead-lettered: ${JSON.stringify(dead.get(p.id))}`);
      expect(problems.slice(0, 20), problems.slice(0, 20).join('\n')).toEqual([]);

      // Hostile pins: documents with normalised text; disallowed images never captioned.
      const docs = new Map((await readAll(config, t.enriched)).map((r) => [r.key, r.value === null ? null : JSON.parse(r.value)]));
      // The input topics also hold the bad records produced into them: read only the hostile pins'.
      const captions = new Map((await readAll(config, t.captions)).filter((r) => r.key?.startsWith('hostile-')).map((r) => { const c = JSON.parse(r.value!); return [c.pin_id, c]; }));
      const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u200b\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/;
      for (const p of sample.pins) {
        const doc = docs.get(p.id);
        expect(doc, p.id).toBeTruthy();
        for (const f of ['title', 'description', 'link_title', 'link_description']) expect(CONTROL.test(doc[f] ?? ''), `${p.id}.${f}: ${JSON.stringify(doc[f])}`).toBe(false);
        const c = captions.get(p.id);
        if (p.disallowed) expect([c?.status, c?.error_code], p.imageUrl).toEqual(['failed', 'url_rejected']);
        else expect(c?.status, p.id).toBe('ok');
      }
      // Every valid hostile pair got a label.
      const labelled = new Set((await readAll(config, t.labels)).filter((r) => r.key?.startsWith('hostile-')).map((r) => JSON.parse(r.value!).pair_id));
      for (const pr of sample.pairs.filter((x) => x.expect.outcome === 'safe')) expect(labelled.has(JSON.parse(pr.value!.toString()).pair_id)).toBe(true);

      // No request to the model carried a disallowed URL; every image URL sent passes the policy.
      const sent = server.requests().slice(before);
      const urls = sent.flatMap((r) => JSON.stringify(r.body).match(/"url":"([^"]*)"/g) ?? []).map((m) => JSON.parse(m.slice(6)) as string);
      expect(urls.length).toBeGreaterThan(0);
      for (const u of urls) expect(checkImageUrl(u, policy).ok, u).toBe(true);
      for (const u of DISALLOWED_IMAGE_URLS) expect(urls, u).not.toContain(new URL(u, 'https://x.invalid/').toString());
      for (const u of DISALLOWED_IMAGE_URLS) expect(urls, u).not.toContain(u);
      const kinds = new Map<string, number>();
      for (const [k, n] of byKind) kinds.set(k.split('/')[1]!, (kinds.get(k.split('/')[1]!) ?? 0) + n);
      console.log(`[faults] hostile input: ${bad.length} bad records on 5 topics dead-lettered (${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}); ${sample.pins.length} hostile pins processed safely; ${urls.length} image URLs sent, none disallowed; ${seconds.toFixed(0)} s`);
    } finally {
      await fleet.stop();
    }
  });

  it('secrets never appear in logs, errors or dead-letter records', async () => {
    const SECRETS = { vlm: 'sk-vlm-Fault7Secret-3f9a1c', teacher: 'sk-teacher-Fault7Secret-77b2e0', redis: 'redis-Fault7-pw-91c4' };
    const redis = await startPrivateRedis(['--requirepass', SECRETS.redis]);
    const env = faultEnv(server.baseUrl, {
      PINRICH_VLM_API_KEY: SECRETS.vlm,
      PINRICH_TEACHER_API_KEY: SECRETS.teacher,
      PINRICH_REDIS_URL: redis.url,
      PINRICH_LOG_LEVEL: 'debug',
      PINRICH_MODEL_MAX_ATTEMPTS: '2',
    });
    const config = loadConfig(env);
    const t = await setupTopics(config);
    const fleet = new Fleet(env);
    // A model server that echoes the keys back in its error bodies (some do, in 401s).
    server.script({ kind: 'caption', match: 'secret-a', times: Infinity, reply: { status: 401, message: `Incorrect API key provided: ${SECRETS.vlm}` } });
    server.script({ kind: 'caption', match: 'secret-b', times: Infinity, reply: { status: 500, message: `upstream failed for key ${SECRETS.vlm}` } });
    server.script({ kind: 'teacher', match: 'secretq', times: Infinity, reply: { status: 400, message: `bad request with key ${SECRETS.teacher}` } });
    fleet.start();
    try {
      const pin = (id: string) => ({ schema: 'pin_event', schema_version: 1, type: 'created', pin_id: id, event_time: '2026-11-28T00:00:00.000Z', title: `Cake ${id}`, description: 'Lemon cake', image_url: `https://images.example.com/${id}.jpg`, language: 'en' });
      await produce(config, t.pinEvents, ['secret-a', 'secret-b', 'plain-c'].map((id) => ({ key: id, value: pin(id) })));
      await waitFor('documents', async () => (await readAll(config, t.enriched)).length >= 3, 120_000, 500);
      await produce(config, t.pairs, [{ key: 'plain-c', value: { schema: 'pair', schema_version: 1, pair_id: 'e'.repeat(64), pin_id: 'plain-c', query: 'secretq cake', source: 'manual', language: 'en', created_at: '2026-11-28T00:00:00.000Z' } }]);
      await waitFor('the pair to be dead-lettered', async () => (await readAll(config, dlqTopic(t.pairs))).length >= 1, 120_000, 1_000);
      // Redis goes away for a moment (and comes back empty): connection and state errors get logged.
      await redis.restart(3_000);
      await sleep(4_000);
      await fleet.stop();
      const published: string[] = [];
      for (const topic of Object.values(topicNames(config)) as string[]) {
        for (const tp of [topic, dlqTopic(topic)]) for (const r of await readAll(config, tp)) published.push(r.value ?? '');
      }
      const text = fleet.logs() + '\n' + published.join('\n');
      expect(text).toContain('captioning failed'); // the errors really happened and were reported
      for (const [name, s] of Object.entries(SECRETS)) {
        for (const form of [s, encodeURIComponent(s), Buffer.from(s).toString('base64')]) expect(text.includes(form), `${name} secret found`).toBe(false);
      }
    } finally {
      server.clearScripts();
      await fleet.stop();
      await redis.stop();
    }
  });
});
