/**
 * Language of a pin: the event's own tag when it has one, else detected from the pin's text
 * with eld (n-gram detector, 60 languages, no network, deterministic).
 */
import { eld } from 'eld/small';

export interface LanguageVerdict {
  language: string;
  source: 'event' | 'detected' | 'unknown';
}

export function resolveLanguage(tag: string | null | undefined, text: string): LanguageVerdict {
  if (tag) return { language: tag, source: 'event' };
  const sample = text.slice(0, 1_000);
  if (sample.trim().length < 3) return { language: 'und', source: 'unknown' };
  const result = eld.detect(sample);
  if (!result.language) return { language: 'und', source: 'unknown' };
  return { language: result.language, source: 'detected' };
}
