// Spans → the linker: line protocol, gzip, POST {trace_server}/v1/bpftracing.
//
// Each span is encoded once, when it is made (./encode.ts: the shared encoder's output, built
// faster), and queued as its line: the queue is weighed in
// bytes, so `send_buffer_bytes` bounds memory exactly while the linker is unreachable (the
// oldest lines are dropped and counted beyond it). Batching, retries with backoff and the
// counting are the shared exporter helper's (src/export/exporter-helper.ts).
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import type { EbpfSpan } from '../span/span.js';
import { encodeSpanLine } from './encode.js';
import { createExporterHelper, HttpStatusError, parseRetryAfter, classifyHttpError, type ExporterStats } from '../export/exporter-helper.js';
import { seqError } from '../errors.js';

const gzipAsync = promisify(gzip);

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

export interface SenderStats extends ExporterStats {
  /** Spans the linker answered 200 for but rejected as malformed. */
  rejectedByLinker: number;
  bytesSent: number;
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

export function createSender(opts: SenderOptions): Sender {
  const url = ingestUrl(opts.traceServer);
  const log = opts.log ?? ((m: string) => console.error(m));
  let lastLog = 0;
  const report = (m: string) => {
    const now = Date.now();
    if (now - lastLog > 10_000) { lastLog = now; log(m); }
  };
  let rejectedByLinker = 0;
  let bytesSent = 0;
  const headers: Record<string, string> = { 'Content-Type': 'text/plain', 'Content-Encoding': 'gzip' };
  if (opts.ingestToken) headers.Authorization = `Bearer ${opts.ingestToken}`;

  const helper = createExporterHelper<string>({
    maxBatch: opts.maxBatchSpans ?? 5000,
    maxQueue: opts.sendBufferBytes,
    flushIntervalMs: opts.flushIntervalMs ?? 1000,
    retry: { initialMs: opts.retryInitialMs ?? 200, maxMs: opts.retryMaxMs ?? 5000, maxElapsedMs: opts.retryMaxElapsedMs ?? 600_000 },
    weigh: (line) => line.length,
    // 500 from a linker that is starting or failing is worth retrying too; 4xx is not.
    classify: (err) => (err instanceof HttpStatusError && err.status === 500 ? 'retry' : classifyHttpError(err)),
    async send(batch, signal) {
      // level 1: 1.0 µs a span instead of 2.4 at the default level, for a ratio of 16 instead of 20
      const body = await gzipAsync(Buffer.from(batch.join(''), 'utf8'), { level: 1 });
      let res: Response;
      try {
        res = await fetch(url, { method: 'POST', headers, body, signal });
      } catch (e) {
        report(`seqtrace agent: cannot reach the linker at ${url}: ${(e as Error).cause ?? (e as Error).message} (retrying)`);
        throw e;
      }
      const text = await res.text();
      if (!res.ok) {
        report(`seqtrace agent: linker at ${url} answered ${res.status}: ${text.slice(0, 300)}`);
        throw new HttpStatusError(res.status, text.slice(0, 300), parseRetryAfter(res.headers.get('retry-after')));
      }
      bytesSent += body.length;
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
    onGiveUp(batch, reason, err) {
      report(`seqtrace agent: gave up on ${batch.length} span(s) (${reason}): ${(err as Error | undefined)?.message ?? ''}`);
    },
  });

  return {
    url,
    send(span) {
      helper.enqueue(encodeSpanLine(span));
    },
    flush: () => helper.flush(),
    close: (timeoutMs = 3000) => helper.stop(timeoutMs),
    stats: () => ({ ...helper.stats(), rejectedByLinker, bytesSent }),
  };
}
