/**
 * FNV-1a 32-bit hash with murmur3's finaliser: tiny and stable across runs and platforms.
 * The finaliser matters: plain FNV-1a's low bits depend only on the inputs' low bits, so
 * `hash % smallN` would pick the same words for many different URLs.
 */
export function fnv1a(text: string, prefix = ''): number {
  let h = 0x811c9dc5;
  // fnv1a(text, prefix) === fnv1a(prefix + text), without building (and flattening) the concatenation.
  for (let i = 0; i < prefix.length; i++) {
    h ^= prefix.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Pick an element of a non-empty list with a hash and a salt, so picks are independent. */
export function pick<T>(list: readonly T[], hash: number, salt: number): T {
  const h = fnv1a(`${hash}:${salt}`);
  return list[h % list.length] as T;
}
