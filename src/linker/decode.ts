// The reference decoding of an ingest body into spans (line protocol or JSON, then
// validation), and the loading of the spans at given locs from a spooled raw body: what the
// emission uses to build the spans of kept traces. Ingest itself reads only the join fields
// (./scan.ts for line protocol, whose fallback is decodeBody).
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { isAscii } from 'node:buffer';
import type { LinkerConfig } from '../config/config.js';
import { decodeJsonPoints } from '../span/json.js';
import { decodeLineProtocolAt, decodeLineProtocolBytes } from '../span/lineprotocol.js';
import type { PointError } from '../span/point.js';
import type { EbpfSpan } from '../span/span.js';
import type { BodyEncoding, RawBatch } from '../storage/store.js';
import { validatePoint, validatePoints } from '../span/validate.js';

/**
 * Inflating is synchronous. The linker runs on one core, so the thread pool bought no
 * parallelism, and async zlib made one thread round trip and one JS callback per 16 KiB
 * output chunk (~30 a body of 1000 spans: `processCallback` was ~4 % of the linker's CPU).
 * (64 KiB chunks were measured slower here: stage bench `load` 4.8 against 2.8 µs a span.)
 */
export function inflateBody(body: Buffer, encoding: BodyEncoding, maxBytes: number): Buffer {
  // maxOutputLength stops inflating at the limit: a compression bomb costs at most maxBytes.
  if (encoding === 'gzip') return gunzipSync(body, { maxOutputLength: maxBytes });
  if (encoding === 'br') return brotliDecompressSync(body, { maxOutputLength: maxBytes });
  return body;
}

export type DecodeLimits = Pick<LinkerConfig, 'max_body_bytes' | 'max_batch_spans' | 'max_field_bytes'>;

/**
 * The valid spans of a body, every point error, and where each span is in the body (`locs`):
 * for line protocol the text offset of its line, for JSON its point index. The linker keeps
 * only join metadata of a pending span and loads the full span again by its loc (createRawLoader).
 */
export interface DecodedSpans {
  spans: EbpfSpan[];
  errors: PointError[];
  locs: number[];
}

/** A body (inflated) → the valid spans and every point error, as the route decides them. */
export function decodeBody(body: Buffer, format: 'lp' | 'json', cfg: Pick<DecodeLimits, 'max_batch_spans' | 'max_field_bytes'>): DecodedSpans {
  const starts: number[] | undefined = format === 'lp' ? [] : undefined;
  const decoded = format === 'lp'
    ? decodeLineProtocolBytes(body, { maxPoints: cfg.max_batch_spans, starts })
    : decodeJsonPoints(body.toString('utf8'), { maxPoints: cfg.max_batch_spans });
  const locs: number[] = [];
  const { spans, errors } = validatePoints(decoded.points, { maxFieldBytes: cfg.max_field_bytes }, locs);
  if (starts !== undefined) for (let i = 0; i < locs.length; i++) locs[i] = starts[locs[i]];
  if (decoded.errors.length === 0) return { spans, errors, locs };
  return { spans, errors: decoded.errors.concat(errors).sort(byIndex), locs };
}

/** The body of a spooled raw batch, inflated (within max_body_bytes). */
export function inflate(raw: RawBatch, cfg: DecodeLimits): Buffer {
  return inflateBody(raw.body, raw.encoding, cfg.max_body_bytes);
}

/**
 * The spans of a spooled raw body (tests; the replay uses ingest's decodeRawFields): the same decoding
 * and validation as when it was accepted, so the same spans in the same order and at the same
 * locs (same limits assumed; a limit lowered since can only drop points, never change one).
 */
export function decodeRawBatch(raw: RawBatch, cfg: DecodeLimits): DecodedSpans {
  return decodeBody(inflate(raw, cfg), raw.format, cfg);
}

/**
 * The spans at `locs` (ascending, from decodeRawBatch or the ingest route) of an inflated body,
 * in that order: for an ASCII line-protocol body only the wanted lines are decoded and
 * validated. Throws when a loc holds no valid span (not this body's locs).
 */
function spansOfBody(b: Buffer, format: RawBatch['format'], locs: readonly number[], cfg: DecodeLimits): EbpfSpan[] {
  if (format === 'lp' && isAscii(b)) {
    const got = linesAt(b, locs, cfg);
    if (got !== undefined) return got;
  }
  return spansAt(b.toString('utf8'), format, locs, cfg);
}

/** Loads spans of held raw bodies by batch id; see createRawLoader. */
export interface RawLoader {
  load(batchId: number, raw: RawBatch, locs: readonly number[]): EbpfSpan[];
  /** The batch is done: its inflated body leaves the cache. */
  forget(batchId: number): void;
  /** Bytes of inflated bodies cached. */
  cachedBytes(): number;
}

/**
 * Loads the spans at given locs of raw bodies (spansOfBody), with inflated bodies kept from their first load while they fit in
 * `cacheBytes` (the traces of one batch close over several flushes; the oldest body leaves
 * first when room is needed); a body leaves when its batch is done. Bytes are off-heap: the
 * garbage collector neither copies nor traces them. An ASCII line-protocol body (text offsets
 * = byte offsets) has only its wanted lines made into strings: a whole-body string is a
 * large-object allocation (see decodeLineProtocolBytes). Holding the decoded texts from
 * ingest on was tried and dropped (docs/linker.md).
 */
export function createRawLoader(cfg: DecodeLimits, cacheBytes: number): RawLoader {
  const inflated = new Map<number, Buffer>();
  let bytes = 0;
  function keepBytes(batchId: number, b: Buffer): void {
    if (b.length > cacheBytes) return;
    for (const [id, old] of inflated) {
      if (bytes + b.length <= cacheBytes) break;
      inflated.delete(id);
      bytes -= old.length;
    }
    if (bytes + b.length > cacheBytes) return;
    inflated.set(batchId, b);
    bytes += b.length;
  }
  return {
    load(batchId, raw, locs) {
      let b = inflated.get(batchId);
      if (b === undefined) {
        b = inflate(raw, cfg);
        if (raw.encoding !== 'identity') keepBytes(batchId, b);
      }
      return spansOfBody(b, raw.format, locs, cfg);
    },
    forget(batchId) {
      const b = inflated.get(batchId);
      if (b !== undefined) {
        inflated.delete(batchId);
        bytes -= b.length;
      }
    },
    cachedBytes: () => bytes,
  };
}

/**
 * The spans at `locs` of an ASCII line-protocol body, each line made into its own small
 * string; undefined when a line does not decode alone (a quoted string holding a newline):
 * the caller decodes from the whole text then.
 */
function linesAt(b: Buffer, locs: readonly number[], cfg: DecodeLimits): EbpfSpan[] | undefined {
  const vopts = { maxFieldBytes: cfg.max_field_bytes };
  const out: EbpfSpan[] = new Array(locs.length);
  const at0 = [0];
  for (let k = 0; k < locs.length; k++) {
    const from = locs[k];
    let to = b.indexOf(10, from);
    if (to < 0) to = b.length;
    let p;
    try {
      p = decodeLineProtocolAt(b.toString('latin1', from, to), at0)[0];
    } catch {
      return undefined;
    }
    const r = validatePoint(p, vopts);
    if ('reason' in r) return undefined;
    out[k] = r;
  }
  return out;
}

function spansAt(text: string, format: 'lp' | 'json', locs: readonly number[], cfg: DecodeLimits): EbpfSpan[] {
  const vopts = { maxFieldBytes: cfg.max_field_bytes };
  const out: EbpfSpan[] = new Array(locs.length);
  if (format === 'lp') {
    const points = decodeLineProtocolAt(text, locs);
    for (let k = 0; k < points.length; k++) out[k] = validOrThrow(validatePoint(points[k], vopts), locs[k]);
    return out;
  }
  const { points } = decodeJsonPoints(text, { maxPoints: cfg.max_batch_spans });
  let k = 0;
  for (let i = 0; i < points.length && k < locs.length; i++) {
    if (points[i].index === locs[k]) out[k] = validOrThrow(validatePoint(points[i], vopts), locs[k++]);
  }
  if (k !== locs.length) throw new Error(`no point at index ${locs[k]} of a spooled JSON body`);
  return out;
}

function validOrThrow(r: EbpfSpan | PointError, loc: number): EbpfSpan {
  if ('reason' in r) throw new Error(`the point at ${loc} of a spooled body is not valid any more: ${r.field}: ${r.reason}`);
  return r;
}

export function byIndex(a: PointError, b: PointError): number {
  return a.index - b.index;
}

