/**
 * `pins.engagement`: a user engaged with a pin. Saves carry the title of the board the pin was
 * saved to; search engagement (click, closeup, long click) carries the query that led to it.
 * Keyed by pin_id; deduplicated by event_id.
 */
import { z } from 'zod';
import { header, Id, LIMITS, text, Timestamp } from './common.js';

export const ENGAGEMENT_EVENT = 'engagement_event';
export const ENGAGEMENT_EVENT_VERSION = 1;

const Base = {
  ...header(ENGAGEMENT_EVENT, ENGAGEMENT_EVENT_VERSION),
  event_id: Id,
  pin_id: Id,
  event_time: Timestamp,
  user_id: Id,
};

export const SaveEvent = z.object({
  ...Base,
  type: z.literal('save'),
  board_title: text(LIMITS.boardTitle).min(1),
});

export const SEARCH_ENGAGEMENT_TYPES = ['search_click', 'closeup', 'long_click'] as const;

export const SearchEngagementEvent = z.object({
  ...Base,
  type: z.enum(SEARCH_ENGAGEMENT_TYPES),
  query: text(LIMITS.query).min(1),
});

export const EngagementEvent = z.union([SaveEvent, SearchEngagementEvent]);
export type EngagementEvent = z.infer<typeof EngagementEvent>;
export type EngagementEventInput = z.input<typeof EngagementEvent>;
