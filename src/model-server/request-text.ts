/**
 * Reading the parts of an OpenAI request body the server cares about, defensively: bodies
 * come from tests that deliberately send garbage, so nothing here may throw.
 */
import type { RequestKind } from './types.js';

/** Marker that opens the pin text in a teacher prompt (see docs/architecture.md, "Model calls"). */
export const PIN_OPEN = '<<<PIN';
/** Marker that closes the pin text in a teacher prompt. */
export const PIN_CLOSE = 'PIN>>>';

/** Whether `v` is a plain JSON object. */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Text of one chat message's content (string or array of parts); image parts are skipped. */
export function messageText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part) => (isObject(part) && part.type === 'text' && typeof part.text === 'string' ? part.text : ''))
    .filter((t) => t.length > 0)
    .join('\n');
}

/** URLs of every image_url part in the chat messages, in order. */
export function imageUrls(messages: unknown): string[] {
  if (!Array.isArray(messages)) return [];
  const urls: string[] = [];
  for (const m of messages) {
    if (!isObject(m) || !Array.isArray(m.content)) continue;
    for (const part of m.content) {
      if (!isObject(part) || part.type !== 'image_url') continue;
      const img = part.image_url;
      // OpenAI takes { url }, some older clients send the URL string directly.
      const url = isObject(img) ? img.url : img;
      urls.push(typeof url === 'string' ? url : '');
    }
  }
  return urls;
}

/** The whole chat conversation as one prompt string, used for token estimates and caching. */
export function chatPromptText(messages: unknown): string {
  if (!Array.isArray(messages)) return '';
  return messages
    .map((m) => (isObject(m) ? `${String(m.role ?? '')}: ${messageText(m.content)}` : ''))
    .join('\n');
}

/** Prompts of a /v1/completions body: a string or an array of strings (token arrays are not supported). */
export function completionPrompts(prompt: unknown): string[] {
  if (typeof prompt === 'string') return [prompt];
  if (Array.isArray(prompt) && prompt.every((p) => typeof p === 'string')) return prompt as string[];
  return [];
}

/**
 * Classify a request, in this order: /classify with a pin marker in its input is 'teacher';
 * a chat request with an image_url part is 'caption';
 * one asking for logprobs, containing the pin marker, or limited to one output token is
 * 'teacher'; anything else is 'other'.
 */
export function classifyRequest(endpoint: string, body: unknown): RequestKind {
  if (!isObject(body)) return 'other';
  // vLLM's pooling endpoint: a classifier teacher when the input is a teacher prompt.
  if (endpoint === '/classify') return completionPrompts(body.input).join('\n').includes(PIN_OPEN) ? 'teacher' : 'other';
  if (endpoint.endsWith('/chat/completions') && imageUrls(body.messages).length > 0) return 'caption';
  // /v1/completions asks for logprobs with a number (legacy API), chat with `true`.
  const wantsLogprobs = body.logprobs === true || (typeof body.logprobs === 'number' && body.logprobs > 0);
  const oneToken = body.max_tokens === 1 || body.max_completion_tokens === 1;
  const text = endpoint.endsWith('/chat/completions')
    ? chatPromptText(body.messages)
    : completionPrompts(body.prompt).join('\n');
  if (wantsLogprobs || oneToken || text.includes(PIN_OPEN)) return 'teacher';
  return 'other';
}
