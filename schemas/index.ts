/**
 * The registry of wire contracts: schema name -> known versions -> zod schema.
 * Decoders look records up here; a (name, version) that is not listed is rejected.
 */
import type { z } from 'zod';
import { Caption, CAPTION, CAPTION_VERSION } from './caption.js';
import { DeadLetter, DEAD_LETTER, DEAD_LETTER_VERSION } from './dead-letter.js';
import { EngagementEvent, ENGAGEMENT_EVENT, ENGAGEMENT_EVENT_VERSION } from './engagement-event.js';
import { EnrichedDocument, ENRICHED_DOCUMENT, ENRICHED_DOCUMENT_VERSION } from './enriched-document.js';
import { Label, LABEL, LABEL_VERSION } from './label.js';
import { Pair, PAIR, PAIR_VERSION } from './pair.js';
import { PinEvent, PIN_EVENT, PIN_EVENT_VERSION } from './pin-event.js';

export const CONTRACTS = {
  [PIN_EVENT]: { [PIN_EVENT_VERSION]: PinEvent },
  [ENGAGEMENT_EVENT]: { [ENGAGEMENT_EVENT_VERSION]: EngagementEvent },
  [CAPTION]: { [CAPTION_VERSION]: Caption },
  [ENRICHED_DOCUMENT]: { [ENRICHED_DOCUMENT_VERSION]: EnrichedDocument },
  [PAIR]: { [PAIR_VERSION]: Pair },
  [LABEL]: { [LABEL_VERSION]: Label },
  [DEAD_LETTER]: { [DEAD_LETTER_VERSION]: DeadLetter },
} as const satisfies Record<string, Record<number, z.ZodType>>;

export type ContractName = keyof typeof CONTRACTS;

export { Caption, DeadLetter, EngagementEvent, EnrichedDocument, Label, Pair, PinEvent };
