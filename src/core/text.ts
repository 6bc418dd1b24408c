/**
 * Text normalisation. Pin text is user-written: we normalise it for comparison and display but
 * never interpret it.
 *
 * - `cleanText`: Unicode NFKC, control and format characters removed (bidi overrides, zero-width
 *   joiners, NUL), whitespace runs collapsed to one space, trimmed. Case is kept: this is the
 *   text the teacher reads.
 * - `foldText`: `cleanText` plus case folding, the key under which board titles and queries are
 *   counted ("Summer  Outfits" and "summer outfits" are one query).
 * - `wellFormed` / `wellFormedStrings`: no lone UTF-16 surrogates. JSON input may spell one
 *   (`"\ud800"`); JavaScript keeps it, `JSON.stringify` writes it back as an escape, and strict
 *   JSON readers downstream (Rust's serde_json, for one) reject the whole record. Every decoded
 *   input (core/decode.ts), every cleaned text and every dead-letter reason goes through here, so
 *   nothing pinrich publishes carries one. `clipText` cuts without splitting a surrogate pair.
 */

// String.prototype.toWellFormed is in Node 20 (V8 11.3) but not in the ES2022 lib types.
type WellFormedString = string & { toWellFormed(): string; isWellFormed(): boolean };

/** `s` with every lone surrogate replaced by U+FFFD (the replacement character). */
export function wellFormed(s: string): string {
  return (s as WellFormedString).toWellFormed();
}

/** True when `s` has no lone surrogate. */
export function isWellFormed(s: string): boolean {
  return (s as WellFormedString).isWellFormed();
}

/** A parsed JSON value with every string (keys included) made well-formed; the same value when none needed it. */
export function wellFormedStrings<T>(value: T): T {
  if (typeof value === 'string') return wellFormed(value) as T;
  if (Array.isArray(value)) return value.map((v) => wellFormedStrings(v)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [wellFormed(k), wellFormedStrings(v)])) as T;
  }
  return value;
}

/** At most `max` UTF-16 units of `s`, never ending in half a surrogate pair. */
export function clipText(s: string, max: number): string {
  if (s.length <= max) return s;
  const cut = s.slice(0, max);
  const last = cut.charCodeAt(cut.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? cut.slice(0, -1) : cut;
}

// Cc (controls) and Cf (format: bidi overrides, zero-width chars, soft hyphen) except the space
// separators handled below. \p{Cc} includes \t \n \r, which become spaces first.
const WHITESPACE = /[\s\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/gu;
// ZWNJ/ZWJ (U+200C/U+200D) are kept: Persian, Indic scripts and emoji sequences need them.
const CONTROL_OR_FORMAT = /(?![\u200c\u200d])[\p{Cc}\p{Cf}\p{Co}\p{Cn}]/gu;

/**
 * Printable ASCII words separated by single spaces, nothing around them: what most pin text,
 * board titles and queries are, and already clean (NFKC, control/format removal, whitespace
 * collapsing and trimming change none of it). Tested first, so those skip the Unicode passes.
 */
const PLAIN_ASCII = /^(?:[!-~]+(?: [!-~]+)*)?$/;

/** Also well-formed (lone surrogates become U+FFFD first, as in every decoded input). */
export function cleanText(input: string): string {
  if (PLAIN_ASCII.test(input)) return input;
  return wellFormed(input).normalize('NFKC').replace(WHITESPACE, ' ').replace(CONTROL_OR_FORMAT, '').replace(/ {2,}/g, ' ').trim();
}

/**
 * Case folding close to Unicode's full folding: lower-casing plus the foldings lower-casing
 * misses (ß -> ss, final sigma -> sigma). NFKC again afterwards because lower-casing can
 * denormalise a few characters.
 */
export function foldText(input: string): string {
  if (PLAIN_ASCII.test(input)) return input.toLowerCase(); // ASCII lower-cases to ASCII: nothing else applies
  return cleanText(input).toLowerCase().replace(/ß/g, 'ss').replace(/ς/g, 'σ').normalize('NFKC');
}
