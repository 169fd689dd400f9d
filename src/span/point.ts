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

/** Shortens a value quoted in an error so one huge field cannot blow up a response. */
export function shortValue(v: unknown): string {
  const s = typeof v === 'string' ? v : typeof v === 'bigint' ? v.toString() : JSON.stringify(v) ?? String(v);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}
