// POST /v1/bpftracing: body → points → spans → durable in the spool → 200 {accepted, rejected, errors}.
// The answer is sent only after `sink.accept` returned, i.e. after the spool append committed:
// a 2xx means the spans survive a SIGKILL. Nothing of a batch is stored when the whole batch
// is refused (413/415/401/503, or every point bad).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { seqError } from '../errors.js';
import type { LinkerConfig } from '../config/config.js';
import type { PointError } from '../span/point.js';
import type { BodyEncoding, RawBatch } from '../storage/store.js';
import { decodeBody, inflateBody, inflate, type DecodeLimits } from './decode.js';
import { bearerGuard } from './http.js';
import { JoinBatch, joinFieldsOf } from './link/fields.js';
import { scanLineProtocol } from './scan.js';

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
   * the join fields of its accepted spans, each with its loc (see createRawLoader). `fields` is
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

/** The body's Content-Encoding; anything but identity, gzip or br is 415. */
function encodingOf(req: FastifyRequest): BodyEncoding {
  const enc = (req.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (enc === '' || enc === 'identity') return 'identity';
  if (enc === 'gzip' || enc === 'x-gzip') return 'gzip';
  if (enc === 'br') return 'br';
  throw seqError('SEQ_ERR_UNSUPPORTED_MEDIA', `Content-Encoding "${enc}" is not accepted: send identity, gzip or br`, 415);
}

function decompress(body: Buffer, encoding: BodyEncoding, maxBytes: number): Buffer {
  try {
    return inflateBody(body, encoding, maxBytes);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
      throw seqError('SEQ_ERR_BODY_TOO_LARGE', `the ${encoding} body inflates beyond max_body_bytes = ${maxBytes} bytes; send smaller batches`, 413);
    }
    throw seqError('SEQ_ERR_BAD_BODY', `the body is not valid ${encoding}: ${err.message}`, 400);
  }
}

function formatOf(req: FastifyRequest): 'lp' | 'json' {
  const ct = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (ct === '' || ct === 'text/plain') return 'lp';
  if (ct === 'application/json') return 'json';
  throw seqError('SEQ_ERR_UNSUPPORTED_MEDIA', `Content-Type "${ct}" is not accepted: send text/plain (line protocol) or application/json`, 415);
}

/**
 * A body (inflated) → the join fields of its valid spans into `out` (cleared first), and every
 * point error: what the route and the replay work from. The spans themselves are not kept.
 */
export function decodeJoinFields(body: Buffer, format: 'lp' | 'json', cfg: DecodeLimits, out: JoinBatch): { errors: PointError[] } {
  if (format === 'lp') return scanLineProtocol(body, cfg, out);
  const { spans, errors, locs } = decodeBody(body, format, cfg);
  out.clear();
  for (let i = 0; i < spans.length; i++) joinFieldsOf(spans[i], out, locs[i]);
  return { errors };
}

/** The join fields of a spooled raw body's spans into `out` (replay after a restart), as ingest made them. */
export function decodeRawFields(raw: RawBatch, cfg: DecodeLimits, out: JoinBatch): void {
  decodeJoinFields(inflate(raw, cfg), raw.format, cfg, out);
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
      const encoding = encodingOf(req);
      const body = decompress(raw, encoding, cfg.max_body_bytes);
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
      // The body as received is what the spool keeps: ~30–44 bytes a span compressed, no encoding.
      const rawBatch: RawBatch = { body: raw, format, encoding };
      sink.accept(fields, receivedAtMs, rawBatch); // durable when it returns; throws SEQ_ERR_STORAGE_FULL
      stats.spansAccepted += accepted;
      stats.spansRejected += rejected;
      const answer: IngestAnswer = { accepted, rejected, errors: listed };
      return answer;
    });
  });
  return stats;
}
