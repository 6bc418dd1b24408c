/**
 * Default VLM behaviour: a short factual caption derived deterministically from the image
 * URL, so the same image always gets the same caption (caption caches can be tested) and
 * the offline demo reads plausibly.
 */
import { fnv1a, pick } from './hash.js';

const SHOTS = ['A close-up photo', 'An overhead photo', 'A flat-lay photo', 'A wide-angle photo', 'A studio photo', 'A candid photo'];
const MATERIALS = ['rustic wooden', 'minimalist white', 'sunlit marble', 'dark slate', 'woven rattan', 'brushed concrete', 'linen-covered', 'pastel pink'];
const PLACES = ['table', 'kitchen counter', 'shelf', 'desk', 'windowsill', 'bedside table', 'garden bench', 'living room floor'];
const OBJECTS = [
  'a ceramic vase of dried flowers',
  'a stack of hardcover books',
  'a bowl of fresh lemons',
  'a potted monstera plant',
  'a hand-knitted wool blanket',
  'a plate of chocolate chip cookies',
  'a pair of white sneakers',
  'a brass table lamp',
  'a watercolor painting of mountains',
  'a glass jar of homemade granola',
];

/** Words that say nothing about an image but often appear in file names. */
const NOISE = new Set(['img', 'image', 'images', 'photo', 'pin', 'pins', 'jpg', 'jpeg', 'png', 'webp', 'large', 'small', 'original', 'thumb']);

/**
 * Caption for an image URL. When the file name reads like words ("red-velvet-cake.jpg"),
 * they become the subject, so demo data with descriptive URLs gets matching captions.
 */
export function defaultCaption(imageUrl: string): string {
  const h = fnv1a(imageUrl);
  const subject = subjectFromUrl(imageUrl) ?? pick(OBJECTS, h, 1);
  return `${pick(SHOTS, h, 2)} of ${subject} on a ${pick(MATERIALS, h, 3)} ${pick(PLACES, h, 4)}.`;
}

function subjectFromUrl(imageUrl: string): string | undefined {
  if (imageUrl.startsWith('data:')) return undefined;
  let path: string;
  try {
    path = new URL(imageUrl).pathname;
  } catch {
    // Not a URL at all (a test may send anything): fall back to hashed words.
    return undefined;
  }
  const file = decodeURIComponent(path.split('/').pop() ?? '').replace(/\.[a-z0-9]+$/i, '');
  const words = file
    .split(/[-_+\s.]+/)
    .map((w) => w.toLowerCase())
    .filter((w) => /^[a-z]{3,}$/.test(w) && !NOISE.has(w));
  return words.length >= 2 ? words.slice(0, 5).join(' ') : undefined;
}
