// The contract between ingest and linking. Ingest makes spans durable (SpanSpool), hands
// them to a Joiner, and on a timer asks it for what is ready; the Joiner decides trees,
// ids and sampling, and never does I/O itself except through its JoinState.
import type { EbpfSpan, LinkedSpan } from '../span/span.js';
import type { JoinBatch } from './link/fields.js';

/** Spans leaving the linker together: a whole trace once its window closed, or late spans of an emitted one. */
export interface EmittedTrace {
  traceId: string;
  /** Sampling decision for the whole trace (late spans follow the decision of their trace). */
  sampled: boolean;
  /**
   * The spans, ordered by start. Empty for a trace that is not sampled when the joiner was
   * created with `link_sampled_out: false` (the linker: 90% of spans at the default rate are
   * only counted and released, so building them would be waste); batchIds is complete anyway.
   */
  spans: LinkedSpan[];
  /** One entry per span of the trace (built or not): batchIds[i] is the spool batch span i came from. */
  batchIds: number[];
}

/**
 * The full spans at `locs` of batch `batchId`, in the order of `locs` (the `loc`s given to
 * Joiner.add). The linker decodes them again from the batch's raw body.
 */
export type SpanLoader = (batchId: number, locs: number[]) => EbpfSpan[];

export interface Joiner {
  /**
   * Adds an accepted span. `arrivalMs` is the linker's wall clock when it was accepted.
   * With `loc` (≥ 0: where the span is in its batch) the joiner keeps only what linking needs,
   * not the span, and the spans it emits are loaded again with the flush's SpanLoader; without,
   * it holds the span until its trace is emitted.
   */
  add(span: EbpfSpan, batchId: number, arrivalMs: number, loc?: number): void;
  /**
   * Adds the spans of one body by their join fields (the rows of `b`, each with its `loc`):
   * the path of ingest, which never builds the spans. They are loaded with the flush's
   * SpanLoader when their trace is kept. `b` is not kept.
   */
  addBatch(b: JoinBatch, batchId: number, arrivalMs: number): void;
  /** Everything that is ready at `nowMs` (wall clock): closed traces and late spans. */
  flush(nowMs: number, load?: SpanLoader): EmittedTrace[];
  /** Everything still held, as if every window had closed (clean shutdown, tests). */
  flushAll(nowMs: number, load?: SpanLoader): EmittedTrace[];
  /** Counters for GET /metrics. */
  stats(): JoinerStats;
}

export interface JoinerStats {
  /** Spans waiting in open traces. */
  pendingSpans: number;
  openTraces: number;
  linkedSpans: number;
  lateSpans: number;
  sampledOutSpans: number;
  /** Exit spans that matched several server spans equally well and were left unlinked. */
  ambiguousSeqMatches: number;
  /** Emitted spans kept for late spans (the late index; at most late_index_max_keys). */
  retainedSpans: number;
}
