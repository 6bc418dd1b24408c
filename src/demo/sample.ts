/**
 * A realistic, deterministic sample of upstream traffic for the demo and benchmarks: pins in
 * several languages (some without a language tag, to exercise detection), re-pinned images,
 * saves and search engagement with Zipf-like popularity, redelivered duplicates, a few deletes,
 * hostile image URLs and some malformed records. Same seed, same sample.
 */
import type { EngagementEventInput } from '../../schemas/engagement-event.js';
import type { PinEventInput } from '../../schemas/pin-event.js';

/** mulberry32: small, fast, good enough for test data. */
export function createRandom(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  /** Index in [0, n) with popularity ~ 1/(i+1)^s. */
  const zipf = (n: number, s = 1.1) => Math.min(n - 1, Math.floor(n * next() ** (1 + s * 2)));
  return { next, int, pick, zipf };
}

interface Lang {
  tag: string;
  topics: Array<{ subject: string; slug: string; titles: string[]; descriptions: string[]; boards: string[]; queries: string[] }>;
}

const LANGS: Lang[] = [
  {
    tag: 'en',
    topics: [
      { subject: 'recipe', slug: 'lemon-garlic-pasta', titles: ['Easy lemon garlic pasta', 'Weeknight creamy pasta in 20 minutes', 'Garlic butter spaghetti'], descriptions: ['A quick dinner with fresh lemon, garlic and parmesan.', 'Creamy, bright and ready before the water boils twice.'], boards: ['Dinner ideas', 'Pasta recipes', 'Quick meals'], queries: ['easy pasta recipes', 'lemon pasta', 'weeknight dinner', 'garlic spaghetti'] },
      { subject: 'decor', slug: 'scandinavian-living-room', titles: ['Scandinavian living room inspiration', 'Cozy minimalist lounge'], descriptions: ['Light wood, white walls and a wool throw.', 'Neutral tones and lots of plants.'], boards: ['Home decor', 'Living room', 'Minimalism'], queries: ['scandinavian living room', 'minimalist decor', 'cozy living room ideas'] },
      { subject: 'fashion', slug: 'fall-outfit-trench-coat', titles: ['Fall outfit with a trench coat', 'Autumn layering ideas'], descriptions: ['Beige trench, knit sweater and ankle boots.', 'Warm layers for chilly mornings.'], boards: ['Fall outfits', 'Style', 'What to wear'], queries: ['fall outfits', 'trench coat outfit', 'autumn fashion women'] },
    ],
  },
  {
    tag: 'fr',
    topics: [
      { subject: 'recette', slug: 'tarte-aux-pommes', titles: ['Tarte aux pommes de grand-mère', 'Tarte fine aux pommes caramélisées'], descriptions: ['Une pâte brisée maison et des pommes fondantes.', 'Le dessert d’automne par excellence.'], boards: ['Desserts', 'Recettes faciles', 'Pâtisserie'], queries: ['tarte aux pommes', 'recette dessert facile', 'pâtisserie maison'] },
      { subject: 'voyage', slug: 'provence-lavender-fields', titles: ['Champs de lavande en Provence', 'Road trip dans le Luberon'], descriptions: ['Les plus beaux villages et la lavande en juillet.', 'Itinéraire de cinq jours.'], boards: ['Voyages', 'France', 'Vacances d’été'], queries: ['lavande provence', 'voyage provence', 'villages du luberon'] },
    ],
  },
  {
    tag: 'es',
    topics: [
      { subject: 'receta', slug: 'paella-valenciana', titles: ['Paella valenciana auténtica', 'Paella de mariscos fácil'], descriptions: ['Arroz, azafrán y el socarrat perfecto.', 'Receta tradicional paso a paso.'], boards: ['Recetas', 'Cocina española', 'Comidas familiares'], queries: ['paella valenciana', 'receta de paella', 'arroz con mariscos'] },
      { subject: 'jardín', slug: 'balcony-garden-ideas', titles: ['Ideas para un balcón con plantas', 'Jardín vertical pequeño'], descriptions: ['Macetas colgantes y hierbas aromáticas.', 'Cómo aprovechar un espacio pequeño.'], boards: ['Jardinería', 'Balcones', 'Plantas'], queries: ['balcon con plantas', 'jardin vertical', 'ideas para balcones pequeños'] },
    ],
  },
  {
    tag: 'de',
    topics: [
      { subject: 'rezept', slug: 'apfelstrudel', titles: ['Omas Apfelstrudel', 'Schneller Apfelstrudel mit Blätterteig'], descriptions: ['Mit Zimt, Rosinen und Vanillesoße.', 'Ein Klassiker für den Sonntagskaffee.'], boards: ['Backen', 'Süße Rezepte', 'Kuchen'], queries: ['apfelstrudel rezept', 'kuchen backen', 'strudel blätterteig'] },
      { subject: 'wohnen', slug: 'small-kitchen-storage', titles: ['Stauraum in der kleinen Küche', 'Ordnung in der Küche'], descriptions: ['Clevere Ideen für wenig Platz.', 'Regale, Haken und Boxen.'], boards: ['Küche', 'Wohnideen', 'Organisation'], queries: ['kleine küche stauraum', 'küche organisieren', 'wohnideen küche'] },
    ],
  },
  {
    tag: 'ja',
    topics: [
      { subject: '料理', slug: 'matcha-cheesecake', titles: ['抹茶チーズケーキの作り方', '簡単な抹茶スイーツ'], descriptions: ['濃厚でなめらかな抹茶のチーズケーキ。', 'オーブンなしで作れるレシピ。'], boards: ['スイーツ', 'お菓子作り', '抹茶'], queries: ['抹茶 チーズケーキ', '簡単 スイーツ', '抹茶 レシピ'] },
      { subject: 'インテリア', slug: 'japanese-tatami-room', titles: ['和室のインテリア実例', 'ミニマルな和モダン'], descriptions: ['畳と木の温もりを生かした部屋。', 'シンプルで落ち着く空間。'], boards: ['インテリア', '和モダン', '部屋作り'], queries: ['和室 インテリア', '和モダン 部屋', 'ミニマル インテリア'] },
    ],
  },
  {
    tag: 'pt-BR',
    topics: [
      { subject: 'receita', slug: 'brigadeiro-gourmet', titles: ['Brigadeiro gourmet de festa', 'Brigadeiro de colher cremoso'], descriptions: ['Chocolate meio amargo e granulado belga.', 'O doce mais amado das festas.'], boards: ['Doces', 'Festa infantil', 'Receitas fáceis'], queries: ['brigadeiro gourmet', 'doces de festa', 'receita de brigadeiro'] },
      { subject: 'viagem', slug: 'rio-de-janeiro-beaches', titles: ['Praias do Rio de Janeiro', 'Roteiro de 3 dias no Rio'], descriptions: ['Ipanema, Copacabana e Prainha.', 'Dicas para aproveitar a cidade.'], boards: ['Viagens', 'Brasil', 'Praias'], queries: ['praias rio de janeiro', 'roteiro rio', 'viagem brasil'] },
    ],
  },
  {
    tag: 'it',
    topics: [
      { subject: 'ricetta', slug: 'tiramisu-classico', titles: ['Tiramisù classico della nonna', 'Tiramisù senza uova'], descriptions: ['Savoiardi, caffè e mascarpone.', 'Il dolce italiano più famoso.'], boards: ['Dolci', 'Ricette italiane', 'Dessert'], queries: ['tiramisù ricetta', 'dolci al cucchiaio', 'tiramisù senza uova'] },
    ],
  },
];

export interface Sample {
  pinEvents: Array<{ key: string; value: PinEventInput | string | Buffer }>;
  engagement: Array<{ key: string; value: EngagementEventInput | string | Buffer }>;
  /** What went in, for the summary and for checks. */
  facts: {
    pins: number;
    languages: string[];
    repinnedImages: number;
    hostileImageUrls: number;
    engagementEvents: number;
    duplicateEngagement: number;
    malformedPinRecords: number;
    malformedEngagementRecords: number;
    deletedPins: number;
  };
}

const HOSTILE_URLS = [
  'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
  'https://127.0.0.1:6379/',
  'file:///etc/passwd',
  'https://10.0.0.5/internal.png',
  'https://localhost/admin.png',
];

export function generateSample(opts: { pins?: number; events?: number; seed?: number; startMs?: number } = {}): Sample {
  const nPins = opts.pins ?? 1_200;
  const nEvents = opts.events ?? 24_000;
  const r = createRandom(opts.seed ?? 42);
  const t0 = opts.startMs ?? Date.parse('2026-11-28T00:00:00Z');
  const iso = (ms: number) => new Date(ms).toISOString();

  const pinEvents: Sample['pinEvents'] = [];
  const engagement: Sample['engagement'] = [];
  const pins: Array<{ id: string; lang: Lang; topic: Lang['topics'][number] }> = [];
  const images: string[] = [];
  let repinned = 0;
  let hostile = 0;

  for (let i = 0; i < nPins; i++) {
    const lang = LANGS[i % LANGS.length]!;
    const topic = r.pick(lang.topics);
    const id = `pin-${String(i).padStart(6, '0')}`;
    let image: string;
    if (i > 20 && r.next() < 0.15) {
      image = r.pick(images); // a re-pin: same image, new pin
      repinned++;
    } else if (i % 97 === 13) {
      image = HOSTILE_URLS[hostile++ % HOSTILE_URLS.length]!;
    } else {
      image = `https://images.pinrich.example/${lang.tag.toLowerCase()}/${topic.slug}-${i}.jpg`;
      images.push(image);
    }
    pins.push({ id, lang, topic });
    pinEvents.push({
      key: id,
      value: {
        schema: 'pin_event',
        schema_version: 1,
        type: 'created',
        pin_id: id,
        event_time: iso(t0 + i * 1_000),
        title: r.pick(topic.titles),
        description: `${r.pick(topic.descriptions)}  ${i % 11 === 0 ? '\u200b' : ''}`,
        image_url: image,
        link: { url: `https://blog.example.com/${topic.slug}`, title: r.pick(topic.titles), description: r.pick(topic.descriptions) },
        // Every 5th pin comes without a language tag: the enrich worker detects it.
        language: i % 5 === 0 ? undefined : lang.tag,
        board_id: `board-${r.int(500)}`,
        author_id: `user-${r.int(5_000)}`,
      },
    });
  }

  // A few updates (new title) and deletes.
  const deleted = new Set<string>();
  for (let i = 0; i < nPins; i += 53) {
    const p = pins[i]!;
    pinEvents.push({ key: p.id, value: { schema: 'pin_event', schema_version: 1, type: 'updated', pin_id: p.id, event_time: iso(t0 + 10_000_000 + i), title: `${r.pick(p.topic.titles)} (updated)`, description: r.pick(p.topic.descriptions), image_url: (pinEvents[i]!.value as { image_url: string }).image_url, language: p.lang.tag } });
  }
  for (let i = 7; i < nPins; i += 101) {
    const p = pins[i]!;
    deleted.add(p.id);
    pinEvents.push({ key: p.id, value: { schema: 'pin_event', schema_version: 1, type: 'deleted', pin_id: p.id, event_time: iso(t0 + 20_000_000 + i) } });
  }

  // Engagement: popular pins get most of it.
  let duplicates = 0;
  for (let e = 0; e < nEvents; e++) {
    const p = pins[r.zipf(nPins)]!;
    const search = r.next() < 0.55;
    const base = { schema: 'engagement_event' as const, schema_version: 1 as const, event_id: `evt-${e}`, pin_id: p.id, event_time: iso(t0 + 5_000_000 + e * 10), user_id: `user-${r.int(50_000)}` };
    const query = r.pick(p.topic.queries);
    const value: EngagementEventInput = search
      ? { ...base, type: r.pick(['search_click', 'search_click', 'closeup', 'long_click'] as const), query: r.next() < 0.1 ? `  ${query.toUpperCase()} ` : query }
      : { ...base, type: 'save', board_title: r.pick(p.topic.boards) };
    engagement.push({ key: p.id, value });
    if (r.next() < 0.03) {
      engagement.push({ key: p.id, value }); // redelivered by upstream: must count once
      duplicates++;
    }
  }

  // Malformed records, spread through both topics.
  const badPins: Sample['pinEvents'] = [
    { key: 'pin-bad-1', value: '{"schema":"pin_event","schema_version":1,"type":"created","pin_id":' },
    { key: 'pin-bad-2', value: { schema: 'pin_event', schema_version: 1, type: 'created', pin_id: 'has spaces!', event_time: 'yesterday' } as unknown as PinEventInput },
    { key: 'pin-bad-3', value: { schema: 'pin_event', schema_version: 7, type: 'created', pin_id: 'pin-v7', event_time: iso(t0) } as unknown as PinEventInput },
    { key: 'pin-bad-4', value: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]) },
    { key: 'pin-bad-5', value: { schema: 'pin_event', schema_version: 1, type: 'created', pin_id: 'pin-huge', event_time: iso(t0), title: 'x'.repeat(5_000) } },
  ];
  const badEvents: Sample['engagement'] = [
    { key: 'pin-000001', value: 'not json at all' },
    { key: 'pin-000001', value: { schema: 'engagement_event', schema_version: 1, event_id: 'evt-bad', pin_id: 'pin-000001', event_time: iso(t0), user_id: 'u', type: 'save' } as unknown as EngagementEventInput },
    { key: 'pin-000002', value: { schema: 'engagement_event', schema_version: 2, event_id: 'evt-v2', pin_id: 'pin-000002', event_time: iso(t0), user_id: 'u', type: 'save', board_title: 'x' } as unknown as EngagementEventInput },
    { key: 'pin-000003', value: { schema: 'pin_event', schema_version: 1 } as unknown as EngagementEventInput },
  ];
  for (const [i, bad] of badPins.entries()) pinEvents.splice(Math.floor(((i + 1) * pinEvents.length) / (badPins.length + 1)), 0, bad);
  for (const [i, bad] of badEvents.entries()) engagement.splice(Math.floor(((i + 1) * engagement.length) / (badEvents.length + 1)), 0, bad);

  return {
    pinEvents,
    engagement,
    facts: {
      pins: nPins,
      languages: LANGS.map((l) => l.tag),
      repinnedImages: repinned,
      hostileImageUrls: hostile,
      engagementEvents: nEvents,
      duplicateEngagement: duplicates,
      malformedPinRecords: badPins.length,
      malformedEngagementRecords: badEvents.length,
      deletedPins: deleted.size,
    },
  };
}
