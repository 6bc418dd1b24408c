/**
 * Text normalisation. Pin text is user-written: we normalise it for comparison and display but
 * never interpret it.
 *
 * - `cleanText`: Unicode NFKC, control and format characters removed (bidi overrides, zero-width
 *   joiners, NUL), whitespace runs collapsed to one space, trimmed. Case is kept: this is the
 *   text the teacher reads.
 * - `foldText`: `cleanText` plus case folding, the key under which board titles and queries are
 *   counted ("Summer  Outfits" and "summer outfits" are one query).
 */

// Cc (controls) and Cf (format: bidi overrides, zero-width chars, soft hyphen) except the space
// separators handled below. \p{Cc} includes \t \n \r, which become spaces first.
const WHITESPACE = /[\s\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/gu;
// ZWNJ/ZWJ (U+200C/U+200D) are kept: Persian, Indic scripts and emoji sequences need them.
const CONTROL_OR_FORMAT = /(?![\u200c\u200d])[\p{Cc}\p{Cf}\p{Co}\p{Cn}]/gu;

export function cleanText(input: string): string {
  return input.normalize('NFKC').replace(WHITESPACE, ' ').replace(CONTROL_OR_FORMAT, '').replace(/ {2,}/g, ' ').trim();
}

/**
 * Case folding close to Unicode's full folding: lower-casing plus the foldings lower-casing
 * misses (ß -> ss, final sigma -> sigma). NFKC again afterwards because lower-casing can
 * denormalise a few characters.
 */
export function foldText(input: string): string {
  return cleanText(input).toLowerCase().replace(/ß/g, 'ss').replace(/ς/g, 'σ').normalize('NFKC');
}
