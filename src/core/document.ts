/**
 * Assembling the enriched document from per-pin state. Pure and deterministic: the same state
 * always gives the same document and the same content hash, whatever order events came in.
 */
import { createHash } from 'node:crypto';
import type { EnrichedDocument } from '../../schemas/enriched-document.js';
import { resolveLanguage } from './language.js';

/** The pin fields we keep, already cleaned (see text.ts). */
export interface PinFields {
  title: string;
  description: string;
  image_key: string | null;
  link_url: string | null;
  link_title: string;
  link_description: string;
  language: string | null;
}

/** The latest caption record's stable part. */
export interface CaptionState {
  image_key: string;
  status: 'ok' | 'failed';
  text: string | null;
}

export interface PinState {
  pin: PinFields;
  caption: CaptionState | null;
  /** Top counted board titles / queries as read from the store (any order). */
  boards: Array<{ text: string; count: number }>;
  queries: Array<{ text: string; count: number }>;
  engagementCount: number;
}

export type DocumentContent = Omit<EnrichedDocument, 'version' | 'updated_at'>;

/** Highest count first, then alphabetical, at most k. */
export function topK(items: Array<{ text: string; count: number }>, k: number): Array<{ text: string; count: number }> {
  return [...items].sort((a, b) => b.count - a.count || (a.text < b.text ? -1 : a.text > b.text ? 1 : 0)).slice(0, k);
}

/** The pin text the teacher reads: labelled fields, empty ones left out. */
export function assemblePinText(d: Pick<DocumentContent, 'title' | 'description' | 'caption' | 'board_titles' | 'engaged_queries' | 'link_title' | 'link_description'>): string {
  const lines: string[] = [];
  const add = (label: string, value: string | null | undefined) => {
    if (value) lines.push(`${label}: ${value}`);
  };
  add('Title', d.title);
  add('Description', d.description);
  add('Image', d.caption);
  add('Boards', d.board_titles.map((b) => b.text).join(' | '));
  add('Searches', d.engaged_queries.map((q) => q.text).join(' | '));
  add('Link title', d.link_title);
  add('Link description', d.link_description);
  return lines.join('\n');
}

export function buildDocument(pinId: string, state: PinState, k: number): DocumentContent {
  const { pin } = state;
  // A caption counts only for the pin's current image (an update may have replaced the image).
  const caption = pin.image_key && state.caption?.image_key === pin.image_key ? state.caption : null;
  const captionStatus: DocumentContent['caption_status'] = !pin.image_key ? 'none' : caption ? caption.status : 'pending';
  // The text to detect from is only joined when there is no tag (it is not read otherwise).
  const lang = resolveLanguage(pin.language, pin.language ? '' : [pin.title, pin.description, pin.link_title].filter(Boolean).join('. '));
  // One object, built in the published key order and completed in place (pin_text, then
  // content_hash): no copies of it per document, the hot path of a flush.
  const content: Omit<DocumentContent, 'content_hash'> & { content_hash?: string } = {
    schema: 'enriched_document' as const,
    schema_version: 1 as const,
    pin_id: pinId,
    language: lang.language,
    language_source: lang.source,
    title: pin.title,
    description: pin.description,
    link_url: pin.link_url,
    link_title: pin.link_title,
    link_description: pin.link_description,
    caption: caption?.status === 'ok' ? caption.text : null,
    caption_status: captionStatus,
    board_titles: topK(state.boards, k),
    engaged_queries: topK(state.queries, k),
    engagement_count: state.engagementCount,
    pin_text: '',
  };
  content.pin_text = assemblePinText(content);
  // The hash covers every field but itself (and the version and updated_at added at publish).
  const hashed = JSON.stringify(content);
  content.content_hash = createHash('sha256').update(hashed).digest('hex');
  Object.defineProperty(content, HASHED_JSON, { value: hashed }); // not enumerable: a copy drops it
  return content as DocumentContent;
}

/**
 * The JSON that `buildDocument` hashed, kept on the content it returned: {@link documentJson}
 * extends it instead of serialising the whole document a second time (the largest cost of a
 * document). A non-enumerable symbol: JSON, spreads and comparisons never see it.
 */
const HASHED_JSON = Symbol('hashedJson');

/**
 * `JSON.stringify({ ...content, version, updated_at })`, the published document, byte for byte.
 * For content from `buildDocument` it appends the last three fields to the JSON it already
 * made for the hash (the same keys in the same order, so the same bytes).
 */
export function documentJson(content: DocumentContent, version: number, updatedAt: string): string {
  const hashed = (content as DocumentContent & { [HASHED_JSON]?: string })[HASHED_JSON];
  if (hashed === undefined) return JSON.stringify({ ...content, version, updated_at: updatedAt });
  return `${hashed.slice(0, -1)},"content_hash":${JSON.stringify(content.content_hash)},"version":${JSON.stringify(version)},"updated_at":${JSON.stringify(updatedAt)}}`;
}

/** Deterministic pair id: the same pin and normalised query always give the same pair. */
export function pairIdOf(pinId: string, foldedQuery: string): string {
  return createHash('sha256').update(`${pinId}\n${foldedQuery}`).digest('hex').slice(0, 32);
}
