// The storage contracts. Every store (SQLite now; others later) implements these, and
// one conformance suite (./conformance.ts) runs against each implementation.
import type { EbpfSpan, LinkedSpan } from '../span/span.js';

/**
 * An ingest body as received (still compressed when it came so), already decoded and validated
 * once. Spooling these bytes instead of re-encoding the spans is the cheap path: ~44 bytes a
 * span gzip'd against ~300 for the encoded spans, and no encoding CPU. Replay decodes and
 * validates them again with the same rules, which yields the same spans in the same order.
 */
export interface RawBatch {
  body: Buffer;
  format: 'lp' | 'json';
  /** Its Content-Encoding: `identity`, `gzip` or `br`. */
  encoding: BodyEncoding;
}

/** The Content-Encodings an ingest body may arrive (and is spooled) in. */
export type BodyEncoding = 'identity' | 'gzip' | 'br';

/**
 * A batch as it was accepted by ingest, kept until every span of it has been emitted:
 * either its spans, or (appended with `raw`) the body they were decoded from.
 */
export type SpooledBatch =
  | { id: number; receivedAtMs: number; spans: EbpfSpan[]; raw?: undefined }
  | { id: number; receivedAtMs: number; spans?: undefined; raw: RawBatch };

/**
 * Spans accepted by ingest and not yet linked. Durability is the contract: once `append`
 * returns, the batch survives a SIGKILL of the process; ingest answers 2xx only after it.
 */
export interface SpanSpool {
  /**
   * Stores a batch durably; returns its id (increasing). Throws SEQ_ERR_STORAGE_FULL when the
   * disk is full. With `raw` (the body the batch's spans are decoded from) the store keeps
   * those bytes and `spans` is not read (the linker passes none: it never builds them);
   * `pending` then returns the batch with `raw` and the caller decodes it. Without, the spans
   * themselves are kept (tests, and spools written before raw bodies).
   */
  append(spans: EbpfSpan[], receivedAtMs: number, raw?: RawBatch): number;
  /** Batches not yet marked done, oldest first: replayed into the linker after a restart. */
  pending(): Iterable<SpooledBatch>;
}

/**
 * Writes linked traces. `commit` is atomic: the sampled spans become queryable (and queued
 * for export) and the batches whose spans are now all emitted leave the spool, in one
 * transaction, so a crash never loses a span nor stores one twice. Writing a span whose
 * (spanId, startUs) is already stored is a no-op: resent or replayed spans keep their ids, and
 * a span id is a hash of the span's identity, which includes its start (link/ids.ts), so the
 * pair names the span as well as its id does. (Keyed by start first, a commit's keys land at
 * the end of the index; keyed by the random span id alone, every span cost a random page
 * write: ~10 µs here, docs/storage.md.)
 */
export interface TraceWriter {
  commit(sampled: LinkedSpan[], doneBatchIds: number[]): void;
}

export interface TraceQuery {
  service?: string;
  /** Matches the span's `resource` (method + route), e.g. `GET /users/{id}`. */
  operation?: string;
  status?: 'ok' | 'warning' | 'error';
  minDurationUs?: number;
  maxDurationUs?: number;
  /** Trace start range, µs since epoch, inclusive. */
  startUs?: number;
  endUs?: number;
  /** Default 20, at most 1000. */
  limit?: number;
  /** Opaque cursor from a previous page (`TracePage.next`). */
  cursor?: string;
}

export interface TraceSummary {
  traceId: string;
  rootService: string;
  rootOperation: string;
  startUs: number;
  durationUs: number;
  spanCount: number;
  errorCount: number;
  services: string[];
  /** Spans that arrived after the trace was emitted. */
  lateCount: number;
}

export interface TracePage {
  traces: TraceSummary[];
  /** Cursor for the next page, absent at the end. */
  next?: string;
}

export interface DependencyEdge {
  parent: string;
  /** A service; or, with `peer`, what `parent` called that is not traced. */
  child: string;
  /**
   * The callee is no traced service: client spans with no server span, named by the request's
   * Host (`http_host`) or else the address they called (`ip:port`, or `unix:PATH`).
   */
  peer?: true;
  callCount: number;
  errorCount: number;
  p50Us: number;
  p99Us: number;
}

/** Reads stored traces; every method sees what `commit` has returned for. */
export interface TraceReader {
  findTraces(q: TraceQuery): Promise<TracePage>;
  /** All spans of one trace, ordered by start; undefined when unknown. */
  getTrace(traceId: string): Promise<LinkedSpan[] | undefined>;
  services(): Promise<string[]>;
  operations(service: string): Promise<string[]>;
  /**
   * Client → server calls between services (an exit span of one service that is the parent
   * of an entry span of another) whose client span starts in [startUs, endUs]. Stores may
   * round the range out to whole minutes and report percentiles within 2.2%.
   */
  dependencies(startUs: number, endUs: number): Promise<DependencyEdge[]>;
}

/** Spans stored and not yet exported, for the OTLP exporter; see src/export. */
export interface ExportQueue {
  /** Up to `limit` stored spans not yet exported, oldest first, after `afterRowId`. */
  unexported(afterRowId: number, limit: number): { rowId: number; span: LinkedSpan }[];
  markExported(rowIds: number[]): void;
  /** Number of stored spans not yet exported. */
  backlog(): number;
}

export interface SweepResult {
  deletedTraces: number;
  deletedSpans: number;
  /** Deleted spans that were still waiting in the export queue (export drops). */
  exportDropped: number;
}

/**
 * Retention: whole traces are deleted, oldest first (by trace start), when older than the
 * maximum age (retention_max_age) or while storage is above the maximum size
 * (retention_max_bytes). The spool is never deleted. Stores also sweep on their own timer.
 */
export interface Retention {
  sweep(nowMs?: number): SweepResult;
}
