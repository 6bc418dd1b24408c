/**
 * Language of a pin: the event's own tag when it has one, else detected from the pin's text
 * with eld (n-gram detector, 60 languages, no network, deterministic).
 *
 * The detector's model costs ~145 MB of RSS once loaded, so it is loaded only when a pin
 * without a language tag has to be resolved: callers `await loadLanguageDetector()` first
 * (the enrich stage does, before building documents of untagged pins). A worker whose pins all
 * carry tags never loads it.
 */
type Detector = { detect(text: string): { language: string } };

let detector: Detector | undefined;
let loading: Promise<void> | undefined;

/** Load the detector (once; later calls resolve at once). */
export function loadLanguageDetector(): Promise<void> {
  loading ??= import('eld/small').then((m) => {
    detector = m.eld as Detector;
  });
  return loading;
}

/** True when resolving `tag` needs the detector (no tag on the event). */
export function needsDetection(tag: string | null | undefined): boolean {
  return !tag;
}

export interface LanguageVerdict {
  language: string;
  source: 'event' | 'detected' | 'unknown';
}

export function resolveLanguage(tag: string | null | undefined, text: string): LanguageVerdict {
  if (tag) return { language: tag, source: 'event' };
  const sample = text.slice(0, 1_000);
  if (sample.trim().length < 3) return { language: 'und', source: 'unknown' };
  if (!detector) throw new Error('language detector not loaded: await loadLanguageDetector() before resolving untagged text');
  const result = detector.detect(sample);
  if (!result.language) return { language: 'und', source: 'unknown' };
  return { language: result.language, source: 'detected' };
}
