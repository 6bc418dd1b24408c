/** `pins.events`: a pin was created, updated or deleted (upstream ingestion). Keyed by pin_id. */
import { z } from 'zod';
import { header, Id, LanguageTag, LIMITS, text, Timestamp } from './common.js';

export const PIN_EVENT = 'pin_event';
export const PIN_EVENT_VERSION = 1;

const PinFields = {
  ...header(PIN_EVENT, PIN_EVENT_VERSION),
  pin_id: Id,
  event_time: Timestamp,
};

const PinContent = {
  title: text(LIMITS.title).default(''),
  description: text(LIMITS.description).default(''),
  /** Image to caption. Checked against the URL policy before any model sees it. */
  image_url: text(LIMITS.url).optional(),
  link: z
    .object({
      url: text(LIMITS.url).optional(),
      title: text(LIMITS.linkTitle).default(''),
      description: text(LIMITS.linkDescription).default(''),
    })
    .optional(),
  /** BCP-47; when absent the enrich worker detects the language from the text. */
  language: LanguageTag.optional(),
  board_id: Id.optional(),
  author_id: Id.optional(),
};

export const PinCreated = z.object({ ...PinFields, type: z.literal('created'), ...PinContent });
export const PinUpdated = z.object({ ...PinFields, type: z.literal('updated'), ...PinContent });
export const PinDeleted = z.object({ ...PinFields, type: z.literal('deleted') });

export const PinEvent = z.discriminatedUnion('type', [PinCreated, PinUpdated, PinDeleted]);
export type PinEvent = z.infer<typeof PinEvent>;
export type PinEventInput = z.input<typeof PinEvent>;
