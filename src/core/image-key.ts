/**
 * The image key: the one rule by which a pin's image is named everywhere — the caption cache,
 * the caption record the caption stage publishes (`image_key`), and the pin state enrich keeps
 * to match that caption to the pin's current image. Both stages must compute it from the same
 * input by the same function: when they did not (the caption stage hashed a rejected URL as
 * written, enrich its parsed form), a pin whose URL parses to a different string
 * (`HTTPS://LOCALHOST/a.jpg`, `https://2130706433/a.jpg`, `https://127.0.0.1:443/a.jpg`) never
 * matched its "failed" caption and stayed `caption_status: "pending"` for ever.
 */
import { createHash } from 'node:crypto';
import { canonicalImageUrl } from './url-policy.js';

/**
 * sha256 (hex) of the pin event's `image_url` in canonical form (WHATWG-parsed: lower-case
 * scheme and host, IPv4 forms as dotted quads, default port dropped, no fragment). A string that
 * does not parse as a URL is hashed as it is, so it still has a key (its caption is "failed").
 * Takes the raw URL from the event, whatever the URL policy says about it.
 */
export function imageKeyOf(rawUrl: string): string {
  let canonical: string;
  try {
    canonical = canonicalImageUrl(rawUrl);
  } catch {
    // Not a URL: the policy rejects it, and its caption must still find the pin.
    canonical = rawUrl;
  }
  return createHash('sha256').update(canonical).digest('hex');
}
