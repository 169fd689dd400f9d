// The linker's OTLP exporter: pulls stored, not yet exported spans from the store's
// ExportQueue, sends them through the shared exporter helper, and marks them exported once the
// endpoint answered 2xx. The store is the buffer: spans are pulled only while the helper has
// room, so none is ever dropped for lack of memory, and after a restart export resumes from
// the backlog. The one window for a duplicate: a crash after the endpoint's 2xx and before
// markExported commits; those spans are sent again after the restart (see docs/export.md).
import http from 'node:http';
import https from 'node:https';
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { seqError } from '../errors.js';
import type { LinkedSpan } from '../span/span.js';
import type { ExportQueue } from '../storage/store.js';
import { redactUrl, type ExportConfig } from './config.js';
import { createExporterHelper, HttpStatusError, httpPost, parseRetryAfter, withTimeout, type GiveUpReason } from './exporter-helper.js';
import { CONTENT_TYPE, decodeExportResponse, encodeRequest } from './otlp-encode.js';
import { SCOPE_VERSION } from './otlp.js';

const gzipAsync = promisify(gzip);

export interface OtlpExportStats {
  /** 1 when an endpoint is configured. */
  enabled: number;
  /** Spans the endpoint accepted (2xx), partial-success rejections excluded. */
  exported: number;
  /** Spans whose request failed and was given up on (kept in the store; sent again after a restart, or after a pause for retries-exhausted). */
  exportFailures: number;
  /** Part of exportFailures: answered with a status not worth retrying (e.g. 400, 401). */
  rejected: number;
  /** Spans the endpoint reported as rejected in a partial success (not sent again). */
  rejectedByEndpoint: number;
  /** Spans left out because an id was not valid hex (marked exported: they never could be). */
  invalid: number;
  /** Spans dropped from the in-memory queue (stays 0: spans are pulled only when there is room). */
  dropped: number;
  /** Requests retried. */
  retries: number;
  requests: number;
  /** Spans pulled from the store and waiting in memory, and those in the request in flight. */
  queueDepth: number;
  inFlight: number;
  /** Stored spans not yet exported (the store's count). */
  backlog: number;
  /** markExported calls that failed (those spans will be sent again after a restart). */
  markFailures: number;
}

export interface OtlpExporter {
  /** Starts pulling (the backlog first). Called once; createOtlpExporter does not start by itself. */
  start(): void;
  /** The linker pipeline calls this after a commit that stored spans. Cheap; coalesced. */
  notify(): void;
  /** Sends what is queued in memory now and waits for it. */
  flush(): Promise<void>;
  /** Stops pulling, gives in-flight and queued spans `timeoutMs` to go, then aborts. */
  stop(timeoutMs?: number): Promise<void>;
  stats(): OtlpExportStats;
  /** stats() as plain numbers, for the linker's Stage interface and /metrics. */
  counters(): Record<string, number>;
}

export interface OtlpExporterOptions {
  /** Safety-net poll of the store, for commits nobody notified about (ms). Default 2000. */
  pollIntervalMs?: number;
  /** Where warnings and errors go (never header values). Default: stderr. */
  log?: (level: 'warn' | 'error', msg: string) => void;
  /** Same as the helper's, for tests. */
  random?: () => number;
}

interface Row {
  rowId: number;
  span: LinkedSpan;
}

const defaultLog = (level: 'warn' | 'error', msg: string) => {
  process.stderr.write(`${JSON.stringify({ level, time: new Date().toISOString(), msg })}\n`);
};

/** Sends one encoded request; throws HttpStatusError for a non-2xx answer. */
export async function postOtlp(cfg: ExportConfig, body: Uint8Array | string, signal: AbortSignal): Promise<{ rejectedSpans: number; errorMessage: string }> {
  const headers: Record<string, string> = {
    ...cfg.headers,
    'content-type': CONTENT_TYPE[cfg.protocol],
    'user-agent': `seqtrace/${SCOPE_VERSION}`,
  };
  let payload: Uint8Array | string = body;
  if (cfg.compression === 'gzip') {
    payload = await gzipAsync(typeof body === 'string' ? Buffer.from(body) : body);
    headers['content-encoding'] = 'gzip';
  }
  const url = new URL(cfg.url);
  const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const res = await withTimeout(signal, cfg.timeoutMs, (sig) => httpPost(url, url.protocol === 'https:' ? agents.https : agents.http, headers, bytes, sig));
  if (res.status >= 200 && res.status < 300) {
    try {
      return decodeExportResponse(res.body, res.contentType);
    } catch {
      return { rejectedSpans: 0, errorMessage: '' }; // a 2xx with an odd body still took the spans
    }
  }
  const text = Buffer.from(res.body.subarray(0, 300)).toString('utf8').replace(/\s+/g, ' ').trim();
  throw new HttpStatusError(res.status, `HTTP ${res.status}${text ? `: ${text}` : ''}`, parseRetryAfter(res.retryAfter));
}

// Up to 8 requests at once per scheme (the helper sends one batch at a time per exporter).
const agents = { http: new http.Agent({ keepAlive: true, maxSockets: 8 }), https: new https.Agent({ keepAlive: true, maxSockets: 8 }) };

function describe(err: unknown): string {
  if (err instanceof HttpStatusError) return err.message;
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError') return 'request timed out';
  const cause = e?.cause?.code ?? e?.cause?.message ?? (e as { code?: string })?.code;
  return `${e?.message ?? String(err)}${cause ? ` (${cause})` : ''}`;
}

/** A stand-in when no endpoint is configured: every call is a no-op and stats say disabled. */
function disabledExporter(queue: ExportQueue): OtlpExporter {
  const stats = (): OtlpExportStats => ({
    enabled: 0, exported: 0, exportFailures: 0, rejected: 0, rejectedByEndpoint: 0, invalid: 0, dropped: 0,
    retries: 0, requests: 0, queueDepth: 0, inFlight: 0, backlog: queue.backlog(), markFailures: 0,
  });
  return {
    start() {}, notify() {}, flush: async () => {}, stop: async () => {}, stats,
    counters: () => ({ ...stats() }),
  };
}

/**
 * The exporter for `cfg` (from loadExportConfig), reading `queue`. With `cfg` undefined
 * (no endpoint configured) it is a no-op whose stats say disabled.
 */
export function createOtlpExporter(cfg: ExportConfig | undefined, queue: ExportQueue, opts: OtlpExporterOptions = {}): OtlpExporter {
  if (!cfg) return disabledExporter(queue);
  return enabledExporter(cfg, queue, opts);
}

function enabledExporter(cfg: ExportConfig, queue: ExportQueue, opts: OtlpExporterOptions): OtlpExporter {
  const log = opts.log ?? defaultLog;
  const target = redactUrl(cfg.url);

  /** Highest rowId pulled so far; the next pull starts after it. */
  let cursor = 0;
  /** Rows in memory (queued or in flight): a rewound cursor must not pull them twice. */
  const held = new Set<number>();
  let started = false;
  let stopped = false;
  let pullScheduled = false;
  /** After retries were exhausted, pulling waits until then (ms since epoch). */
  let pausedUntil = 0;
  let requests = 0;
  let rejectedByEndpoint = 0;
  let invalid = 0;
  let markFailures = 0;
  const lastLog = new Map<string, number>();

  /** At most one line per kind of trouble every 10 s: a down endpoint must not flood the log. */
  function logThrottled(kind: string, level: 'warn' | 'error', msg: string): void {
    const now = Date.now();
    if ((lastLog.get(kind) ?? 0) + 10_000 > now) return;
    lastLog.set(kind, now);
    log(level, msg);
  }

  const helper = createExporterHelper<Row>({
    maxBatch: cfg.maxBatch,
    maxQueue: cfg.maxQueue,
    flushIntervalMs: cfg.flushIntervalMs,
    maxInFlight: cfg.maxInFlight,
    retry: cfg.retry,
    random: opts.random,
    async send(batch, signal) {
      const spans = batch.map((r) => r.span);
      const { body, invalid: bad } = encodeRequest(spans, cfg.protocol);
      requests++;
      const res = await postOtlp(cfg, body, signal);
      invalid += bad;
      if (bad) logThrottled('invalid', 'error', `${seqError('SEQ_ERR_EXPORT', `${bad} span(s) left out of an OTLP export: trace, span or parent id is not hex of the right length`).message}`);
      if (res.rejectedSpans > 0 || res.errorMessage) {
        rejectedByEndpoint += res.rejectedSpans;
        logThrottled('partial', 'warn', `OTLP endpoint ${target} rejected ${res.rejectedSpans} of ${spans.length} span(s)${res.errorMessage ? `: ${res.errorMessage}` : ''}`);
      }
    },
    onSent(batch) {
      const ids = batch.map((r) => r.rowId);
      for (const id of ids) held.delete(id);
      try {
        queue.markExported(ids);
      } catch (e) {
        markFailures++;
        logThrottled('mark', 'error', `exported spans could not be marked exported; they will be sent again after a restart: ${(e as Error).message}`);
      }
      schedulePull();
    },
    onGiveUp(batch: Row[], reason: GiveUpReason, err: unknown) {
      let minRow = Infinity;
      for (const r of batch) {
        held.delete(r.rowId);
        if (r.rowId < minRow) minRow = r.rowId;
      }
      if (reason === 'stopped') return; // still in the store: sent after the restart
      const what = `${seqError('SEQ_ERR_EXPORT', `OTLP export of ${batch.length} span(s) to ${target} failed: ${describe(err)}`).message}`;
      if (reason === 'rejected') {
        // Not retried in this run (the same request gets the same answer); the spans stay in
        // the store's backlog, so a corrected endpoint or header picks them up after a restart.
        logThrottled('rejected', 'error', `${what}; not retried (check OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_HEADERS); the spans stay in the backlog`);
      } else {
        // The endpoint stayed down for the whole retry budget: pull these rows again after a pause.
        cursor = Math.min(cursor, minRow - 1);
        pausedUntil = Date.now() + cfg.retry.maxMs;
        logThrottled('exhausted', 'error', `${what}; retrying in ${Math.round(cfg.retry.maxMs / 1000)}s`);
      }
      schedulePull();
    },
  });

  function pull(): void {
    pullScheduled = false;
    if (!started || stopped) return;
    if (Date.now() < pausedUntil) return; // the poll timer comes back
    let room = helper.room();
    while (room > 0) {
      const limit = Math.min(room, cfg.maxBatch);
      let rows: Row[];
      try {
        rows = queue.unexported(cursor, limit);
      } catch (e) {
        logThrottled('read', 'error', `cannot read the export queue: ${(e as Error).message}`);
        return;
      }
      if (rows.length === 0) return;
      for (const row of rows) {
        if (row.rowId > cursor) cursor = row.rowId;
        if (held.has(row.rowId)) continue;
        held.add(row.rowId);
        helper.enqueue(row);
      }
      if (rows.length < limit) return;
      room = helper.room();
    }
  }

  function schedulePull(): void {
    if (pullScheduled || stopped) return;
    pullScheduled = true;
    setImmediate(pull);
  }

  const poll = setInterval(() => schedulePull(), opts.pollIntervalMs ?? 2000);
  poll.unref();

  const stats = (): OtlpExportStats => {
    const h = helper.stats();
    let backlog = 0;
    try {
      backlog = queue.backlog();
    } catch {
      backlog = -1;
    }
    return {
      enabled: 1,
      exported: h.sent - rejectedByEndpoint - invalid,
      exportFailures: h.failed,
      rejected: h.rejected,
      rejectedByEndpoint,
      invalid,
      dropped: h.dropped,
      retries: h.retries,
      requests,
      queueDepth: h.queueDepth,
      inFlight: h.inFlight,
      backlog,
      markFailures,
    };
  };

  return {
    start() {
      if (started) return;
      started = true;
      schedulePull();
    },
    notify: schedulePull,
    flush: () => helper.flush(),
    async stop(timeoutMs = 5000) {
      stopped = true;
      clearInterval(poll);
      await helper.stop(timeoutMs);
    },
    stats,
    counters: () => ({ ...stats() }),
  };
}
