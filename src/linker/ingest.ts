// POST /v1/bpftracing: body → points → spans → durable in the spool → 200 {accepted, rejected, errors}.
// The answer is sent only after `sink.accept` returned, i.e. after the spool append committed:
// a 2xx means the spans survive a SIGKILL. Nothing of a batch is stored when the whole batch
// is refused (413/415/401/503, or every point bad).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { isAscii } from 'node:buffer';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { seqError } from '../errors.js';
import type { LinkerConfig } from '../config/config.js';
import { decodeJsonPoints } from '../span/json.js';
import { decodeLineProtocolAt, decodeLineProtocolBytes } from '../span/lineprotocol.js';
import type { PointError } from '../span/point.js';
import type { EbpfSpan } from '../span/span.js';
import type { RawBatch } from '../storage/store.js';
import { validatePoint, validatePoints } from '../span/validate.js';
import { bearerGuard } from './http.js';
import { JoinBatch, joinFieldsOf } from './link/fields.js';

/**
 * Inflating is synchronous. The linker runs on one core, so the thread pool bought no
 * parallelism, and async zlib made one thread round trip and one JS callback per 16 KiB
 * output chunk (~30 a body of 1000 spans: `processCallback` was ~4 % of the linker's CPU).
 * (64 KiB chunks were measured slower here: stage bench `load` 4.8 against 2.8 µs a span.)
 */
function gunzipBody(body: Buffer, maxBytes: number): Buffer {
  return gunzipSync(body, { maxOutputLength: maxBytes });
}

export const INGEST_PATH = '/v1/bpftracing';
/** At most this many point errors are listed in one answer (`rejected` counts them all). */
export const MAX_LISTED_ERRORS = 100;
/**
 * How much of an oversized body is read and thrown away before the 413 goes out: at least
 * 64 MiB, 4 × max_body_bytes when that is more. Answering (and closing, as a refused upload
 * must) while the client is still sending makes the kernel reset the connection over the
 * unread bytes, and the client then sees EPIPE/ECONNRESET instead of the 413. Beyond the
 * bound the answer goes out at once and the connection is cut.
 */
export function drainBound(maxBodyBytes: number): number {
  return Math.max(64 * 1024 * 1024, 4 * maxBodyBytes);
}

function tooLarge(size: string, maxBytes: number) {
  return seqError('SEQ_ERR_BODY_TOO_LARGE', `the body is ${size} bytes, over max_body_bytes = ${maxBytes} bytes; send smaller batches`, 413);
}

/**
 * The body as one Buffer, at most `maxBytes`. An oversized one is read to its end and
 * discarded (up to drainBound) before the 413, so that the client has sent everything and can
 * read the answer; the 413 names the limit and the size (Content-Length, or the bytes read).
 */
function readBody(req: IncomingMessage, maxBytes: number, done: (err: Error | null, body?: Buffer) => void): void {
  const announced = req.headers['content-length'] === undefined ? NaN : Number(req.headers['content-length']);
  const bound = drainBound(maxBytes);
  if (announced > bound) {
    done(tooLarge(String(announced), maxBytes)); // too much to drain: answer now, the connection is cut
    return;
  }
  const chunks: Buffer[] = [];
  let received = 0;
  let over = announced > maxBytes;
  let finished = false;
  const finish = (err: Error | null, body?: Buffer) => {
    if (finished) return;
    finished = true;
    req.removeListener('data', onData);
    req.removeListener('end', onEnd);
    req.removeListener('error', onError);
    done(err, body);
  };
  const onData = (chunk: Buffer) => {
    received += chunk.length;
    if (received > maxBytes && !over) {
      over = true;
      chunks.length = 0; // from here on bytes are only counted
    }
    if (!over) chunks.push(chunk);
    else if (received > bound) finish(tooLarge(`more than ${bound}`, maxBytes));
  };
  const onEnd = () => {
    if (over) finish(tooLarge(String(Number.isNaN(announced) ? received : announced), maxBytes));
    else if (!Number.isNaN(announced) && received !== announced) finish(seqError('SEQ_ERR_BAD_BODY', `the body has ${received} bytes, Content-Length said ${announced}`, 400));
    else finish(null, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received));
  };
  const onError = (e: Error) => finish(seqError('SEQ_ERR_BAD_BODY', `the body could not be read: ${e.message}`, 400));
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('error', onError);
  req.resume();
}

/**
 * `Expect: 100-continue` with a Content-Length over the limit is refused before the body is
 * sent (curl asks so for bodies over 1 MiB); every other request goes on as usual.
 */
function refuseEarly(app: FastifyInstance, maxBytes: number, stats: IngestStats): void {
  const server = app.server;
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const length = Number(req.headers['content-length']);
    if (req.method === 'POST' && (req.url ?? '').split('?')[0] === INGEST_PATH && length > maxBytes) {
      stats.requests++;
      stats.failedRequests++;
      const e = tooLarge(String(length), maxBytes);
      res.writeHead(413, { 'content-type': 'application/json; charset=utf-8', connection: 'close' });
      res.end(JSON.stringify({ code: e.code, message: e.message }));
      return;
    }
    res.writeContinue();
    server.emit('request', req, res);
  });
}

/** Where accepted spans go: the pipeline, which appends them to the spool before returning. */
export interface IngestSink {
  /**
   * Makes the batch durable and hands it to linking; throws SeqError (SEQ_ERR_STORAGE_FULL → 503).
   * `raw` is the body as received, which the spool keeps (see decodeRawFields); `fields` are
   * the join fields of its accepted spans, each with its loc (see loadRawSpans). `fields` is
   * ingest's scratch: read it before returning, do not keep it.
   */
  accept(fields: JoinBatch, receivedAtMs: number, raw: RawBatch): void;
}

export interface IngestStats {
  requests: number;
  /** Requests answered with an error status (4xx/5xx), whatever the reason. */
  failedRequests: number;
  spansAccepted: number;
  spansRejected: number;
  /** Body bytes as received, and after decompression. */
  bytesReceived: number;
  bytesDecoded: number;
}

export interface IngestOptions {
  cfg: Pick<LinkerConfig, 'ingest_token' | 'max_body_bytes' | 'max_batch_spans' | 'max_field_bytes'>;
  sink: IngestSink;
  now?: () => number;
}

export interface IngestAnswer {
  accepted: number;
  rejected: number;
  errors: PointError[];
}

function decompress(req: FastifyRequest, body: Buffer, maxBytes: number): Buffer {
  const enc = (req.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (enc === '' || enc === 'identity') return body;
  if (enc !== 'gzip' && enc !== 'x-gzip') {
    throw seqError('SEQ_ERR_UNSUPPORTED_MEDIA', `Content-Encoding "${enc}" is not accepted: send identity or gzip`, 415);
  }
  try {
    // maxOutputLength stops inflating at the limit: a gzip bomb costs at most max_body_bytes.
    return gunzipBody(body, maxBytes);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
      throw seqError('SEQ_ERR_BODY_TOO_LARGE', `the gzip body inflates beyond max_body_bytes = ${maxBytes} bytes; send smaller batches`, 413);
    }
    throw seqError('SEQ_ERR_BAD_BODY', `the body is not valid gzip: ${err.message}`, 400);
  }
}

function formatOf(req: FastifyRequest): 'lp' | 'json' {
  const ct = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (ct === '' || ct === 'text/plain') return 'lp';
  if (ct === 'application/json') return 'json';
  throw seqError('SEQ_ERR_UNSUPPORTED_MEDIA', `Content-Type "${ct}" is not accepted: send text/plain (line protocol) or application/json`, 415);
}

export type DecodeLimits = Pick<LinkerConfig, 'max_body_bytes' | 'max_batch_spans' | 'max_field_bytes'>;

/**
 * The valid spans of a body, every point error, and where each span is in the body (`locs`):
 * for line protocol the text offset of its line, for JSON its point index. The linker keeps
 * only join metadata of a pending span and loads the full span again by its loc (loadRawSpans).
 */
export interface DecodedSpans {
  spans: EbpfSpan[];
  errors: PointError[];
  locs: number[];
}

/** A body (inflated) → the valid spans and every point error, as the route decides them. */
export function decodeBody(body: Buffer, format: 'lp' | 'json', cfg: DecodeLimits): DecodedSpans {
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

/**
 * A body (inflated) → the join fields of its valid spans into `out` (cleared first), and every
 * point error: what the route and the replay work from. The spans themselves are not kept.
 */
export function decodeJoinFields(body: Buffer, format: 'lp' | 'json', cfg: DecodeLimits, out: JoinBatch): { errors: PointError[] } {
  const { spans, errors, locs } = decodeBody(body, format, cfg);
  out.clear();
  for (let i = 0; i < spans.length; i++) joinFieldsOf(spans[i], out, locs[i]);
  return { errors };
}

function inflate(raw: RawBatch, cfg: DecodeLimits): Buffer {
  return raw.gzip ? gunzipBody(raw.body, cfg.max_body_bytes) : raw.body;
}

/**
 * The spans of a spooled raw body (tests; the replay uses decodeRawFields): the same decoding
 * and validation as when it was accepted, so the same spans in the same order and at the same
 * locs (same limits assumed; a limit lowered since can only drop points, never change one).
 */
export function decodeRawBatch(raw: RawBatch, cfg: DecodeLimits): DecodedSpans {
  return decodeBody(inflate(raw, cfg), raw.format, cfg);
}

/** The join fields of a spooled raw body's spans into `out` (replay after a restart), as ingest made them. */
export function decodeRawFields(raw: RawBatch, cfg: DecodeLimits, out: JoinBatch): void {
  decodeJoinFields(inflate(raw, cfg), raw.format, cfg, out);
}

/**
 * The spans at `locs` (ascending, from decodeRawBatch or the ingest route) of a raw body, in
 * that order: one gunzip, and for line protocol only the wanted lines are decoded and
 * validated. Throws when a loc holds no valid span (not this body's locs).
 */
export function loadRawSpans(raw: RawBatch, locs: readonly number[], cfg: DecodeLimits): EbpfSpan[] {
  return spansOfBody(inflate(raw, cfg), raw.format, locs, cfg);
}

/** The spans at `locs` of an inflated body: for an ASCII line-protocol body, only those lines. */
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
 * loadRawSpans with inflated bodies kept from their first load while they fit in
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
        if (raw.gzip) keepBytes(batchId, b);
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

function byIndex(a: PointError, b: PointError): number {
  return a.index - b.index;
}

/** Registers the ingest route (encapsulated: its body parsing does not leak into other routes). */
export function registerIngest(app: FastifyInstance, opts: IngestOptions): IngestStats {
  const { cfg, sink } = opts;
  const now = opts.now ?? Date.now;
  const stats: IngestStats = { requests: 0, failedRequests: 0, spansAccepted: 0, spansRejected: 0, bytesReceived: 0, bytesDecoded: 0 };
  refuseEarly(app, cfg.max_body_bytes, stats);
  // One scratch for every request: a handler runs to its end (the spool append is synchronous)
  // before another one starts decoding.
  const fields = new JoinBatch();

  app.register(async (scope) => {
    // Every body arrives as raw bytes; the route decides format and encoding itself.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (req, payload, done) => readBody(payload, cfg.max_body_bytes, done));

    scope.addHook('onResponse', async (_req, reply) => {
      stats.requests++;
      if (reply.statusCode >= 400) stats.failedRequests++;
    });

    scope.post(INGEST_PATH, { bodyLimit: cfg.max_body_bytes, onRequest: bearerGuard(cfg.ingest_token, `POST ${INGEST_PATH}`) }, async (req, reply) => {
      const receivedAtMs = now();
      const format = formatOf(req);
      const raw = req.body as Buffer | undefined;
      if (!raw || raw.length === 0) throw seqError('SEQ_ERR_BAD_BODY', 'the body is empty: send a batch of points', 400);
      stats.bytesReceived += raw.length;
      const body = decompress(req, raw, cfg.max_body_bytes);
      stats.bytesDecoded += body.length;
      const { errors: all } = decodeJoinFields(body, format, cfg, fields);
      const accepted = fields.n;
      const rejected = all.length;
      const listed = rejected > MAX_LISTED_ERRORS ? all.slice(0, MAX_LISTED_ERRORS) : all;
      if (accepted === 0) {
        stats.spansRejected += rejected;
        const message = rejected ? `every point was rejected (${rejected}); see errors` : 'the body holds no points';
        return reply.status(400).send({ code: 'SEQ_ERR_BAD_BODY', message, accepted: 0, rejected, errors: listed });
      }
      // The body as received is what the spool keeps: ~44 bytes a span gzip'd, no encoding.
      const rawBatch: RawBatch = { body: raw, format, gzip: body !== raw };
      sink.accept(fields, receivedAtMs, rawBatch); // durable when it returns; throws SEQ_ERR_STORAGE_FULL
      stats.spansAccepted += accepted;
      stats.spansRejected += rejected;
      const answer: IngestAnswer = { accepted, rejected, errors: listed };
      return answer;
    });
  });
  return stats;
}
