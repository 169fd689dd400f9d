// The linker process: Fastify on http_listen with ingest, /metrics, /healthz, the query API
// and the UI (or the last two on query_listen), the pipeline behind ingest, and the store.
import Fastify, { type FastifyInstance } from 'fastify';
import type { LinkerConfig } from '../config/config.js';
import { parseListen } from '../config/config.js';
import { createRegistry, CONTENT_TYPE, type Registry } from '../metrics/registry.js';
import type { ExportQueue, SpanSpool, TraceReader, TraceWriter } from '../storage/store.js';
import { openSqliteStore } from '../storage/sqlite.js';
import { queryRoutes } from '../query/routes.js';
import { uiRoutes } from '../ui/routes.js';
import type { Joiner } from './joiner.js';
import { createJoiner } from './link/joiner.js';
import { bearerGuard, installErrorHandling } from './http.js';
import { createRawLoader } from './decode.js';
import { decodeRawFields, registerIngest, type IngestStats } from './ingest.js';
import { createPipeline, type Pipeline, type Stage } from './pipeline.js';
import { scanStats } from './scan.js';

/** The store as the linker uses it; `stats` and `close` are used when present. */
export type LinkerStore = SpanSpool & TraceWriter & TraceReader & ExportQueue & {
  stats?(): Record<string, number>;
  close?(): void;
};

/** The OTLP exporter as a stage: `notify` after each commit that stored spans. */
export interface ExporterStage extends Stage {
  notify(): void;
}

export interface LinkerOptions {
  /** Default: the SQLite store in cfg.sqlite_path (closed by close()). */
  store?: LinkerStore;
  /** Default: createJoiner(cfg). */
  joiner?: Joiner;
  /** Built from the store's ExportQueue when given as a function. */
  exporter?: ExporterStage | ((queue: ExportQueue) => ExporterStage);
  nowMs?: () => number;
  /** Joiner flush period (ms), default 200. */
  flushIntervalMs?: number;
  /** Fastify logger setting; default: warnings and errors as JSON on stdout. */
  logger?: boolean | { level: string };
}

export interface LinkerHandle {
  /** `http://host:port` of the ingest server (the port actually bound). */
  url: string;
  /** URL of the query API and UI (same as url unless query_listen is set). */
  queryUrl: string;
  store: LinkerStore;
  pipeline: Pipeline;
  metrics: Registry;
  /** Stops accepting, waits for requests in flight, commits what is ready, closes the store. */
  close(): Promise<void>;
}

function listenAddress(listen: string): { host: string; port: number } {
  const a = parseListen(listen);
  if (!a) throw new Error(`bad listen address ${listen}`); // config validated it already
  return a;
}

function urlOf(app: FastifyInstance): string {
  const addr = app.server.address();
  if (!addr || typeof addr === 'string') return String(addr);
  const host = addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address === '::' ? '[::1]' : addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return `http://${host}:${addr.port}`;
}

function registerMetrics(m: Registry, ingest: IngestStats, pipeline: Pipeline, joiner: Joiner, store: LinkerStore, exporter?: ExporterStage): void {
  m.collect('seqtrace_ingest_requests_total', 'POST /v1/bpftracing requests answered', 'counter', () => ingest.requests);
  m.collect('seqtrace_ingest_failed_requests_total', 'Ingest requests answered with 4xx/5xx', 'counter', () => ingest.failedRequests);
  m.collect('seqtrace_ingest_bytes_total', 'Ingest body bytes, as received and after decompression', 'counter', () => [
    [{ stage: 'received' }, ingest.bytesReceived], [{ stage: 'decoded' }, ingest.bytesDecoded],
  ]);
  // How line protocol was read (a format the scanner leaves to the reference decoder is slower: ~4×).
  m.collect('seqtrace_ingest_scanned_points_total', 'Line-protocol points read by the scanner (fast) or decoded alone by the reference decoder (line)', 'counter', () => [
    [{ path: 'fast' }, scanStats.fast], [{ path: 'line' }, scanStats.slow],
  ]);
  m.collect('seqtrace_ingest_reference_bodies_total', 'Line-protocol bodies decoded whole by the reference decoder (not ASCII, an error, too many points)', 'counter', () => scanStats.whole);
  m.collect('seqtrace_spans_received_total', 'Spans received (accepted + rejected)', 'counter', () => ingest.spansAccepted + ingest.spansRejected);
  m.collect('seqtrace_spans_accepted_total', 'Spans accepted and made durable in the spool', 'counter', () => ingest.spansAccepted);
  m.collect('seqtrace_spans_rejected_total', 'Spans rejected as malformed', 'counter', () => ingest.spansRejected);
  m.collect('seqtrace_spans_linked_total', 'Spans emitted by the joiner', 'counter', () => joiner.stats().linkedSpans);
  m.collect('seqtrace_spans_late_total', 'Spans that arrived after their trace was emitted', 'counter', () => joiner.stats().lateSpans);
  m.collect('seqtrace_spans_sampled_out_total', 'Spans dropped by trace sampling', 'counter', () => joiner.stats().sampledOutSpans);
  m.collect('seqtrace_ambiguous_seq_matches_total', 'Exit spans left unlinked because several server spans matched equally', 'counter', () => joiner.stats().ambiguousSeqMatches);
  m.collect('seqtrace_joiner_pending_spans', 'Spans waiting in open traces', 'gauge', () => joiner.stats().pendingSpans);
  m.collect('seqtrace_joiner_open_traces', 'Open traces', 'gauge', () => joiner.stats().openTraces);
  m.collect('seqtrace_joiner_retained_spans', 'Emitted spans kept for late spans (the late index)', 'gauge', () => joiner.stats().retainedSpans);
  m.collect('seqtrace_spans_committed_total', 'Sampled spans handed to storage', 'counter', () => pipeline.counters().spansCommitted);
  m.collect('seqtrace_commit_failures_total', 'Storage commits that failed (retried)', 'counter', () => pipeline.counters().commitFailures);
  m.collect('seqtrace_spool_batches_held', 'Spool batches with spans still in open traces', 'gauge', () => pipeline.counters().batchesHeld);
  m.collect('seqtrace_replayed_spans_total', 'Spans replayed from the spool at start', 'counter', () => pipeline.counters().replayedSpans);
  m.collect('seqtrace_flush_seconds', 'Duration of the last flush and commit', 'gauge', () => pipeline.counters().lastFlushMs / 1000);
  m.collect('seqtrace_export_backlog', 'Stored spans not yet exported', 'gauge', () => store.backlog());
  if (store.stats) {
    const stats = store.stats.bind(store);
    m.collect('seqtrace_store', 'Storage counters (spooled batches, stored spans, bytes, retention)', 'gauge', () =>
      Object.entries(stats()).filter(([, v]) => typeof v === 'number').map(([k, v]) => [{ stat: k }, v as number]));
  }
  if (exporter) {
    m.collect('seqtrace_exporter', 'OTLP exporter counters (exported spans, failures, ...)', 'counter', () =>
      Object.entries(exporter.counters()).map(([k, v]) => [{ stat: k }, v]));
  }
  m.collect('process_resident_memory_bytes', 'Resident memory size in bytes', 'gauge', () => process.memoryUsage.rss());
  m.collect('process_cpu_seconds_total', 'User and system CPU time spent in seconds', 'counter', () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  });
}

/**
 * Inflated bodies kept by the raw loader (createRawLoader) from their first load on: one
 * batch's traces close over several flushes (their ends spread over the second the agent
 * batched), and each flush would otherwise inflate the same body again. ~1–2 s of batches
 * are in that phase: ~16 MB at 1e6 spans/min, ~90 MB at 100,000 spans/s.
 */
const RAW_TEXT_CACHE_BYTES = 64 * 1024 * 1024;

export async function startLinker(cfg: LinkerConfig, opts: LinkerOptions = {}): Promise<LinkerHandle> {
  const now = opts.nowMs ?? Date.now;
  const wantsExport = opts.exporter !== undefined;
  const ownStore = !opts.store;
  const store: LinkerStore = opts.store ?? openSqliteStore(cfg.sqlite_path, {
    retentionMaxAgeMs: cfg.retention_max_age,
    retentionMaxBytes: cfg.retention_max_bytes,
    exportQueue: wantsExport,
    now,
  }) as unknown as LinkerStore;
  const exporter = typeof opts.exporter === 'function' ? opts.exporter(store) : opts.exporter;
  const joiner = opts.joiner ?? createJoiner({ ...cfg, link_sampled_out: false });
  const logger = opts.logger ?? { level: 'warn' };

  const apps: FastifyInstance[] = [];
  let pipeline: Pipeline | undefined;
  try {
    pipeline = createPipeline({
      spool: store, writer: store, joiner, now, flushIntervalMs: opts.flushIntervalMs,
      decodeRaw: (raw, out) => decodeRawFields(raw, cfg, out),
      loadRaw: createRawLoader(cfg, RAW_TEXT_CACHE_BYTES),
      onCommitted: () => exporter?.notify(),
      onError: (e) => apps[0]?.log.error({ err: e }, 'commit failed; retrying'),
    });

    const metrics = createRegistry();
    const app = Fastify({ logger, bodyLimit: cfg.max_body_bytes });
    apps.push(app);
    installErrorHandling(app);
    const ingest = registerIngest(app, { cfg, sink: pipeline, now });
    registerMetrics(metrics, ingest, pipeline, joiner, store, exporter);
    app.get('/metrics', async (_req, reply) => reply.type(CONTENT_TYPE).send(metrics.render()));
    app.get('/healthz', async () => ({ status: 'ok' }));

    let queryApp = app;
    if (cfg.query_listen) {
      queryApp = Fastify({ logger });
      apps.push(queryApp);
      installErrorHandling(queryApp);
      queryApp.get('/healthz', async () => ({ status: 'ok' }));
    }
    // The token guards the data (the API); the UI's static files hold none.
    const counters = pipeline.counters.bind(pipeline);
    queryApp.register(async (scope) => {
      scope.addHook('onRequest', bearerGuard(cfg.query_token, 'the query API'));
      await scope.register(queryRoutes(store, { now }));
      // Why a search may find nothing yet (the UI says it): spans waiting for their link window,
      // spans of traces dropped by sampling. The linker's, not the store's: not in queryRoutes.
      scope.get('/api/status', async () => {
        const j = joiner.stats();
        return {
          samplingRate: cfg.sampling_rate, keepErrorTraces: cfg.keep_error_traces, windowMs: cfg.window,
          spans: { accepted: ingest.spansAccepted, pending: j.pendingSpans, sampledOut: j.sampledOutSpans, stored: counters().spansCommitted },
        };
      });
    });
    queryApp.register(uiRoutes());

    // Replay the spool last before listening: replayed spans count as arriving now, and the
    // agents' resends must find them still open (setting up routes can take a while).
    pipeline.start();
    await exporter?.start();
    const main = listenAddress(cfg.http_listen);
    await app.listen({ host: main.host, port: main.port });
    if (queryApp !== app) {
      const q = listenAddress(cfg.query_listen);
      await queryApp.listen({ host: q.host, port: q.port });
    }

    const p = pipeline;
    let closing: Promise<void> | undefined;
    return {
      url: urlOf(app),
      queryUrl: urlOf(queryApp),
      store,
      pipeline: p,
      metrics,
      close() {
        closing ??= (async () => {
          for (const a of apps) await a.close(); // no new requests; those in flight finish
          await p.stop();
          await exporter?.stop();
          if (ownStore) store.close?.();
        })();
        return closing;
      },
    };
  } catch (e) {
    for (const a of apps) await a.close().catch(() => undefined);
    await pipeline?.stop();
    if (ownStore) store.close?.();
    throw e;
  }
}
