/**
 * Image URLs the URL policy rejects whose parsed (WHATWG) form differs from the string as
 * written: decimal, short and hex IPv4, IPv4-mapped IPv6, a trailing dot, an upper-case scheme
 * and host, a default port. Caption and enrich must key each the same way
 * (src/core/image-key.ts), or the pin's failed caption never reaches it.
 */
export const ODDLY_SPELLED_REJECTED_URLS: readonly string[] = [
  'https://2130706433/a.jpg',
  'https://127.1/a.jpg',
  'https://0x7f.0.0.1/a.jpg',
  'https://[::ffff:169.254.169.254]/a.jpg',
  'https://169.254.169.254./a.jpg',
  'HTTPS://LOCALHOST/a.jpg',
  'https://127.0.0.1:443/a.jpg',
];
