// The records the linking works on. Plain objects with a fixed shape (every field set in the
// constructor functions) so V8 keeps them monomorphic on the hot path.
import type { EbpfSpan } from '../../span/span.js';

/** The outcome for one emitted trace, shared by every late record of it. */
export interface TraceRef {
  traceId: string;
  ebpfTraceId: string;
  sampled: boolean;
}

/**
 * What the late index remembers of an emitted span: enough to join a span arriving after
 * its trace left (its keys, times and connection) and the trace it went out in.
 * Indexed by group key when it is an entry with a thread group, and by seq key while
 * nothing matched it by sequence numbers.
 */
export interface LateSpan {
  spanId: string;
  entry: boolean;
  gkey: number; // -1: no thread group
  gchk: number;
  skey: number; // -1: sequence numbers unusable (0/0)
  reqSeq: number;
  respSeq: number;
  startUs: number;
  endUs: number;
  srcPort: number;
  dstPort: number;
  srcIpH: number;
  dstIpH: number;
  trace: TraceRef;
  /** Matched by sequence numbers (now or when emitted): no longer a seq candidate. */
  seqMatched: boolean;
  expireAtMs: number;
}

/** A group of spans that may belong together; emitted together when its deadline passes. */
export interface Cluster {
  members: PendingSpan[];
  maxEndMs: number;
  maxArrivalMs: number;
  alive: boolean;
}

/**
 * A span waiting in an open cluster: either a new span, or a frozen one from the late index.
 * Only what linking, ids and sampling need is held (numbers, the span id, a normalised app
 * trace id when there is one), not the span: the full span is decoded again from its batch
 * (`batchId`, `loc`) when its trace is kept. Holding every decoded span for the window cost
 * ~900 bytes of heap a span and most of the decode time in garbage collection.
 */
export interface PendingSpan {
  spanId: string;
  /** The decoded span, held only when it was added without a `loc` (tests, direct callers). */
  span: EbpfSpan | null;
  /** Non-null for a frozen span (already emitted; taken from the late index to join late spans). */
  frozen: LateSpan | null;
  /** The pending span this one repeats (same identity): linked like it, never a candidate. */
  dupOf: PendingSpan | null;
  batchId: number;
  /** Where the span is in its batch (see Joiner.add); -1 when `span` is held. */
  loc: number;
  /** Lanes c and d of the span's identity (a and b are the span id): a root's trace id. */
  idC: number;
  idD: number;
  srcIpH: number;
  dstIpH: number;
  /** isErrorSpan() of the span. */
  error: boolean;
  /** normaliseAppTraceId of the span's app trace id ('' when none or unusable). */
  appTraceId: string;
  appSampled: number;
  entry: boolean;
  gkey: number;
  gchk: number;
  skey: number;
  reqSeq: number;
  respSeq: number;
  startUs: number;
  endUs: number;
  srcPort: number;
  dstPort: number;
  /** null only while add() is placing it. */
  cluster: Cluster | null;
  /** Next waiter on the same group key / seq key (intrusive lists: no array per key). */
  gNext: PendingSpan | null;
  sNext: PendingSpan | null;
  /** Scratch of the resolution at emission (resolveParents makes it): NO_RESOLUTION until then. */
  res: Resolution;
}

/**
 * What the emission works out for a pending span (parent, tree, trace). Lent to the members
 * of the cluster being emitted (match.ts), not carried by every pending span for its whole
 * window: ten fields less on a record held ~22 s (heap per pending span 499 → 427 B; the
 * allocation of a retained 40-field record cost ~2 µs a span here, about half that for one
 * of 26 fields).
 */
export interface Resolution {
  parent: PendingSpan | null;
  seqLinked: boolean;
  best: PendingSpan | null;
  bestScore: number;
  bestTie: boolean;
  hasCandidates: boolean;
  mark: number;
  depth: number;
  root: PendingSpan | null;
  tref: TraceRef | null;
}

export function newResolution(): Resolution {
  return { parent: null, seqLinked: false, best: null, bestScore: -1, bestTie: false, hasCandidates: false, mark: 0, depth: -1, root: null, tref: null };
}

/** Placeholder of a pending span not being emitted (shared, never written). */
export const NO_RESOLUTION: Resolution = Object.freeze(newResolution()) as Resolution;

export function newPending(span: EbpfSpan | null, frozen: LateSpan | null, spanId: string, cluster: Cluster | null): PendingSpan {
  return {
    spanId, span, frozen, dupOf: null, batchId: -1, loc: -1, idC: 0, idD: 0, srcIpH: 0, dstIpH: 0, error: false, appTraceId: '', appSampled: 0,
    entry: false, gkey: -1, gchk: 0, skey: -1, reqSeq: 0, respSeq: 0, startUs: 0, endUs: 0, srcPort: 0, dstPort: 0,
    cluster, gNext: null, sNext: null, res: NO_RESOLUTION,
  };
}

/** A frozen pending span standing for an emitted one. */
export function frozenPending(ls: LateSpan, cluster: Cluster): PendingSpan {
  const p = newPending(null, ls, ls.spanId, cluster);
  p.entry = ls.entry;
  p.gkey = ls.gkey;
  p.gchk = ls.gchk;
  p.skey = ls.seqMatched ? -1 : ls.skey;
  p.reqSeq = ls.reqSeq;
  p.respSeq = ls.respSeq;
  p.startUs = ls.startUs;
  p.endUs = ls.endUs;
  p.srcPort = ls.srcPort;
  p.dstPort = ls.dstPort;
  p.srcIpH = ls.srcIpH;
  p.dstIpH = ls.dstIpH;
  return p;
}
