/**
 * Turning consumed bytes into a typed record, or a precise reason why not.
 * Order of checks: size, UTF-8, JSON, schema name, schema version, shape. Each failure has its
 * own dead-letter code so operators can tell a producer bug from a schema rollout.
 */
import type { z } from 'zod';
import type { DeadLetterCode } from '../../schemas/dead-letter.js';
import { CONTRACTS, type ContractName } from '../../schemas/index.js';
import { SaveEvent, SEARCH_ENGAGEMENT_TYPES, SearchEngagementEvent } from '../../schemas/engagement-event.js';
import { wellFormedStrings } from './text.js';

/**
 * Contract versions that are a plain union whose options are told apart by `type`: the one option
 * a record's `type` can match. Parsing with it alone gives what the union gives on success (the
 * union's first matching option; the others cannot match that `type`) without first failing, and
 * building the issues of, the options before it: most engagement events are search events, the
 * union's second option. On failure the whole union parses again, for its own error.
 */
const SEARCH_TYPES: ReadonlySet<unknown> = new Set(SEARCH_ENGAGEMENT_TYPES);
const OPTION_BY_TYPE: Partial<Record<ContractName, Record<number, (type: unknown) => z.ZodType | undefined>>> = {
  engagement_event: { 1: (type) => (type === 'save' ? SaveEvent : SEARCH_TYPES.has(type) ? SearchEngagementEvent : undefined) },
};

export type Decoded<T> = { ok: true; value: T } | { ok: false; code: DeadLetterCode; reason: string };

const utf8 = new TextDecoder('utf-8', { fatal: true });
/** A JSON escape of a UTF-16 surrogate: the only way a lone one gets into a string decoded from UTF-8. */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/** Decode `bytes` as a record of contract `name`, accepting only the versions the registry knows. */
export function decodeRecord<N extends ContractName>(
  name: N,
  bytes: Buffer | null,
  maxBytes: number,
): Decoded<z.infer<(typeof CONTRACTS)[N][keyof (typeof CONTRACTS)[N]] & z.ZodType>> {
  if (bytes === null || bytes.length === 0) return fail('empty_record', 'record has no value');
  if (bytes.length > maxBytes) return fail('oversized_record', `record is ${bytes.length} bytes, limit is ${maxBytes}`);
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return fail('invalid_utf8', 'record value is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return fail('malformed_json', `value is not JSON: ${(err as Error).message.slice(0, 200)}`);
  }
  // Lone surrogates become U+FFFD in every field (see core/text.ts); checked on the text first
  // so records without surrogate escapes (nearly all) pay one regex test, not a tree walk.
  if (SURROGATE_ESCAPE.test(text)) json = wellFormedStrings(json);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return fail('schema_violation', 'value must be a JSON object');
  }
  const record = json as { schema?: unknown; schema_version?: unknown };
  if (record.schema !== name) {
    return fail('unknown_schema', `expected schema "${name}", got ${JSON.stringify(record.schema)?.slice(0, 100)}`);
  }
  const versions = CONTRACTS[name] as Record<number, z.ZodType>;
  const schema = typeof record.schema_version === 'number' ? versions[record.schema_version] : undefined;
  if (!schema) {
    return fail(
      'unknown_schema_version',
      `${name} version ${JSON.stringify(record.schema_version)?.slice(0, 50)} is not known here (known: ${Object.keys(versions).join(', ')})`,
    );
  }
  const option = OPTION_BY_TYPE[name]?.[record.schema_version as number]?.((json as { type?: unknown }).type);
  if (option) {
    const byOption = option.safeParse(json);
    if (byOption.success) return { ok: true, value: byOption.data as never };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) return fail('schema_violation', summariseIssues(parsed.error.issues));
  return { ok: true, value: parsed.data as never };
}

/**
 * The cheap first half of {@link decodeRecord}, for hot-path decoders that check one contract
 * by hand (stages/dump/decode-label.ts, stages/enrich/decode-engagement.ts): a record's text and
 * parsed JSON when it is within `maxBytes`, UTF-8, JSON and free of surrogate escapes; undefined
 * otherwise, and the caller hands the record to decodeRecord, which says which check failed.
 */
export function parseRecordJson(bytes: Buffer | null, maxBytes: number): { text: string; json: unknown } | undefined {
  if (bytes === null || bytes.length === 0 || bytes.length > maxBytes) return undefined;
  try {
    const text = utf8.decode(bytes);
    const json: unknown = JSON.parse(text);
    return SURROGATE_ESCAPE.test(text) ? undefined : { text, json };
  } catch {
    return undefined;
  }
}

function fail(code: DeadLetterCode, reason: string) {
  return { ok: false as const, code, reason };
}

/** "title: Too big: expected string to have <=1000 characters; type: Invalid input" (bounded). */
export function summariseIssues(issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>): string {
  const parts = issues.slice(0, 5).map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`);
  if (issues.length > 5) parts.push(`and ${issues.length - 5} more`);
  return parts.join('; ').slice(0, 1_000);
}
