/**
 * Token estimates and a simulated prefix cache, so clients can exercise their usage
 * accounting and see prefix reuse (docs/architecture.md, "Model calls": the teacher prompt puts the pin before the
 * query precisely so a serving stack can reuse the pin's prefix across its queries).
 */

/** Rough token count: ceil(chars / 4), the usual rule of thumb for English BPE tokenizers. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

/** Real servers (vLLM, OpenAI) cache whole KV blocks, so cached counts come in multiples of this. */
export const CACHE_BLOCK_TOKENS = 16;
/** Characters per cache block (4 characters per token, as in {@link estimateTokens}). */
const BLOCK_CHARS = CACHE_BLOCK_TOKENS * 4;

/** A bounded memory of recent prompts per model, answering "how many prompt tokens were cached?". */
export interface PrefixCache {
  /** Cached tokens for `prompt` (longest common prefix with a remembered prompt), then remember it. */
  lookupAndRemember(model: string, prompt: string): number;
}

/**
 * Create a prefix cache remembering the last `capacity` prompts of each model.
 *
 * Like vLLM's automatic prefix caching, a prompt is cut into fixed-size blocks and each block is
 * keyed by a hash chained over every block before it, so "block i is cached" means "the first
 * i + 1 blocks equal those of a remembered prompt". A lookup walks the prompt's own blocks once
 * (O(prompt length), however many prompts are remembered) and counts the leading blocks present;
 * each key is reference-counted by the remembered prompts holding it, and a prompt that falls out
 * of the window releases its keys. The answer equals the longest common prefix with any of the
 * last `capacity` prompts, in whole blocks (up to a 53-bit hash collision).
 */
export function createPrefixCache(capacity: number): PrefixCache {
  const byModel = new Map<string, { blocks: Map<number, number>; recent: number[][] }>();
  return {
    lookupAndRemember(model, prompt) {
      let m = byModel.get(model);
      if (!m) byModel.set(model, (m = { blocks: new Map(), recent: [] }));
      const keys = blockKeys(prompt);
      let hit = 0;
      while (hit < keys.length && m.blocks.has(keys[hit]!)) hit++;
      for (const k of keys) m.blocks.set(k, (m.blocks.get(k) ?? 0) + 1);
      m.recent.push(keys);
      if (m.recent.length > capacity) {
        for (const k of m.recent.shift()!) {
          const n = (m.blocks.get(k) ?? 1) - 1;
          if (n <= 0) m.blocks.delete(k);
          else m.blocks.set(k, n);
        }
      }
      return hit * CACHE_BLOCK_TOKENS;
    },
  };
}

/**
 * Chained 2x32-bit FNV-1a keys of the prompt's whole blocks (a partial last block is never
 * cached), folded into one 53-bit number each: numbers, not strings, as Map keys cost no
 * allocation per block.
 */
function blockKeys(prompt: string): number[] {
  const full = Math.floor(prompt.length / BLOCK_CHARS);
  const keys: number[] = new Array<number>(full);
  let a = 0x811c9dc5;
  let b = 0x01000193;
  for (let blk = 0; blk < full; blk++) {
    const end = (blk + 1) * BLOCK_CHARS;
    for (let i = blk * BLOCK_CHARS; i < end; i++) {
      const c = prompt.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995) ^ (b >>> 15);
    }
    keys[blk] = (a >>> 0) * 0x200000 + ((b >>> 0) & 0x1fffff);
  }
  return keys;
}
