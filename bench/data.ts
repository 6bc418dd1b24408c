/**
 * Deterministic benchmark records, generated on the fly (a 1,000,000-event backlog never sits
 * in memory as objects): pin events, engagement events with Zipf-like pin popularity, pairs and
 * labels. Sizes are close to production records (an engagement event is ~230 bytes of JSON).
 */
import { createHash } from 'node:crypto';
import type { Message } from 'kafkajs';
import { createRandom } from '../src/demo/sample.js';

const LANGS = ['en', 'fr', 'es', 'de', 'ja', 'pt-BR', 'it'] as const;
const WORDS = ['pasta', 'lemon', 'garlic', 'dinner', 'living', 'room', 'scandinavian', 'trench', 'coat', 'fall', 'outfit', 'tarte', 'pommes', 'paella', 'garden', 'balcony', 'strudel', 'matcha', 'cheesecake', 'brigadeiro', 'tiramisu', 'beach', 'travel', 'kitchen', 'storage', 'minimalist', 'cozy', 'recipe', 'easy', 'quick'];
const T0 = Date.parse('2026-11-28T00:00:00Z');

export const pinId = (i: number) => `pin-${String(i).padStart(7, '0')}`;

function phrase(r: ReturnType<typeof createRandom>, n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(r.pick(WORDS));
  return out.join(' ');
}

/** A `created` pin event for pin `i`. */
export function pinEventMessage(i: number): Message {
  const r = createRandom(i + 1);
  const id = pinId(i);
  const value = {
    schema: 'pin_event',
    schema_version: 1,
    type: 'created',
    pin_id: id,
    event_time: new Date(T0 + i).toISOString(),
    title: phrase(r, 4),
    description: `${phrase(r, 12)}.`,
    image_url: `https://images.pinrich.example/${id}.jpg`,
    link: { url: `https://blog.example.com/${id}`, title: phrase(r, 4), description: phrase(r, 10) },
    language: LANGS[i % LANGS.length],
    board_id: `board-${r.int(500)}`,
    author_id: `user-${r.int(5_000)}`,
  };
  return { key: id, value: JSON.stringify(value) };
}

/**
 * Engagement event `e` (event ids unique per `runId`) on one of `pins` pins, popular pins
 * getting most of it. `pin` forces the pin (freshness runs pick it themselves).
 */
export function engagementMessage(e: number, pins: number, runId: string, pin?: number, at = T0 + 5_000_000 + e): Message {
  const r = createRandom(e * 7 + 3);
  const p = pin ?? r.zipf(pins, 0.6);
  const id = pinId(p);
  const base = `"schema":"engagement_event","schema_version":1,"event_id":"${runId}-${e}","pin_id":"${id}","event_time":"${new Date(at).toISOString()}","user_id":"user-${r.int(1_000_000)}"`;
  const value =
    r.next() < 0.55
      ? `{${base},"type":"search_click","query":"${phrase(r, 1 + r.int(3))}"}`
      : `{${base},"type":"save","board_title":"${phrase(r, 1 + r.int(2))}"}`;
  return { key: id, value };
}

/** Pair `k`: pin `floor(k / perPin)`, a query of its own. */
export function pairMessage(k: number, perPin: number): Message {
  const p = Math.floor(k / perPin);
  const id = pinId(p);
  const query = `${phrase(createRandom(k + 11), 2)} ${k}`;
  const value = {
    schema: 'pair',
    schema_version: 1,
    pair_id: createHash('sha256').update(`${id}\n${query}`).digest('hex').slice(0, 32),
    pin_id: id,
    query,
    source: 'search_engagement',
    language: LANGS[p % LANGS.length],
    created_at: new Date(T0 + k).toISOString(),
  };
  return { key: id, value: JSON.stringify(value) };
}

/** Label `k`, as the score worker writes it (~800 bytes). */
export function labelMessage(k: number, partitions: number): Message {
  const r = createRandom(k + 5);
  const p = k % 50_000;
  const level = 1 + r.int(5);
  const dist = [0.05, 0.1, 0.2, 0.3, 0.35];
  const id = pinId(p);
  const query = phrase(r, 3);
  const value = {
    schema: 'label',
    schema_version: 1,
    pair_id: createHash('sha256').update(`${id}\n${query}\n${k}`).digest('hex').slice(0, 32),
    pin_id: id,
    query,
    language: LANGS[p % LANGS.length],
    label: level,
    distribution: dist,
    expected_score: 3.8,
    label_source: 'logprobs',
    teacher: { model: 'pin-relevance-teacher-8b', prompt_version: 'teacher-v1', prompt_hash: createHash('sha256').update(String(k)).digest('hex'), temperature: 0, max_tokens: 1, top_logprobs: 20 },
    doc_version: 1 + r.int(5),
    doc_hash: createHash('sha256').update(id).digest('hex'),
    usage: { prompt_tokens: 250, completion_tokens: 1, total_tokens: 251, cached_prompt_tokens: 200 },
    latency_ms: 12.5,
    cached: false,
    labeled_at: new Date(T0 + k).toISOString(),
  };
  // Explicit partitions, round robin: every partition gets exactly count/partitions labels, so
  // the dump's aligned blocks all fill and seal (and their offsets are committed).
  return { key: id, value: JSON.stringify(value), partition: k % partitions };
}
