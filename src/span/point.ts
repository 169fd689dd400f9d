// A decoded point, before validation: what line protocol and JSON both decode to.
// Integers that do not fit a JS double exactly stay bigint so that 64-bit ids
// (thread_trace_id) never pass through a double.

export type FieldValue = number | bigint | string | boolean;

export interface Point {
  /** Position of the point in its batch (0-based, blank and comment lines not counted). */
  index: number;
  measurement: string;
  tags: Record<string, string>;
  fields: Record<string, FieldValue>;
  /** Timestamp in nanoseconds as decimal digits (may start with '-'); '' when the point had none. */
  time: string;
}

/** A point (or part of one) that could not be decoded or validated. */
export interface PointError {
  index: number;
  /** The key at fault, or '' when the line itself is malformed. */
  field: string;
  /** The offending text (shortened). */
  value: string;
  reason: string;
  /** Line protocol only: 1-based line and column where decoding stopped. */
  line?: number;
  column?: number;
}

export interface DecodedBatch {
  points: Point[];
  errors: PointError[];
}

/**
 * Sets own property `k` of a record of tags, fields or attributes. A key is data: `__proto__`
 * must become a property like any other, not the object's prototype (plain assignment would
 * drop it, or with an object value replace the prototype).
 */
export function setOwn<T>(o: Record<string, T>, k: string, v: T): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/** Shortens a value quoted in an error so one huge field cannot blow up a response. */
export function shortValue(v: unknown): string {
  const s = typeof v === 'string' ? v : typeof v === 'bigint' ? v.toString() : JSON.stringify(v) ?? String(v);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}
