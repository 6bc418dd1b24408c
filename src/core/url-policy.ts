/**
 * Image URL policy, applied before any model call: pin text must never make pinrich (or the
 * model server on its behalf) fetch an internal address. Pure: no DNS lookups here, so a host
 * name that resolves to a private address is only caught by the host allowlist; set one in
 * production (PINRICH_IMAGE_HOSTS).
 *
 * Size and time limits: pinrich never downloads an image; the model server fetches it. What
 * pinrich bounds is the URL (LIMITS.url characters) and the whole model request
 * (PINRICH_MODEL_TIMEOUT_MS, image fetch included); the image's byte size and fetch timeout
 * are the model server's settings (vLLM: VLLM_IMAGE_FETCH_TIMEOUT), and its egress is best
 * locked down by network policy as well.
 */
export interface UrlPolicy {
  allowedSchemes: readonly string[];
  /** Host suffixes ("pinimg.com" allows i.pinimg.com); empty allows any public host. */
  allowedHosts: readonly string[];
  maxLength: number;
}

export type UrlVerdict = { ok: true; url: string } | { ok: false; reason: string };

export function checkImageUrl(raw: string, policy: UrlPolicy): UrlVerdict {
  if (raw.length > policy.maxLength) return { ok: false, reason: `URL longer than ${policy.maxLength} characters` };
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { ok: false, reason: 'not a valid absolute URL' };
  }
  const scheme = u.protocol.replace(/:$/, '');
  if (!policy.allowedSchemes.includes(scheme)) return { ok: false, reason: `scheme "${scheme}" is not allowed` };
  if (u.username || u.password) return { ok: false, reason: 'URL carries credentials' };
  const host = u.hostname.toLowerCase().replace(/\.$/, '');
  if (host === '' || host === 'localhost' || host.endsWith('.localhost') || host.endsWith('.local') || host.endsWith('.internal')) {
    return { ok: false, reason: `host "${host}" is internal` };
  }
  if (isIpLiteral(host) && !isPublicIp(host)) return { ok: false, reason: `address ${host} is private, loopback, link-local or reserved` };
  if (policy.allowedHosts.length && !policy.allowedHosts.some((h) => host === h || host.endsWith('.' + h))) {
    return { ok: false, reason: `host "${host}" is not on the allowlist` };
  }
  return { ok: true, url: u.toString() };
}

function isIpLiteral(host: string): boolean {
  return /^\d+\.\d+\.\d+\.\d+$/.test(host) || host.startsWith('[');
}

/** WHATWG URL parsing already normalised decimal/hex/octal IPv4 forms to dotted quads. */
function isPublicIp(host: string): boolean {
  if (host.startsWith('[')) {
    const v6 = host.slice(1, -1);
    if (v6 === '::' || v6 === '::1') return false;
    if (/^(fc|fd|fe[89a-f]|ff)/.test(v6)) return false; // ULA, link-local, site-local, multicast
    // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d, deprecated), NAT64
    // (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::) all reach the embedded IPv4 address.
    const mapped =
      /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(v6) ??
      /^(?:::ffff:|::|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6) ??
      /^2002:([0-9a-f]{1,4}):([0-9a-f]{1,4})(?::|$)/.exec(v6);
    if (mapped) {
      if (mapped[2] === undefined) return isPublicIp(mapped[1]!);
      const hi = parseInt(mapped[1]!, 16);
      const lo = parseInt(mapped[2]!, 16);
      return isPublicIp(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
    }
    return true;
  }
  const [a, b] = host.split('.').map(Number) as [number, number, number, number];
  if (a === 0 || a === 10 || a === 127 || a >= 224) return false; // this-network, private, loopback, multicast/reserved
  if (a === 169 && b === 254) return false; // link-local, cloud metadata (169.254.169.254)
  if (a === 172 && b >= 16 && b <= 31) return false;
  if (a === 192 && b === 168) return false;
  if (a === 100 && b >= 64 && b <= 127) return false; // carrier-grade NAT
  if (a === 192 && b === 0) return false;
  if (a === 198 && (b === 18 || b === 19)) return false;
  return true;
}

/** Canonical form used for the cache key: lower-case scheme and host, no fragment. */
export function canonicalImageUrl(url: string): string {
  const u = new URL(url);
  u.hash = '';
  return u.toString();
}
