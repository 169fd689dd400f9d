// InfluxDB line protocol, decoded by hand: it is the ingest hot path (every span of every
// agent passes here), so it scans char codes over one string, slices only when a token
// has no escapes and allocates nothing per character. A malformed line becomes one error
// (index, line, column, reason) and decoding resumes at the next line.
//
//   measurement[,tag=value...] field=value[,field=value...] [timestamp]
//
// Escapes: in the measurement `\,` `\ `; in tag keys, tag values and field keys `\,` `\=`
// `\ `; everywhere `\\` is one backslash, and a backslash before any other character is
// kept as is. String field values are double-quoted with `\"` and `\\` escaped and may span
// lines. Integers end in `i` (int64) or `u` (uint64); values beyond 2^53 stay bigint.
import { isAscii } from 'node:buffer';
import { seqError } from '../errors.js';
import type { EbpfSpan } from './span.js';
import type { DecodedBatch, FieldValue, Point, PointError } from './point.js';
import { setOwn, shortValue } from './point.js';
import { spanToPoint } from './validate.js';

const NL = 10, CR = 13, SP = 32, TAB = 9, COMMA = 44, EQ = 61, BS = 92, DQ = 34, HASH = 35, MINUS = 45;

const INT64_MAX = 9223372036854775807n;
const INT64_MIN = -9223372036854775808n;
const UINT64_MAX = 18446744073709551615n;
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

class Malformed {
  constructor(readonly pos: number, readonly reason: string, readonly field = '', readonly value = '') {}
}

// Parser cursor: module-level so that the scanners return tokens without allocating tuples.
let src = '';
let pos = 0;
let escaped = false;
/** Index of the next backslash at or after the scan position (src.length when none): one indexOf per backslash, not per token. */
let nextBs = 0;

// Points of a batch repeat their keys in the same order, and many values (host, service,
// addresses, routes): the previous point's token at the same position is tried first with a
// native startsWith, which spares scanning and gives the same (internalised) string back.
const prevTagKeys: string[] = [];
const prevTagValues: string[] = [];
const prevFieldKeys: string[] = [];
const prevStrings: string[] = [];
let prevMeasurement = '';

/** Char classes: 1 ends every token (space, tab, CR, LF), 2 comma, 4 equals, 8 backslash. */
const CLASS = new Uint8Array(128);
CLASS[SP] = CLASS[TAB] = CLASS[CR] = CLASS[NL] = 1;
CLASS[COMMA] = 2;
CLASS[EQ] = 4;
CLASS[BS] = 8;

/** Scans a name or tag value up to an unescaped stop character; sets `escaped` when it saw a backslash. */
function scanToken(stopAtEq: boolean, stopAtComma: boolean): number {
  const n = src.length;
  const stop = 1 | (stopAtComma ? 2 : 0) | (stopAtEq ? 4 : 0);
  escaped = false;
  let i = pos;
  while (i < n) {
    const c = src.charCodeAt(i);
    const k = c < 128 ? CLASS[c] : 0;
    if (k === 0) {
      i++;
      continue;
    }
    if (k === 8) {
      escaped = true;
      i += i + 1 < n && src.charCodeAt(i + 1) !== NL ? 2 : 1;
      continue;
    }
    if (k & stop) break;
    i++;
  }
  return i;
}

/** When `cached` is the token at pos (followed by a char of class `end`), moves past it and returns true. */
function reuse(cached: string | undefined, end: number): boolean {
  if (cached === undefined || cached === '' || !src.startsWith(cached, pos)) return false;
  const c = src.charCodeAt(pos + cached.length);
  if (!(c < 128 && CLASS[c] & end) && !(end & 1 && pos + cached.length === src.length)) return false;
  pos += cached.length;
  return true;
}

function unescapeName(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === BS && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d === COMMA || d === EQ || d === SP || d === BS) {
        out += s[i + 1];
        i++;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

function token(start: number, end: number): string {
  const s = src.slice(start, end);
  return escaped ? unescapeName(s) : s;
}

function fail(reason: string, field = '', value = ''): never {
  throw new Malformed(pos, reason, field, value);
}

/** A double-quoted string starting at `pos` (on the quote); `slot` indexes the previous point's string there. */
function quoted(key: string, slot: number): string {
  const start = pos + 1;
  const cached = prevStrings[slot];
  if (cached !== undefined && src.startsWith(cached, start) && src.charCodeAt(start + cached.length) === DQ) {
    pos = start + cached.length + 1;
    return cached;
  }
  if (nextBs < start) nextBs = src.indexOf('\\', start) >>> 0;
  let end = src.indexOf('"', start);
  if (nextBs >= end || end < 0) {
    if (end < 0) fail('unterminated string value: a closing " is missing', key, src.slice(start, start + 40));
    const raw = src.slice(start, end);
    pos = end + 1;
    prevStrings[slot] = raw;
    return raw;
  }
  // Escapes inside: walk it.
  const n = src.length;
  let i = start;
  let out = '';
  let from = start;
  while (i < n) {
    const c = src.charCodeAt(i);
    if (c === DQ) break;
    if (c === BS && i + 1 < n) {
      const d = src.charCodeAt(i + 1);
      if (d === DQ || d === BS) {
        out += src.slice(from, i);
        from = i + 1;
      }
      i += 2;
      continue;
    }
    i++;
  }
  if (i >= n) fail('unterminated string value: a closing " is missing', key, src.slice(start, start + 40));
  end = i;
  out += src.slice(from, end);
  pos = end + 1;
  nextBs = src.indexOf('\\', pos) >>> 0;
  return out;
}

function integer(key: string, s: number, e: number, unsigned: boolean): number | bigint {
  let i = s;
  let neg = false;
  if (src.charCodeAt(i) === MINUS) {
    if (unsigned) fail('an unsigned integer (u) cannot be negative', key, src.slice(s, e + 1));
    neg = true;
    i++;
  }
  if (i === e) fail('an integer needs digits before its i/u suffix', key, src.slice(s, e + 1));
  // Up to 16 digits by hand: every partial value is at most the final one, so when that is
  // ≤ 2^53 - 1 each step was exact (µs timestamps have 16 digits; BigInt parsing is dear).
  if (e - i <= 16) {
    let v = 0;
    for (; i < e; i++) {
      const d = src.charCodeAt(i) - 48;
      if (d < 0 || d > 9) fail('an integer (i/u suffix) may only contain digits', key, src.slice(s, e + 1));
      v = v * 10 + d;
    }
    if (v <= Number.MAX_SAFE_INTEGER) return neg ? 0 - v : v;
    i = neg ? s + 1 : s;
  }
  for (let k = i; k < e; k++) {
    const d = src.charCodeAt(k) - 48;
    if (d < 0 || d > 9) fail('an integer (i/u suffix) may only contain digits', key, src.slice(s, e + 1));
  }
  const b = BigInt(src.slice(s, e));
  if (unsigned ? b > UINT64_MAX : b > INT64_MAX || b < INT64_MIN) {
    fail(unsigned ? 'out of the uint64 range 0…18446744073709551615' : 'out of the int64 range; use the u suffix for values up to 2^64-1', key, src.slice(s, e + 1));
  }
  return b <= SAFE_MAX && b >= -SAFE_MAX ? Number(b) : b;
}

function isFloatChar(c: number): boolean {
  return (c >= 48 && c <= 57) || c === 46 || c === 43 || c === MINUS || c === 101 || c === 69;
}

/** An unquoted field value: integer, float or boolean. */
function bare(key: string): FieldValue {
  const s = pos;
  const n = src.length;
  let i = s;
  while (i < n) {
    const c = src.charCodeAt(i);
    if (c === COMMA || c === SP || c === NL || c === CR || c === TAB) break;
    i++;
  }
  pos = i;
  if (i === s) fail('missing field value after =', key);
  const last = src.charCodeAt(i - 1);
  if (last === 105 /* i */) return integer(key, s, i - 1, false);
  if (last === 117 /* u */) return integer(key, s, i - 1, true);
  const first = src.charCodeAt(s);
  if (first === 116 || first === 84 || first === 102 || first === 70) {
    const w = src.slice(s, i);
    if (w === 't' || w === 'T' || w === 'true' || w === 'True' || w === 'TRUE') return true;
    if (w === 'f' || w === 'F' || w === 'false' || w === 'False' || w === 'FALSE') return false;
    fail('not a valid field value: expected a number, an integer with i/u, true/false or a "string"', key, w);
  }
  for (let k = s; k < i; k++) {
    if (!isFloatChar(src.charCodeAt(k))) fail('not a valid field value: expected a number, an integer with i/u, true/false or a "string"', key, src.slice(s, i));
  }
  const v = Number(src.slice(s, i));
  if (!Number.isFinite(v)) fail('not a valid float', key, src.slice(s, i));
  return v;
}

function parsePoint(index: number): Point {
  const n = src.length;
  let end: number;
  // measurement
  let measurement: string;
  if (reuse(prevMeasurement, 1 | 2)) measurement = prevMeasurement;
  else {
    end = scanToken(false, true);
    if (end === pos) fail('missing measurement');
    measurement = token(pos, end);
    if (!escaped) prevMeasurement = measurement;
    pos = end;
  }
  const tags: Record<string, string> = {};
  let slot = 0;
  while (pos < n && src.charCodeAt(pos) === COMMA) {
    pos++;
    let key = prevTagKeys[slot];
    if (!reuse(key, 4)) {
      end = scanToken(true, true);
      if (end === pos) fail('empty tag key');
      key = token(pos, end);
      if (!escaped) prevTagKeys[slot] = key;
      pos = end;
      if (src.charCodeAt(pos) !== EQ) fail(`tag ${key} has no =value`, key);
    }
    pos++;
    let value = prevTagValues[slot];
    if (!reuse(value, 1 | 2)) {
      end = scanToken(false, true);
      if (end === pos) fail(`tag ${key} has an empty value`, key);
      value = token(pos, end);
      if (!escaped) prevTagValues[slot] = value;
      pos = end;
    }
    setOwn(tags, key!, value!);
    slot++;
  }
  if (pos >= n || src.charCodeAt(pos) !== SP) fail('missing fields: expected a space then key=value after the measurement and tags');
  while (pos < n && src.charCodeAt(pos) === SP) pos++;
  const fields: Record<string, FieldValue> = {};
  for (slot = 0; ; slot++) {
    let key = prevFieldKeys[slot];
    if (!reuse(key, 4)) {
      end = scanToken(true, true);
      if (end === pos) fail(slot === 0 ? 'missing fields: a point needs at least one key=value' : 'empty field key after ,');
      key = token(pos, end);
      if (!escaped) prevFieldKeys[slot] = key;
      pos = end;
      if (src.charCodeAt(pos) !== EQ) fail(`field ${key} has no =value`, key);
    }
    pos++;
    setOwn(fields, key!, src.charCodeAt(pos) === DQ ? quoted(key!, slot) : bare(key!));
    if (pos < n && src.charCodeAt(pos) === COMMA) {
      pos++;
      continue;
    }
    break;
  }
  let time = '';
  while (pos < n && (src.charCodeAt(pos) === SP || src.charCodeAt(pos) === TAB)) pos++;
  if (pos < n && src.charCodeAt(pos) !== NL && src.charCodeAt(pos) !== CR) {
    const s = pos;
    if (src.charCodeAt(pos) === MINUS) pos++;
    while (pos < n) {
      const c = src.charCodeAt(pos);
      if (c < 48 || c > 57) break;
      pos++;
    }
    if (pos === s || (pos === s + 1 && src.charCodeAt(s) === MINUS)) fail('the timestamp must be an integer (nanoseconds)', 'time', src.slice(s, Math.min(n, s + 40)).split(/[\s]/)[0]);
    time = src.slice(s, pos);
    while (pos < n && (src.charCodeAt(pos) === SP || src.charCodeAt(pos) === TAB)) pos++;
  }
  if (pos < n && src.charCodeAt(pos) === CR) pos++;
  if (pos < n && src.charCodeAt(pos) !== NL) fail('unexpected text after the timestamp', 'time', src.slice(pos, Math.min(n, pos + 40)));
  return { index, measurement, tags, fields, time };
}

export interface DecodeOptions {
  /** Most points accepted; one more throws SEQ_ERR_BODY_TOO_LARGE (413). */
  maxPoints?: number;
  /**
   * Filled with the text offset where each point's line starts (starts[point.index]), so that
   * decodeLineProtocolAt can later decode single points of the same text again.
   */
  starts?: number[];
}

/** Decodes a line-protocol body. Blank lines and `#` comments are skipped. */
export function decodeLineProtocol(text: string, opts: DecodeOptions = {}): DecodedBatch {
  const maxPoints = opts.maxPoints ?? Infinity;
  const points: Point[] = [];
  const errors: PointError[] = [];
  src = text;
  pos = 0;
  nextBs = text.indexOf('\\') >>> 0;
  prevMeasurement = '';
  prevTagKeys.length = prevTagValues.length = prevFieldKeys.length = prevStrings.length = 0;
  // Line numbers are counted only when an error needs one, from the previous error onwards.
  let countedTo = 0;
  let line = 1;
  const n = text.length;
  let index = 0;
  try {
    while (pos < n) {
      const c = text.charCodeAt(pos);
      if (c === NL || c === SP || c === TAB || c === CR) {
        pos++;
        continue;
      }
      if (c === HASH) {
        const nl = text.indexOf('\n', pos);
        pos = nl < 0 ? n : nl;
        continue;
      }
      if (index >= maxPoints) {
        throw seqError('SEQ_ERR_BODY_TOO_LARGE', `the batch has more than max_batch_spans = ${maxPoints} points; send smaller batches`, 413);
      }
      if (opts.starts !== undefined) opts.starts.push(pos);
      try {
        points.push(parsePoint(index));
      } catch (e) {
        if (!(e instanceof Malformed)) throw e;
        for (let k = text.indexOf('\n', countedTo); k >= 0 && k < e.pos; k = text.indexOf('\n', k + 1)) line++;
        countedTo = e.pos;
        const lineStart = text.lastIndexOf('\n', e.pos - 1) + 1;
        errors.push({ index, field: e.field, value: shortValue(e.value), reason: e.reason, line, column: e.pos - lineStart + 1 });
        const nl = text.indexOf('\n', e.pos);
        pos = nl < 0 ? n : nl;
        if (nextBs < pos) nextBs = text.indexOf('\\', pos) >>> 0;
      }
      index++;
    }
  } finally {
    src = '';
    prevMeasurement = '';
    prevTagKeys.length = prevTagValues.length = prevFieldKeys.length = prevStrings.length = 0;
  }
  return { points, errors };
}

/**
 * Longest piece of an ASCII body decoded as one string. V8 puts a string over 128 KiB in
 * large-object space, on pages mapped for it alone; on this machine the page faults make a
 * 470 KB body string cost ~3.4 ms (~3.5 µs a span, measured: 18 µs for 100 KB, 1.6 ms for
 * 200 KB), more than decoding it. Pieces of ~64 KiB, cut after a newline, cost ~0.1 µs a span.
 */
const PIECE_BYTES = 64 * 1024;

/**
 * decodeLineProtocol of a body's bytes, with the same points, errors and `starts`: for an
 * ASCII body (text offsets = byte offsets) the body is decoded in pieces of ~64 KiB cut after
 * a newline, each its own string (see PIECE_BYTES); any other body as one UTF-8 string. A
 * piece decodes exactly as that part of the whole text when it has no error (a cut inside a
 * multi-line quoted string leaves that string unterminated: an error); when a piece has an
 * error, the whole body is decoded as one string instead, so that errors, their lines and
 * columns are the whole text's.
 */
export function decodeLineProtocolBytes(body: Buffer, opts: DecodeOptions = {}): DecodedBatch {
  if (body.length <= PIECE_BYTES) return decodeLineProtocol(body.toString(isAscii(body) ? 'latin1' : 'utf8'), opts);
  if (!isAscii(body)) return decodeLineProtocol(body.toString('utf8'), opts);
  const maxPoints = opts.maxPoints ?? Infinity;
  const starts = opts.starts;
  const startsFrom = starts === undefined ? 0 : starts.length;
  let points: Point[] = [];
  const pieceStarts: number[] | undefined = starts === undefined ? undefined : [];
  for (let from = 0; from < body.length;) {
    let to = body.indexOf(NL, from + PIECE_BYTES);
    to = to < 0 ? body.length : to + 1;
    if (pieceStarts !== undefined) pieceStarts.length = 0;
    const got = decodeLineProtocol(body.toString('latin1', from, to), { maxPoints: maxPoints - points.length, starts: pieceStarts });
    if (got.errors.length > 0) {
      if (starts !== undefined) starts.length = startsFrom;
      return decodeLineProtocol(body.toString('latin1'), opts);
    }
    const base = points.length;
    const ps = got.points;
    if (base === 0) points = ps;
    else for (let i = 0; i < ps.length; i++) {
      ps[i].index += base;
      points.push(ps[i]);
    }
    if (starts !== undefined) for (let i = 0; i < pieceStarts!.length; i++) starts.push(pieceStarts![i] + from);
    from = to;
  }
  return { points, errors: [] };
}

/**
 * The points whose lines start at `starts` (offsets from decodeLineProtocol's `starts`, any
 * order), decoded exactly as decodeLineProtocol decoded them; the rest of the text is not
 * looked at. The linker keeps only join metadata of a pending span and decodes the full span
 * again this way when its trace is kept. Point indexes are positions in `starts`. Throws
 * when a line does not decode (the offsets are not from this text).
 */
export function decodeLineProtocolAt(text: string, starts: readonly number[]): Point[] {
  const points: Point[] = new Array(starts.length);
  src = text;
  // nextBs stays valid while the offsets ascend and it lies ahead; searched again otherwise.
  nextBs = 0;
  let last = -1;
  prevMeasurement = '';
  prevTagKeys.length = prevTagValues.length = prevFieldKeys.length = prevStrings.length = 0;
  try {
    for (let k = 0; k < starts.length; k++) {
      pos = starts[k];
      if (pos < last || nextBs < pos) nextBs = text.indexOf('\\', pos) >>> 0;
      last = pos;
      try {
        points[k] = parsePoint(k);
      } catch (e) {
        if (!(e instanceof Malformed)) throw e;
        throw new Error(`no point at offset ${starts[k]}: ${e.reason}`);
      }
    }
  } finally {
    src = '';
    prevMeasurement = '';
    prevTagKeys.length = prevTagValues.length = prevFieldKeys.length = prevStrings.length = 0;
  }
  return points;
}

// ---- encoding ----

function escapeName(s: string, measurement: boolean): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let rep: string | undefined;
    if (c === COMMA || c === SP || c === BS || (c === EQ && !measurement)) rep = '\\' + s[i];
    else if (c === NL) rep = '\\n'; // line protocol cannot carry a newline in a name; keep it visible
    else if (c === CR) rep = '\\r';
    else if (c === TAB) rep = ' ';
    if (rep !== undefined) {
      out += s.slice(from, i) + rep;
      from = i + 1;
    }
  }
  return from === 0 ? s : out + s.slice(from);
}

function escapeString(s: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === DQ || c === BS) {
      out += s.slice(from, i) + '\\' + s[i];
      from = i + 1;
    }
  }
  return from === 0 ? s : out + s.slice(from);
}

function encodeValue(v: FieldValue): string {
  switch (typeof v) {
    case 'string':
      return `"${escapeString(v)}"`;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'bigint':
      return v > INT64_MAX ? `${v}u` : `${v}i`;
    default:
      if (Number.isInteger(v)) return `${v}i`;
      if (!Number.isFinite(v)) throw new RangeError(`line protocol cannot carry the float ${v}`);
      return String(v);
  }
}

/** One line, without the newline. Empty-string tags are left out (line protocol has no empty tag value). */
export function encodePoint(p: { measurement: string; tags?: Record<string, string>; fields: Record<string, FieldValue>; time?: string | number | bigint }): string {
  let line = escapeName(p.measurement, true);
  if (p.tags) {
    for (const k of Object.keys(p.tags).sort()) {
      const v = p.tags[k];
      if (v === '') continue;
      line += `,${escapeName(k, false)}=${escapeName(v, false)}`;
    }
  }
  let sep = ' ';
  for (const k in p.fields) {
    const v = p.fields[k];
    if (v === undefined) continue;
    line += `${sep}${escapeName(k, false)}=${encodeValue(v)}`;
    sep = ',';
  }
  if (sep === ' ') throw new RangeError('a line-protocol point needs at least one field');
  if (p.time !== undefined && p.time !== '') line += ` ${p.time}`;
  return line;
}

export function encodeLineProtocol(points: Iterable<Parameters<typeof encodePoint>[0]>): string {
  let out = '';
  for (const p of points) out += encodePoint(p) + '\n';
  return out;
}

/** Spans as DataKit's agent sends them: `host` a tag, everything else a field; time = start in ns. */
export function encodeSpans(spans: Iterable<EbpfSpan>): string {
  let out = '';
  for (const s of spans) out += encodePoint(spanToPoint(s)) + '\n';
  return out;
}
