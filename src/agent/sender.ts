// Spans → the linker: line protocol, brotli (or gzip), POST {trace_server}/v1/bpftracing.
//
// Each span is encoded once, when it is made, straight into the batch being built: a Buffer
// outside the JS heap (./encode.ts writeSpanLine: bytes, no line string at all). Queueing line
// strings for up to a second (the flush interval) made every one of them survive two
// scavenges and be promoted: at tens of thousands of spans a second the old generation filled
// with lines, and GC (main thread and helpers) cost more than the parsing (docs/agent.md,
// "Overhead of the running agent").
//
// A batch is sealed at maxBatchSpans spans, at BATCH_BYTES or after flushIntervalMs, compressed
// at once (brotli quality 1, on the main thread) and queued compressed. The queue is weighed in
// compressed bytes and bounded by `send_buffer_bytes`: beyond it the oldest batches are
// dropped and their spans counted. Retries with backoff are the shared exporter helper's
// (src/export/exporter-helper.ts), one batch per POST.
import { brotliCompressSync, brotliDecompressSync, constants as zlibConstants, gzipSync } from 'node:zlib';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { EbpfSpan } from '../span/span.js';
import { writeSpanLine } from './encode.js';
import { createExporterHelper, HttpStatusError, httpPost, parseRetryAfter, classifyHttpError, type ExporterStats, type HttpAnswer } from '../export/exporter-helper.js';
import { seqError } from '../errors.js';

/** Most bytes of lines in one batch (before compression). */
const BATCH_BYTES = 1 << 20;
/**
 * Brotli at quality 1: 390 ns a span of these lines where gzip's fastest level takes 660, and
 * smaller (a ratio of 18.7 against 13.9; docs/agent.md, "Brotli instead of gzip"). Its window
 * is 64 KiB (lgwin 16): with the default 4 MiB (22) each batch's encoder allocated a 4 MiB
 * ring buffer, and the blocks glibc kept after freeing them cost the agent 8 MiB of RSS, for
 * the same ratio. A linker that does not take brotli gets gzip level 1 (see send()).
 */
const BROTLI = {
  params: {
    [zlibConstants.BROTLI_PARAM_QUALITY]: 1,
    [zlibConstants.BROTLI_PARAM_LGWIN]: 16,
    [zlibConstants.BROTLI_PARAM_MODE]: zlibConstants.BROTLI_MODE_TEXT,
  },
};
const GZIP = { level: 1 };

export interface SenderOptions {
  /** `host:port`, `[v6]:port` or an http(s) URL (its path, if any, is the prefix of /v1/bpftracing). */
  traceServer: string;
  ingestToken: string;
  /** Bytes of encoded spans kept while the linker is unreachable. */
  sendBufferBytes: number;
  /** A partial batch is sent after this long (default 1000 ms). */
  flushIntervalMs?: number;
  /** Most spans per POST (default 5000). */
  maxBatchSpans?: number;
  /** Retry backoff (defaults: 200 ms doubling to 5 s; a batch is given up after 10 min). */
  retryInitialMs?: number;
  retryMaxMs?: number;
  retryMaxElapsedMs?: number;
  /** Where problems are reported (default console.error), rate-limited. */
  log?: (msg: string) => void;
}

/**
 * Counts are spans (sent, failed, rejected, dropped, queueDepth, inFlight), except retries
 * and batches*, which count POSTs.
 */
export interface SenderStats extends ExporterStats {
  /** Spans the linker answered 200 for but rejected as malformed. */
  rejectedByLinker: number;
  /** Compressed bytes posted. */
  bytesSent: number;
  /** Bytes held for sending now: the batch being built (uncompressed) plus the compressed queue. */
  queueBytes: number;
}

export interface Sender {
  send(span: EbpfSpan): void;
  flush(): Promise<void>;
  close(timeoutMs?: number): Promise<void>;
  stats(): SenderStats;
  readonly url: string;
}

/** The full ingest URL for a trace_server value; throws SEQ_ERR_CONFIG naming the value. */
export function ingestUrl(traceServer: string): string {
  const v = traceServer.trim();
  const bad = () => seqError('SEQ_ERR_CONFIG', `invalid inputs.ebpf.trace_server = ${JSON.stringify(traceServer)}: expected host:port (e.g. "10.0.0.5:9529") or an http(s) URL`);
  let u: URL;
  try {
    u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? v : `http://${v}`);
  } catch {
    throw bad();
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.hostname) throw bad();
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(v) && !/:\d{1,5}$/.test(v)) throw bad();
  let path = u.pathname.replace(/\/+$/, '');
  if (!path.endsWith('/v1/bpftracing')) path += '/v1/bpftracing';
  return `${u.protocol}//${u.host}${path}`;
}

interface Batch {
  body: Buffer;
  spans: number;
  encoding: 'br' | 'gzip';
}

/** A linker that accepts the connection but never answers is given up on after this (retried). */
const ANSWER_TIMEOUT_MS = 60_000;

export function createSender(opts: SenderOptions): Sender {
  const url = ingestUrl(opts.traceServer);
  const log = opts.log ?? ((m: string) => console.error(m));
  let lastLog = 0;
  const report = (m: string) => {
    const now = Date.now();
    if (now - lastLog > 10_000) { lastLog = now; log(m); }
  };
  const maxBatchSpans = opts.maxBatchSpans ?? 5000;
  const flushIntervalMs = opts.flushIntervalMs ?? 1000;
  // A batch being built counts against the bound too.
  const batchCap = Math.max(256, Math.min(BATCH_BYTES, opts.sendBufferBytes));
  let rejectedByLinker = 0;
  let bytesSent = 0;
  // Span counts (the helper counts batches).
  let sent = 0, failed = 0, rejected = 0, dropped = 0, inFlight = 0;
  const headers: Record<string, string> = { 'Content-Type': 'text/plain' };
  const target = new URL(url);
  // One kept-alive connection: batches go one at a time, in order.
  const httpAgent = new (target.protocol === 'https:' ? HttpsAgent : HttpAgent)({ keepAlive: true, maxSockets: 1 });
  if (opts.ingestToken) headers.Authorization = `Bearer ${opts.ingestToken}`;
  const headersOf = { br: { ...headers, 'Content-Encoding': 'br' }, gzip: { ...headers, 'Content-Encoding': 'gzip' } };
  // Brotli until a linker shows it does not take it; gzip from then on.
  let encoding: Batch['encoding'] = 'br';
  const post = (b: Batch, signal: AbortSignal) => httpPost(target, httpAgent, headersOf[b.encoding], b.body, signal, ANSWER_TIMEOUT_MS);
  /** The batch as gzip (one compressed before the switch, or the one that showed the need). */
  const toGzip = (b: Batch) => {
    b.body = gzipSync(brotliDecompressSync(b.body), GZIP);
    b.encoding = 'gzip';
  };

  // The batch being built, reused once its batch is compressed (at once, see seal()).
  const raw: Buffer = Buffer.allocUnsafeSlow(batchCap);
  let rawLen = 0;
  let rawSpans = 0;
  let flushTimer: NodeJS.Timeout | undefined;
  // Batches in the helper's queue, oldest first (the helper drops and takes from the head).
  const queued: Batch[] = [];
  let queuedBytes = 0;
  let closing = false;

  const helper = createExporterHelper<Batch>({
    maxBatch: 1,
    maxQueue: opts.sendBufferBytes,
    flushIntervalMs,
    retry: { initialMs: opts.retryInitialMs ?? 200, maxMs: opts.retryMaxMs ?? 5000, maxElapsedMs: opts.retryMaxElapsedMs ?? 600_000 },
    weigh: (b) => b.body.length,
    // 500 from a linker that is starting or failing is worth retrying too; 4xx is not.
    classify: (err) => (err instanceof HttpStatusError && err.status === 500 ? 'retry' : classifyHttpError(err)),
    async send(batch, signal) {
      const b = batch[0];
      if (queued[0] === b) {
        queued.shift();
        queuedBytes -= b.body.length;
        inFlight += b.spans;
      }
      if (b.encoding === 'br' && encoding === 'gzip') toGzip(b);
      let res: HttpAnswer;
      try {
        res = await post(b, signal);
        if (b.encoding === 'br' && (res.status === 415 || res.status === 400)) {
          // A linker that does not take brotli says so with 415 or, reading the bytes as they
          // are, 400 (DataKit; seqtrace's before it took brotli): the batch again as gzip, and
          // gzip from now on if that is taken (a 400 for the spans themselves stays a 400).
          toGzip(b);
          res = await post(b, signal);
          if (res.status >= 200 && res.status <= 299) {
            encoding = 'gzip';
            log(`seqtrace agent: the linker at ${url} does not take brotli; sending gzip from now on`);
          }
        }
      } catch (e) {
        report(`seqtrace agent: cannot reach the linker at ${url}: ${(e as Error).cause ?? (e as Error).message} (retrying)`);
        throw e;
      }
      const text = res.body.toString('utf8');
      if (res.status < 200 || res.status > 299) {
        report(`seqtrace agent: linker at ${url} answered ${res.status}: ${text.slice(0, 300)}`);
        throw new HttpStatusError(res.status, text.slice(0, 300), parseRetryAfter(res.retryAfter));
      }
      bytesSent += b.body.length;
      try {
        const r = JSON.parse(text) as { rejected?: number; errors?: unknown[] };
        if (r.rejected) {
          rejectedByLinker += r.rejected;
          report(`seqtrace agent: linker rejected ${r.rejected} span(s): ${JSON.stringify(r.errors?.slice(0, 3))}`);
        }
      } catch {
        // A linker that answers 200 without a JSON body (DataKit) accepted everything.
      }
    },
    onSent(batch) {
      sent += batch[0].spans;
      inFlight -= batch[0].spans;
    },
    onDrop(count) {
      // The queue was full: the helper dropped its `count` oldest batches.
      for (let i = 0; i < count && queued.length > 0; i++) {
        const b = queued.shift()!;
        queuedBytes -= b.body.length;
        dropped += b.spans;
      }
    },
    onGiveUp(batch, reason, err) {
      let n = 0;
      for (const b of batch) {
        n += b.spans;
        const i = queued.indexOf(b);
        if (i >= 0) { queued.splice(i, 1); queuedBytes -= b.body.length; } else inFlight -= b.spans;
      }
      failed += n;
      if (reason === 'rejected') rejected += n;
      report(`seqtrace agent: gave up on ${n} span(s) (${reason}): ${(err as Error | undefined)?.message ?? ''}`);
    },
  });

  function seal(): void {
    if (flushTimer) { clearTimeout(flushTimer); flushTimer = undefined; }
    if (rawSpans === 0) return;
    const spans = rawSpans;
    // Compressed here, on the main thread, not in the libuv pool: the pool's round trip
    // (a thread woken per batch, its completion waiting behind the pipe reads of a burst)
    // let sealed batches pile up uncompressed, and they were dropped beyond four of them;
    // brotli at quality 1 costs about 0.4 µs a span either way, and no batch waits for it.
    let body: Buffer | null = null;
    try {
      body = encoding === 'br' ? brotliCompressSync(raw.subarray(0, rawLen), BROTLI) : gzipSync(raw.subarray(0, rawLen), GZIP);
    } catch (err) {
      failed += spans;
      report(`seqtrace agent: cannot compress ${spans} span(s): ${(err as Error).message}`);
    }
    rawLen = 0;
    rawSpans = 0;
    if (!body) return;
    if (body.length > opts.sendBufferBytes) {
      dropped += spans;
      return;
    }
    const c: Batch = { body, spans, encoding };
    queued.push(c);
    queuedBytes += body.length;
    helper.enqueue(c);
  }

  function pendingSpans(): number {
    let n = rawSpans;
    for (const b of queued) n += b.spans;
    return n;
  }

  return {
    url,
    send(span) {
      if (closing) { dropped++; return; }
      // Straight into the batch, no string (encode.ts); a line that does not fit is written
      // again into the next batch (what was written past the end was never stored).
      let end = writeSpanLine(raw, rawLen, span);
      if (end > batchCap) {
        seal();
        end = writeSpanLine(raw, 0, span);
        if (end > batchCap) { dropped++; return; }
      }
      rawLen = end;
      if (++rawSpans >= maxBatchSpans) seal();
      else if (!flushTimer) {
        flushTimer = setTimeout(seal, flushIntervalMs);
        flushTimer.unref();
      }
    },
    async flush() {
      seal();
      await helper.flush();
    },
    async close(timeoutMs = 3000) {
      seal();
      closing = true;
      await helper.stop(timeoutMs);
      httpAgent.destroy();
    },
    stats: () => {
      const h = helper.stats();
      return {
        ...h, sent, failed, rejected, dropped, inFlight, queueDepth: pendingSpans(),
        rejectedByLinker, bytesSent, queueBytes: rawLen + queuedBytes,
      };
    },
  };
}
