// Turning a resolved cluster into traces: trace ids, the app trace id rule, sampling, and
// the late-index records the emitted spans leave behind.
//
// A cluster can hold several trees (candidates that did not link) and frozen spans (already
// emitted, brought back from the late index). Each new span goes out in:
// - the trace of its nearest frozen ancestor, if it has one (a late span joining its trace);
// - else, when its tree holds frozen spans below a new root (a late client whose server was
//   emitted as a root), the trace of the frozen span closest to that root (ties: smallest
//   trace id); late as well;
// - else a new trace: eBPF trace id from the root's identity; the trace id is that, or with
//   use_app_trace_id the application trace id of the span closest to the root that carries
//   one (ties: smallest normalised id), for the whole tree (DataKit's §3.8 split traces).
import type { EmittedTrace, SpanLoader } from '../joiner.js';
import type { EbpfSpan, LinkedSpan } from '../../span/span.js';
import { linkedSpan } from './linked.js';
import { hexWord, traceIdOf } from './ids.js';
import type { LateSpan, PendingSpan, TraceRef } from './node.js';
import { keptByRate } from './sampling.js';
import type { JoinState } from './state.js';

export interface EmitOptions {
  useAppTraceId: boolean;
  keepErrorTraces: boolean;
  threshold: bigint;
  lateRetentionMs: number;
  /** False: a trace that is not sampled goes out with its batchIds and no spans. */
  linkSampledOut: boolean;
}

export interface EmitCounters {
  linkedSpans: number;
  lateSpans: number;
  sampledOutSpans: number;
}

const LATE = 3, FRESH = 4;

/** Depth, root and inherited trace of `p` and its ancestors (iterative: trees can be deep). */
function place(p: PendingSpan, stack: PendingSpan[]): void {
  if (p.res.depth >= 0) return;
  stack.length = 0;
  let q: PendingSpan | null = p;
  while (q !== null && q.res.depth < 0) {
    stack.push(q);
    q = q.res.parent;
  }
  for (let i = stack.length - 1; i >= 0; i--) {
    const n = stack[i];
    const par = n.res.parent;
    if (par === null) {
      n.res.depth = 0;
      n.res.root = n;
      n.res.tref = n.frozen !== null ? n.frozen.trace : null;
    } else {
      n.res.depth = par.res.depth + 1;
      n.res.root = par.res.root;
      n.res.tref = n.frozen !== null ? n.frozen.trace : par.res.tref;
    }
  }
}

interface Fresh {
  root: PendingSpan;
  appId: string;
  appDepth: number;
  flag: number;
  flagDepth: number;
  error: boolean;
}

function byStart(x: PendingSpan, y: PendingSpan): number {
  return x.startUs - y.startUs || (x.spanId < y.spanId ? -1 : x.spanId > y.spanId ? 1 : 0);
}

/**
 * Emitted spans whose pending record holds no span (added with a `loc`): their LinkedSpans are
 * made at the end of the flush, once per batch through the SpanLoader (one decode of a raw
 * body for all the kept spans it holds). deferred[k] is filled into its trace's spans array.
 */
interface Deferred {
  spans: LinkedSpan[];
  i: number;
  batchId: number;
  loc: number;
  traceId: string;
  spanId: string;
  parentId: string;
  ebpfTraceId: string;
  late: boolean;
}
export type DeferredList = Deferred[];

function byBatchLoc(x: Deferred, y: Deferred): number {
  return x.batchId - y.batchId || x.loc - y.loc;
}

/** Makes the LinkedSpans deferred during a flush (and empties `list`), one `load` call per batch. */
export function loadDeferred(deferred: DeferredList, load: SpanLoader | undefined): void {
  if (deferred.length === 0) return;
  const list = deferred.splice(0, deferred.length);
  if (load === undefined) throw new Error('the joiner holds spans by location (add with loc) and flush got no SpanLoader');
  list.sort(byBatchLoc);
  const locs: number[] = [];
  for (let k = 0; k < list.length;) {
    const b = list[k].batchId;
    let e = k;
    locs.length = 0;
    while (e < list.length && list[e].batchId === b) locs.push(list[e++].loc);
    const got: EbpfSpan[] = load(b, locs);
    if (got.length !== locs.length) throw new Error(`batch ${b}: ${locs.length} spans asked, ${got.length} loaded`);
    for (let j = k; j < e; j++) {
      const d = list[j];
      d.spans[d.i] = linkedSpan(got[j - k], d.traceId, d.spanId, d.parentId, d.ebpfTraceId, d.late);
    }
    k = e;
  }
}

function pushTrace(t: TraceRef, list: PendingSpan[], linkSampledOut: boolean, counters: EmitCounters, out: EmittedTrace[], deferred: DeferredList): void {
  if (!t.sampled && !linkSampledOut) {
    const batchIds: number[] = new Array(list.length);
    let late = 0;
    for (let i = 0; i < list.length; i++) {
      const p = list[i];
      batchIds[i] = p.batchId;
      if ((p.dupOf ?? p).res.mark === LATE) late++;
    }
    counters.lateSpans += late;
    counters.linkedSpans += list.length;
    counters.sampledOutSpans += list.length;
    out.push({ traceId: t.traceId, sampled: false, spans: [], batchIds });
    return;
  }
  if (list.length > 1) list.sort(byStart);
  const spans: LinkedSpan[] = new Array(list.length);
  const batchIds: number[] = new Array(list.length);
  let late = 0;
  for (let i = 0; i < list.length; i++) {
    const p = list[i];
    const o = p.dupOf ?? p;
    const isLate = o.res.mark === LATE;
    const parentId = o.res.parent !== null ? o.res.parent.spanId : '';
    if (p.span !== null) spans[i] = linkedSpan(p.span, t.traceId, p.spanId, parentId, t.ebpfTraceId, isLate);
    else deferred.push({ spans, i, batchId: p.batchId, loc: p.loc, traceId: t.traceId, spanId: p.spanId, parentId, ebpfTraceId: t.ebpfTraceId, late: isLate });
    batchIds[i] = p.batchId;
    if (isLate) late++;
  }
  counters.lateSpans += late;
  counters.linkedSpans += list.length;
  if (!t.sampled) counters.sampledOutSpans += list.length;
  out.push({ traceId: t.traceId, sampled: t.sampled, spans, batchIds });
}

const fresh: Fresh[] = [];
const stack: PendingSpan[] = [];

export function emitCluster(
  members: PendingSpan[], opts: EmitOptions, state: JoinState, nowMs: number, counters: EmitCounters, out: EmittedTrace[],
  deferred: DeferredList,
): void {
  let hasFrozen = false;
  for (let i = 0; i < members.length; i++) {
    const p = members[i];
    p.res.best = null;
    if (p.frozen !== null) hasFrozen = true;
  }
  for (let i = 0; i < members.length; i++) if (members[i].dupOf === null) place(members[i], stack);

  // Late spans under a new root: the frozen span closest to the root names the trace.
  if (hasFrozen) {
    for (let i = 0; i < members.length; i++) {
      const f = members[i];
      if (f.frozen === null) continue;
      const r = f.res.root!;
      if (r.frozen !== null) continue;
      const cur = r.res.best;
      if (cur === null || f.res.depth < cur.res.depth || (f.res.depth === cur.res.depth && f.frozen.trace.traceId < cur.frozen!.trace.traceId)) r.res.best = f;
    }
  }

  // Which trace each new span goes to; aggregates of new trees.
  // A cluster is one tree nearly always: aggregates go in a small array indexed through the
  // root's (no longer needed) bestScore, not a Map.
  fresh.length = 0;
  for (let i = 0; i < members.length; i++) members[i].res.bestScore = -1;
  for (let i = 0; i < members.length; i++) {
    const p = members[i];
    if (p.frozen !== null || p.dupOf !== null) continue;
    if (p.res.tref !== null) { p.res.mark = LATE; continue; }
    const r = p.res.root!;
    if (r.res.best !== null) { p.res.tref = r.res.best.frozen!.trace; p.res.mark = LATE; continue; }
    p.res.mark = FRESH;
    let f: Fresh;
    if (r.res.bestScore < 0) {
      r.res.bestScore = fresh.length;
      f = { root: r, appId: '', appDepth: Infinity, flag: 0, flagDepth: Infinity, error: false };
      fresh.push(f);
    } else f = fresh[r.res.bestScore];
    if (p.error) f.error = true;
    const id = p.appTraceId; // normalised at add
    if (id !== '' && p.res.depth <= f.appDepth && (p.res.depth < f.appDepth || id < f.appId)) { f.appId = id; f.appDepth = p.res.depth; }
    if (p.appSampled !== 0 && p.res.depth <= f.flagDepth) {
      if (p.res.depth < f.flagDepth || p.appSampled > f.flag) { f.flag = p.appSampled; f.flagDepth = p.res.depth; }
    }
  }
  if (fresh.length > 0) {
    for (let k = 0; k < fresh.length; k++) {
      const f = fresh[k];
      const r = f.root;
      // The root's identity: lanes a and b are its span id's two words.
      const ebpfTraceId = traceIdOf(hexWord(r.spanId, 0), hexWord(r.spanId, 8), r.idC, r.idD);
      const traceId = opts.useAppTraceId && f.appId !== '' ? f.appId : ebpfTraceId;
      const sampled = (opts.keepErrorTraces && f.error) ? true : f.flag !== 0 ? f.flag > 0 : keptByRate(traceId, opts.threshold);
      r.res.tref = { traceId, ebpfTraceId, sampled };
    }
    for (let i = 0; i < members.length; i++) {
      const p = members[i];
      if (p.res.mark === FRESH && p.frozen === null && p.dupOf === null) p.res.tref = p.res.root!.res.tref;
    }
    fresh.length = 0; // hold no spans between calls
  }
  stack.length = 0;

  // Group new spans by trace, in start order. One trace per cluster is the common case.
  let only: TraceRef | null = null;
  let several = false;
  for (let i = 0; i < members.length; i++) {
    const p = members[i];
    if (p.frozen !== null) continue;
    const t = p.dupOf !== null ? p.dupOf.res.tref! : p.res.tref!;
    if (only === null) only = t;
    else if (t !== only) { several = true; break; }
  }
  if (!several && only !== null) {
    const list: PendingSpan[] = [];
    for (let i = 0; i < members.length; i++) if (members[i].frozen === null) list.push(members[i]);
    pushTrace(only, list, opts.linkSampledOut, counters, out, deferred);
  } else if (several) {
    const byTrace = new Map<TraceRef, PendingSpan[]>();
    for (let i = 0; i < members.length; i++) {
      const p = members[i];
      if (p.frozen !== null) continue;
      const t = p.dupOf !== null ? p.dupOf.res.tref! : p.res.tref!;
      const list = byTrace.get(t);
      if (list === undefined) byTrace.set(t, [p]);
      else list.push(p);
    }
    for (const [t, list] of byTrace) pushTrace(t, list, opts.linkSampledOut, counters, out, deferred);
  }

  // What the late index keeps.
  const expireAtMs = nowMs + opts.lateRetentionMs;
  for (let i = 0; i < members.length; i++) {
    const p = members[i];
    if (p.frozen !== null) {
      if (p.res.seqLinked) state.settle(p.frozen);
      continue;
    }
    if (p.dupOf !== null) continue;
    const keepGroup = p.entry && p.gkey >= 0;
    const keepSeq = p.skey >= 0 && !p.res.seqLinked;
    if (!keepGroup && !keepSeq) continue;
    const ls: LateSpan = {
      spanId: p.spanId, entry: p.entry, gkey: p.gkey, gchk: p.gchk, skey: p.skey,
      reqSeq: p.reqSeq, respSeq: p.respSeq, startUs: p.startUs, endUs: p.endUs,
      srcPort: p.srcPort, dstPort: p.dstPort, srcIpH: keepSeq ? p.srcIpH : 0, dstIpH: keepSeq ? p.dstIpH : 0,
      trace: p.res.tref!, seqMatched: p.res.seqLinked, expireAtMs,
    };
    state.remember(ls);
  }
}
