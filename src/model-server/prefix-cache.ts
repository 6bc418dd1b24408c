/**
 * Token estimates and a simulated prefix cache, so clients can exercise their usage
 * accounting and see prefix reuse (DESIGN.md: the teacher prompt puts the pin before the
 * query precisely so a serving stack can reuse the pin's prefix across its queries).
 */

/** Rough token count: ceil(chars / 4), the usual rule of thumb for English BPE tokenizers. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

/** Real servers (vLLM, OpenAI) cache whole KV blocks, so cached counts come in multiples of this. */
export const CACHE_BLOCK_TOKENS = 16;

/** A bounded memory of recent prompts per model, answering "how many prompt tokens were cached?". */
export interface PrefixCache {
  /** Cached tokens for `prompt` (longest common prefix with a remembered prompt), then remember it. */
  lookupAndRemember(model: string, prompt: string): number;
}

/** Create a prefix cache remembering the last `capacity` prompts of each model. */
export function createPrefixCache(capacity: number): PrefixCache {
  const byModel = new Map<string, string[]>();
  return {
    lookupAndRemember(model, prompt) {
      let recent = byModel.get(model);
      if (!recent) {
        recent = [];
        byModel.set(model, recent);
      }
      let best = 0;
      for (const seen of recent) best = Math.max(best, commonPrefixLength(seen, prompt, best));
      recent.push(prompt);
      if (recent.length > capacity) recent.shift();
      // Only whole tokens of the shared prefix count: floor, not the ceil used for prompts.
      const tokens = Math.floor(best / 4);
      return tokens - (tokens % CACHE_BLOCK_TOKENS);
    },
  };
}

/** Length of the common prefix of a and b; returns early when it cannot beat `atLeast`. */
function commonPrefixLength(a: string, b: string, atLeast: number): number {
  const n = Math.min(a.length, b.length);
  if (n <= atLeast) return 0;
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}
