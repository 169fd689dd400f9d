// JSON points: `[{"measurement":"dketrace","tags":{...},"fields":{...},"time":<ns>}]`.
// JSON.parse turns integers beyond 2^53 into inexact doubles; validation rejects those for
// 64-bit keys (send them as strings of digits), so no id silently changes.
import { seqError } from '../errors.js';
import type { DecodedBatch, FieldValue, Point, PointError } from './point.js';
import { setOwn, shortValue } from './point.js';
import type { DecodeOptions } from './lineprotocol.js';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function timeText(v: unknown): string | undefined {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return /^-?\d+$/.test(v) ? v : undefined;
  if (typeof v === 'number' && Number.isFinite(v)) {
    // ns since epoch exceed 2^53; the double is within a few hundred ns, far below the µs we keep.
    return Number.isSafeInteger(v) ? String(v) : BigInt(Math.round(v)).toString();
  }
  return undefined;
}

function decodeOne(raw: unknown, index: number): Point | PointError {
  const bad = (field: string, value: unknown, reason: string): PointError => ({ index, field, value: shortValue(value), reason });
  if (!isObject(raw)) return bad('', raw, 'a point must be an object {measurement, tags, fields, time}');
  const measurement = raw.measurement;
  if (typeof measurement !== 'string' || measurement === '') return bad('measurement', measurement, 'measurement must be a non-empty string');
  const tags: Record<string, string> = {};
  if (raw.tags !== undefined && raw.tags !== null) {
    if (!isObject(raw.tags)) return bad('tags', raw.tags, 'tags must be an object of strings');
    for (const k in raw.tags) {
      const v = raw.tags[k];
      if (typeof v === 'string') setOwn(tags, k, v);
      else if (typeof v === 'number' || typeof v === 'boolean') setOwn(tags, k, String(v));
      else return bad(k, v, 'a tag value must be a string');
    }
  }
  if (!isObject(raw.fields)) return bad('fields', raw.fields, 'fields must be an object');
  const fields: Record<string, FieldValue> = {};
  for (const k in raw.fields) {
    const v = raw.fields[k];
    if (typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) setOwn(fields, k, v);
    else if (v === null) continue;
    else return bad(k, v, 'a field value must be a string, a number or a boolean');
  }
  const time = timeText(raw.time);
  if (time === undefined) return bad('time', raw.time, 'time must be nanoseconds since the epoch, a number or a string of digits');
  return { index, measurement, tags, fields, time };
}

/** Decodes a JSON body: an array of points (a single point object is accepted too). */
/** Points nest three levels deep ([ {fields: {…}} ]); anything far deeper is not a batch of
 * points, and refusing it before parsing keeps later recursive work (error messages
 * stringify values) from overflowing the stack. */
const MAX_JSON_DEPTH = 32;

/** Deepest nesting of arrays and objects in a JSON text, counted outside strings; stops counting past `limit`. */
function jsonDepth(text: string, limit: number): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \\ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 /* [ */ || c === 123 /* { */) {
      if (++depth > max && (max = depth) > limit) return max;
    } else if (c === 93 /* ] */ || c === 125 /* } */) depth--;
  }
  return max;
}

export function decodeJsonPoints(text: string, opts: DecodeOptions = {}): DecodedBatch {
  if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
    throw seqError('SEQ_ERR_BAD_BODY', `the JSON body nests arrays/objects more than ${MAX_JSON_DEPTH} levels deep; a batch is [{measurement, tags, fields, time}] with flat tags and fields`, 400);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw seqError('SEQ_ERR_BAD_BODY', `the body is not valid JSON: ${(e as Error).message}`, 400);
  }
  const list = Array.isArray(doc) ? doc : isObject(doc) ? [doc] : undefined;
  if (!list) throw seqError('SEQ_ERR_BAD_BODY', 'a JSON body must be an array of points [{measurement, tags, fields, time}]', 400);
  const maxPoints = opts.maxPoints ?? Infinity;
  if (list.length > maxPoints) {
    throw seqError('SEQ_ERR_BODY_TOO_LARGE', `the batch has ${list.length} points, more than max_batch_spans = ${maxPoints}; send smaller batches`, 413);
  }
  const points: Point[] = [];
  const errors: PointError[] = [];
  for (let i = 0; i < list.length; i++) {
    const r = decodeOne(list[i], i);
    if ('reason' in r) errors.push(r);
    else points.push(r);
  }
  return { points, errors };
}

/** Points as JSON (64-bit integers as strings of digits). */
export function encodeJsonPoints(points: Iterable<{ measurement: string; tags?: Record<string, string>; fields: Record<string, FieldValue>; time?: string | number | bigint }>): string {
  const out: unknown[] = [];
  for (const p of points) {
    const fields: Record<string, unknown> = {};
    for (const k in p.fields) {
      const v = p.fields[k];
      fields[k] = typeof v === 'bigint' ? v.toString() : v;
    }
    out.push({ measurement: p.measurement, tags: p.tags ?? {}, fields, time: p.time === undefined ? undefined : String(p.time) });
  }
  return JSON.stringify(out);
}
