// Query parameter parsing for the query API: every bad value becomes SEQ_ERR_BAD_QUERY (400)
// with the parameter, the value and what is accepted (docs/query-api.md).
import { SeqError } from '../errors.js';

export function badQuery(param: string, value: unknown, accepted: string): SeqError {
  return new SeqError('SEQ_ERR_BAD_QUERY', `${param} = ${JSON.stringify(value)}: expected ${accepted}`, 400);
}

const DURATION_US: Record<string, number> = { '': 1, us: 1, 'µs': 1, ms: 1000, s: 1_000_000, m: 60_000_000 };

/** `1500` (µs), `200us`, `1.5ms`, `2s`, `1m` → integer microseconds. */
export function parseDurationUs(param: string, raw: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m)?$/.exec(raw.trim());
  const us = m ? Math.round(Number(m[1]) * DURATION_US[m[2] ?? '']) : NaN;
  if (!Number.isSafeInteger(us)) throw badQuery(param, raw, 'a duration such as 1500 (µs), 200us, 1.5ms or 2s');
  return us;
}

const RFC3339 = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/;

/** µs since the epoch (`1732500000000000`) or RFC 3339 (`2024-11-25T02:00:00.123456Z`) → µs. */
export function parseTimeUs(param: string, raw: string): number {
  const text = raw.trim();
  if (/^\d{1,16}$/.test(text)) return Number(text);
  const m = RFC3339.exec(text);
  if (m) {
    const ms = Date.parse(`${m[1]}T${m[2]}${m[4].toUpperCase()}`);
    if (Number.isFinite(ms)) return ms * 1000 + Number((m[3] ?? '').padEnd(6, '0').slice(0, 6));
  }
  throw badQuery(param, raw, 'microseconds since the epoch (e.g. 1732500000000000) or an RFC 3339 time (e.g. 2024-11-25T02:00:00Z)');
}

export function parseLimit(raw: string): number {
  const n = /^\d{1,4}$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!(n >= 1 && n <= 1000)) throw badQuery('limit', raw, 'an integer from 1 to 1000');
  return n;
}

/** A trace id from a URL: 1 to 32 hex digits, returned lowercase and zero-padded to 32. */
export function parseTraceId(raw: string): string {
  if (!/^[0-9a-fA-F]{1,32}$/.test(raw)) throw badQuery('traceId', raw, 'a trace id of up to 32 hex digits');
  return raw.toLowerCase().padStart(32, '0');
}

/**
 * The query string as single strings: an unknown or repeated parameter is an error (a typo
 * must not silently widen a search); an empty value counts as absent (empty form fields).
 */
export function singleParams(query: unknown, accepted: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    if (!accepted.includes(k)) {
      throw new SeqError('SEQ_ERR_BAD_QUERY', `unknown parameter ${k} = ${JSON.stringify(v)}: accepted parameters are ${accepted.join(', ')}`, 400);
    }
    if (Array.isArray(v)) throw badQuery(k, v, 'the parameter once');
    if (typeof v === 'string' && v !== '') out[k] = v;
  }
  return out;
}
