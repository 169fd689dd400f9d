// Turning a resolved cluster into traces: trace ids, the app trace id rule, sampling.
//
// A cluster can hold several trees (candidates that did not link) and frozen spans (already
// emitted, retained for late spans and pulled back in by one). Each new span goes out in:
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
import { hex16, traceIdOf } from './ids.js';
import type { Emission } from './match.js';
import { APP, APP_SAMPLED, BATCH, DUP, DW, FLAGS, IDA, IDB, IDC, IDD, LOC, P_DUP, P_ERROR, P_FROZEN, POS, START, W, type PendingSpans } from './pending.js';
import { keptByRate } from './sampling.js';
import type { TraceRef } from './state.js';

export interface EmitOptions {
  useAppTraceId: boolean;
  keepErrorTraces: boolean;
  threshold: bigint;
  /** False: a trace that is not sampled goes out with its batchIds and no spans. */
  linkSampledOut: boolean;
}

export interface EmitCounters {
  linkedSpans: number;
  lateSpans: number;
  sampledOutSpans: number;
}

// E.mark after resolveParents: 2 (done); the emission sets LATE or FRESH on new spans.
const LATE = 3, FRESH = 4;

const stack: number[] = [];

/** Depth, root and inherited trace of member k and its ancestors (iterative: trees can be deep). */
function place(P: PendingSpans, E: Emission, k: number): void {
  if (E.depth[k] >= 0) return;
  stack.length = 0;
  for (let q = k; q >= 0 && E.depth[q] < 0; q = E.parent[q]) stack.push(q);
  for (let i = stack.length - 1; i >= 0; i--) {
    const m = stack[i];
    const par = E.parent[m];
    const slot = E.mem[m];
    const own = P.i32[slot * W + FLAGS] & P_FROZEN ? P.trace[slot]! : null;
    if (par < 0) {
      E.depth[m] = 0;
      E.root[m] = m;
      E.tref[m] = own;
    } else {
      E.depth[m] = E.depth[par] + 1;
      E.root[m] = E.root[par];
      E.tref[m] = own ?? E.tref[par];
    }
  }
  stack.length = 0;
}

/** A new tree of the cluster and what decides its trace id and sampling. */
interface Fresh {
  root: number;
  /** member whose app trace id the tree takes (-1: none yet) */
  app: number;
  appDepth: number;
  flag: number;
  flagDepth: number;
  error: boolean;
}

/** Compares the app trace ids of two slots (as their hex strings compare). */
function appLess(I: Int32Array, a: number, b: number): boolean {
  for (let w = APP; w < APP + 4; w++) {
    const x = I[a * W + w] >>> 0, y = I[b * W + w] >>> 0;
    if (x !== y) return x < y;
  }
  return false;
}

/**
 * Emitted spans whose slot holds no span (added with a `loc`): their LinkedSpans are made at
 * the end of the flush, once per batch through the SpanLoader (one decode of a raw body for
 * all the kept spans it holds). deferred[k] is filled into its trace's spans array.
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

/** The member a duplicate repeats, or k itself. */
function original(P: PendingSpans, E: Emission, k: number): number {
  const s = E.mem[k] * W;
  return P.i32[s + FLAGS] & P_DUP ? P.i32[P.i32[s + DUP] * W + POS] : k;
}

function pushTrace(
  P: PendingSpans, E: Emission, t: TraceRef, list: number[], linkSampledOut: boolean, counters: EmitCounters,
  out: EmittedTrace[], deferred: DeferredList,
): void {
  const mem = E.mem;
  const batchIds: number[] = new Array(list.length);
  let late = 0;
  if (!t.sampled && !linkSampledOut) {
    for (let i = 0; i < list.length; i++) {
      const k = list[i];
      batchIds[i] = P.f64[mem[k] * DW + BATCH];
      if (E.mark[original(P, E, k)] === LATE) late++;
    }
    counters.lateSpans += late;
    counters.linkedSpans += list.length;
    counters.sampledOutSpans += list.length;
    out.push({ traceId: t.traceId, sampled: false, spans: [], batchIds });
    return;
  }
  if (list.length > 1) {
    const D = P.f64;
    list.sort((x, y) => {
      const a = mem[x], b = mem[y];
      return D[a * DW + START] - D[b * DW + START] || (P.idLess(a, b) ? -1 : P.idLess(b, a) ? 1 : 0);
    });
  }
  const I = P.i32;
  const spans: LinkedSpan[] = new Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const k = list[i], slot = mem[k];
    const o = original(P, E, k);
    const isLate = E.mark[o] === LATE;
    const par = E.parent[o];
    const parentId = par >= 0 ? hex16(I[mem[par] * W + IDA], I[mem[par] * W + IDB]) : '';
    const spanId = hex16(I[slot * W + IDA], I[slot * W + IDB]);
    const loc = I[slot * W + LOC];
    const batchId = P.f64[slot * DW + BATCH];
    const held = loc < 0 ? P.held.get(slot) : undefined;
    if (held !== undefined) spans[i] = linkedSpan(held, t.traceId, spanId, parentId, t.ebpfTraceId, isLate);
    else deferred.push({ spans, i, batchId, loc, traceId: t.traceId, spanId, parentId, ebpfTraceId: t.ebpfTraceId, late: isLate });
    batchIds[i] = batchId;
    if (isLate) late++;
  }
  counters.lateSpans += late;
  counters.linkedSpans += list.length;
  if (!t.sampled) counters.sampledOutSpans += list.length;
  out.push({ traceId: t.traceId, sampled: t.sampled, spans, batchIds });
}

const fresh: Fresh[] = [];
/** Per member: index into `fresh` of its root's tree (roots only), or the frozen member closest to the root. */
let freshOf = new Int32Array(64);
let frozenNear = new Int32Array(64);
/** Decides the traces of the members E.mem[0..n) (resolved: resolveParents) and pushes them to `out`; E.tref[k] is member k's trace. */
export function emitCluster(P: PendingSpans, E: Emission, opts: EmitOptions, counters: EmitCounters, out: EmittedTrace[], deferred: DeferredList): void {
  const n = E.n, mem = E.mem, I = P.i32;
  if (freshOf.length < n) {
    let cap = freshOf.length;
    while (cap < n) cap *= 2;
    freshOf = new Int32Array(cap);
    frozenNear = new Int32Array(cap);
  }
  freshOf.fill(-1, 0, n);
  frozenNear.fill(-1, 0, n);
  let hasFrozen = false;
  for (let k = 0; k < n; k++) {
    const f = I[mem[k] * W + FLAGS];
    if (f & P_FROZEN) hasFrozen = true;
    if ((f & P_DUP) === 0) place(P, E, k);
  }

  // Late spans under a new root: the frozen span closest to the root names the trace.
  if (hasFrozen) {
    for (let k = 0; k < n; k++) {
      const slot = mem[k];
      if ((I[slot * W + FLAGS] & P_FROZEN) === 0) continue;
      const r = E.root[k];
      if (I[mem[r] * W + FLAGS] & P_FROZEN) continue;
      const cur = frozenNear[r];
      if (cur < 0 || E.depth[k] < E.depth[cur] ||
        (E.depth[k] === E.depth[cur] && P.trace[slot]!.traceId < P.trace[mem[cur]]!.traceId)) frozenNear[r] = k;
    }
  }

  // Which trace each new span goes to; aggregates of new trees (one per cluster nearly always).
  fresh.length = 0;
  for (let k = 0; k < n; k++) {
    const slot = mem[k], b = slot * W;
    const fl = I[b + FLAGS];
    if (fl & (P_FROZEN | P_DUP)) continue;
    if (E.tref[k] !== null) { E.mark[k] = LATE; continue; }
    const r = E.root[k];
    if (frozenNear[r] >= 0) { E.tref[k] = P.trace[mem[frozenNear[r]]]!; E.mark[k] = LATE; continue; }
    E.mark[k] = FRESH;
    let f: Fresh;
    if (freshOf[r] < 0) {
      freshOf[r] = fresh.length;
      f = { root: r, app: -1, appDepth: Infinity, flag: 0, flagDepth: Infinity, error: false };
      fresh.push(f);
    } else f = fresh[freshOf[r]];
    if (fl & P_ERROR) f.error = true;
    const d = E.depth[k];
    if ((I[b + APP] | I[b + APP + 1] | I[b + APP + 2] | I[b + APP + 3]) !== 0 && d <= f.appDepth &&
      (d < f.appDepth || appLess(I, slot, mem[f.app]))) { f.app = k; f.appDepth = d; }
    const as = I[b + APP_SAMPLED];
    if (as !== 0 && d <= f.flagDepth) {
      if (d < f.flagDepth || as > f.flag) { f.flag = as; f.flagDepth = d; }
    }
  }
  if (fresh.length > 0) {
    for (let i = 0; i < fresh.length; i++) {
      const f = fresh[i];
      const r = mem[f.root] * W;
      const ebpfTraceId = traceIdOf(I[r + IDA], I[r + IDB], I[r + IDC], I[r + IDD]);
      let traceId = ebpfTraceId;
      if (opts.useAppTraceId && f.app >= 0) {
        const a = mem[f.app] * W + APP;
        traceId = hex16(I[a], I[a + 1]) + hex16(I[a + 2], I[a + 3]);
      }
      const sampled = (opts.keepErrorTraces && f.error) ? true : f.flag !== 0 ? f.flag > 0 : keptByRate(traceId, opts.threshold);
      E.tref[f.root] = { traceId, ebpfTraceId, sampled };
    }
    for (let k = 0; k < n; k++) if (E.mark[k] === FRESH) E.tref[k] = E.tref[E.root[k]];
    fresh.length = 0;
  }

  // Group new spans by trace, in start order. One trace per cluster is the common case.
  let only: TraceRef | null = null;
  let several = false;
  for (let k = 0; k < n; k++) {
    if (I[mem[k] * W + FLAGS] & P_FROZEN) continue;
    const t = E.tref[original(P, E, k)]!;
    if (only === null) only = t;
    else if (t !== only) { several = true; break; }
  }
  if (!several && only !== null) {
    const list: number[] = [];
    for (let k = 0; k < n; k++) if ((I[mem[k] * W + FLAGS] & P_FROZEN) === 0) list.push(k);
    pushTrace(P, E, only, list, opts.linkSampledOut, counters, out, deferred);
  } else if (several) {
    const byTrace = new Map<TraceRef, number[]>();
    for (let k = 0; k < n; k++) {
      if (I[mem[k] * W + FLAGS] & P_FROZEN) continue;
      const t = E.tref[original(P, E, k)]!;
      const list = byTrace.get(t);
      if (list === undefined) byTrace.set(t, [k]);
      else list.push(k);
    }
    for (const [t, list] of byTrace) pushTrace(P, E, t, list, opts.linkSampledOut, counters, out, deferred);
  }
}
