// The Joiner (src/linker/joiner.ts) as seqtrace implements it; docs/linking.md explains the
// algorithm and its windows.
//
// add() files a span under its keys and merges it with every pending span it could be
// joined to (a cluster: union of candidates, small into large). Parents are decided only at
// emission (./match.ts), from the whole cluster, so arrival order never matters. A cluster
// is emitted once nowMs ≥ max(latest span end + window, latest arrival + grace); deadlines
// live in a min-heap.
//
// Pending spans are fixed-size records in one buffer (./pending.ts), clusters and deadlines
// typed-array columns (./clusters.ts): adding a span allocates nothing, and the spans waiting
// for their window are no work for the garbage collector.
import type { EbpfSpan } from '../../span/span.js';
import type { LinkerConfig } from '../../config/config.js';
import type { EmittedTrace, Joiner, JoinerStats, SpanLoader } from '../joiner.js';
import { Clusters, DeadlineHeap } from './clusters.js';
import { emitCluster, loadDeferred, type DeferredList, type EmitCounters, type EmitOptions } from './emit.js';
import { F_ENTRY, JoinBatch, joinFieldsOf } from './fields.js';
import { Emission, GROUP_SLACK_US, resolveParents } from './match.js';
import {
  APP, APP_SAMPLED, BATCH, CLUSTER, DST_IPH, DST_PORT, DUP, DW, END, FLAGS, GCHK, GKEY, GNEXT, IDA, IDB, IDC, IDD, LOC, MNEXT, NONE,
  P_DUP, P_EMITTED, P_ENTRY, P_FROZEN, POS, REQ, RESP, SKEY, SNEXT, SRC_IPH, SRC_PORT, START, W,
} from './pending.js';
import { rateThreshold } from './sampling.js';
import { createMemoryJoinState, G_ENTRY, G_EXIT, S_ENTRY, S_EXIT, type JoinState, type LateSpan, type WaitTable } from './state.js';

export type JoinerOptions = Pick<LinkerConfig, 'window' | 'sampling_rate' | 'use_app_trace_id' | 'keep_error_traces' | 'clock_skew' | 'late_retention'> & {
  /** Most records in the late index (default 1,000,000); the oldest go first beyond it. */
  late_index_max_keys?: number;
  /** Build the LinkedSpans of traces that are not sampled (default true; the linker passes false). */
  link_sampled_out?: boolean;
};

/** Longest extra wait after the latest arrival into a trace: agents flush every second. */
export const MAX_ARRIVAL_GRACE_MS = 2000;
export const DEFAULT_LATE_INDEX_MAX_KEYS = 1_000_000;

/** A joiner. Emitted LinkedSpans are new objects; the EbpfSpans passed to add() are not changed. */
export function createJoiner(opts: JoinerOptions, joinState?: JoinState): Joiner {
  const windowMs = opts.window;
  const graceMs = Math.min(windowMs, MAX_ARRIVAL_GRACE_MS);
  const skewMs = opts.clock_skew;
  const skewUs = skewMs * 1000;
  const state = joinState ?? createMemoryJoinState({ maxLateKeys: opts.late_index_max_keys ?? DEFAULT_LATE_INDEX_MAX_KEYS });
  const P = state.spans;
  const C = new Clusters();
  const heap = new DeadlineHeap();
  const E = new Emission();
  const emitOpts: EmitOptions = {
    useAppTraceId: opts.use_app_trace_id,
    keepErrorTraces: opts.keep_error_traces,
    threshold: rateThreshold(opts.sampling_rate),
    lateRetentionMs: opts.late_retention,
    linkSampledOut: opts.link_sampled_out ?? true,
  };
  const counters: EmitCounters = { linkedSpans: 0, lateSpans: 0, sampledOutSpans: 0 };
  /** Kept spans held by loc, made into LinkedSpans at the end of the flush. */
  const deferred: DeferredList = [];
  /** One row for add(span): the same path as a batch. */
  const one = new JoinBatch(1);
  let pendingNew = 0;
  let ambiguous = 0;

  function deadline(c: number): number {
    const bySpanTime = C.maxEndMs(c) + windowMs;
    const byArrival = C.maxArrivalMs(c) + graceMs;
    return bySpanTime > byArrival ? bySpanTime : byArrival;
  }

  /** Appends slot s to cluster c's members. */
  function join(s: number, c: number): void {
    const I = P.i32;
    I[s * W + CLUSTER] = c;
    I[s * W + MNEXT] = NONE;
    const n = C.size(c);
    if (n === 0) C.setHead(c, s);
    else I[C.tail(c) * W + MNEXT] = s;
    C.setTail(c, s);
    C.setSize(c, n + 1);
  }

  /** Merges clusters x and y (the smaller one's members are renumbered); returns the one that lives. */
  function union(x: number, y: number): number {
    if (x === y) return x;
    let big = x, small = y;
    if (C.size(small) > C.size(big)) { big = y; small = x; }
    const I = P.i32;
    for (let s = C.head(small); s !== NONE; s = I[s * W + MNEXT]) I[s * W + CLUSTER] = big;
    I[C.tail(big) * W + MNEXT] = C.head(small);
    C.setTail(big, C.tail(small));
    C.setSize(big, C.size(big) + C.size(small));
    C.raise(big, C.maxEndMs(small), C.maxArrivalMs(small));
    C.free(small);
    return big;
  }

  /** A cluster of its own for slot s (queued by its deadline). */
  function ownCluster(s: number, endMs: number, arrivalMs: number): number {
    const c = C.alloc();
    C.setTimes(c, endMs, arrivalMs);
    join(s, c);
    heap.push(deadline(c), c, C.gen(c));
    return c;
  }

  /** Slot p (being added) may belong with slot q: same cluster. */
  function attach(p: number, q: number): void {
    const I = P.i32;
    const qc = I[q * W + CLUSTER];
    const pc = I[p * W + CLUSTER];
    if (pc === NONE) join(p, qc);
    else if (pc !== qc) union(pc, qc);
  }

  /** Brings an emitted span back into p's cluster so a late span can join it (room reserved). */
  function joinFrozen(ls: LateSpan, p: number, endMs: number, arrivalMs: number): void {
    const held = state.frozen(ls.idA, ls.idB);
    if (held !== NONE) {
      attach(p, held);
      return;
    }
    const pc = P.i32[p * W + CLUSTER];
    const c = pc !== NONE ? pc : ownCluster(p, endMs, arrivalMs);
    const f = P.alloc();
    const I = P.i32, D = P.f64, b = f * W;
    I[b + FLAGS] = (ls.entry ? P_ENTRY : 0) | P_FROZEN;
    I[b + IDA] = ls.idA; I[b + IDB] = ls.idB; I[b + IDC] = 0; I[b + IDD] = 0;
    I[b + GKEY] = ls.gkey; I[b + GCHK] = ls.gchk; I[b + SKEY] = ls.seqMatched ? -1 : ls.skey;
    I[b + REQ] = ls.reqSeq; I[b + RESP] = ls.respSeq;
    D[f * DW + START] = ls.startUs; D[f * DW + END] = ls.endUs; D[f * DW + BATCH] = -1;
    I[b + SRC_PORT] = ls.srcPort; I[b + DST_PORT] = ls.dstPort; I[b + SRC_IPH] = ls.srcIpH; I[b + DST_IPH] = ls.dstIpH;
    I[b + APP_SAMPLED] = 0; I[b + APP] = 0; I[b + APP + 1] = 0; I[b + APP + 2] = 0; I[b + APP + 3] = 0;
    I[b + LOC] = -1; I[b + DUP] = NONE;
    join(f, c);
    state.addFrozen(f, ls);
  }

  /** The pending span with the same identity as slot p on the same side of `key`, or NONE. */
  function findSame(table: WaitTable, key: number, p: number): number {
    const next = table < S_ENTRY ? GNEXT : SNEXT;
    for (let q = state.first(table, key); q !== NONE; q = P.i32[q * W + next]) if (P.sameId(q, p)) return q;
    return NONE;
  }

  /** Row i of b as a new pending span (room reserved). */
  function addRow(b: JoinBatch, i: number, batchId: number, arrivalMs: number, loc: number): number {
    const p = P.alloc();
    const I = P.i32, D = P.f64, r = p * W;
    const fl = b.flags[i];
    const entry = (fl & F_ENTRY) !== 0;
    I[r + FLAGS] = fl; // F_ENTRY, F_ERROR = P_ENTRY, P_ERROR
    I[r + IDA] = b.idA[i]; I[r + IDB] = b.idB[i]; I[r + IDC] = b.idC[i]; I[r + IDD] = b.idD[i];
    const gkey = b.gkey[i], skey = b.skey[i], gchk = b.gchk[i];
    I[r + GKEY] = gkey; I[r + GCHK] = gchk; I[r + SKEY] = skey;
    const rq = b.reqSeq[i] | 0, rs = b.respSeq[i] | 0;
    I[r + REQ] = rq; I[r + RESP] = rs;
    const startUs = b.startUs[i], endUs = b.endUs[i];
    D[p * DW + START] = startUs; D[p * DW + END] = endUs; D[p * DW + BATCH] = batchId;
    I[r + SRC_PORT] = b.srcPort[i]; I[r + DST_PORT] = b.dstPort[i]; I[r + SRC_IPH] = b.srcIpH[i]; I[r + DST_IPH] = b.dstIpH[i];
    I[r + APP_SAMPLED] = b.appSampled[i];
    const a = 4 * i;
    I[r + APP] = b.app[a]; I[r + APP + 1] = b.app[a + 1]; I[r + APP + 2] = b.app[a + 2]; I[r + APP + 3] = b.app[a + 3];
    I[r + LOC] = loc;
    I[r + CLUSTER] = NONE;
    I[r + DUP] = NONE;
    pendingNew++;

    // Span time drives the window, but a clock running ahead cannot hold a trace longer
    // than arrival + clock_skew.
    let endMs = endUs / 1000;
    if (endMs > arrivalMs + skewMs) endMs = arrivalMs + skewMs;

    // The same span again (a resent batch): emitted with the ids of the first copy, and never
    // a second candidate that would make its own match look ambiguous. Equal identities have
    // equal keys, so looking on one key's list is enough.
    const same = skey >= 0 ? findSame(entry ? S_ENTRY : S_EXIT, skey, p)
      : gkey >= 0 ? findSame(entry ? G_ENTRY : G_EXIT, gkey, p) : NONE;
    if (same !== NONE) {
      I[r + FLAGS] |= P_DUP;
      I[r + DUP] = same;
      const c = I[same * W + CLUSTER];
      join(p, c);
      C.raise(c, -Infinity, arrivalMs);
      return p;
    }

    if (gkey >= 0) {
      const lo = startUs - GROUP_SLACK_US, hi = endUs + GROUP_SLACK_US;
      if (entry) {
        // exits of the group that start within this entry
        for (let x = state.first(G_EXIT, gkey); x !== NONE; x = I[x * W + GNEXT]) {
          const xs = D[x * DW + START];
          if (I[x * W + GCHK] === gchk && xs >= lo && xs <= hi) attach(p, x);
        }
      } else {
        for (let e = state.first(G_ENTRY, gkey); e !== NONE; e = I[e * W + GNEXT]) {
          if (I[e * W + GCHK] === gchk && startUs >= D[e * DW + START] - GROUP_SLACK_US && startUs <= D[e * DW + END] + GROUP_SLACK_US) attach(p, e);
        }
        const ls = state.lateGroup(gkey);
        if (ls !== undefined && ls.gchk === gchk && startUs >= ls.startUs - GROUP_SLACK_US && startUs <= ls.endUs + GROUP_SLACK_US) joinFrozen(ls, p, endMs, arrivalMs);
      }
    }
    if (skey >= 0) {
      if (entry) {
        // exits of the exchange that contain this entry (widened by the skew)
        for (let x = state.first(S_EXIT, skey); x !== NONE; x = I[x * W + SNEXT]) {
          if (I[x * W + REQ] === rq && I[x * W + RESP] === rs && startUs >= D[x * DW + START] - skewUs && endUs <= D[x * DW + END] + skewUs) attach(p, x);
        }
        const ls = state.lateSeq(skey);
        if (ls !== undefined && !ls.entry && !ls.seqMatched && (ls.reqSeq | 0) === rq && (ls.respSeq | 0) === rs &&
          startUs >= ls.startUs - skewUs && endUs <= ls.endUs + skewUs) joinFrozen(ls, p, endMs, arrivalMs);
      } else {
        for (let e = state.first(S_ENTRY, skey); e !== NONE; e = I[e * W + SNEXT]) {
          if (I[e * W + REQ] === rq && I[e * W + RESP] === rs && D[e * DW + START] >= startUs - skewUs && D[e * DW + END] <= endUs + skewUs) attach(p, e);
        }
        const ls = state.lateSeq(skey);
        if (ls !== undefined && ls.entry && !ls.seqMatched && (ls.reqSeq | 0) === rq && (ls.respSeq | 0) === rs &&
          ls.startUs >= startUs - skewUs && ls.endUs <= endUs + skewUs) joinFrozen(ls, p, endMs, arrivalMs);
      }
    }
    // Filed after the search, so a span never meets itself.
    if (gkey >= 0) state.wait(entry ? G_ENTRY : G_EXIT, gkey, p);
    if (skey >= 0) state.wait(entry ? S_ENTRY : S_EXIT, skey, p);

    const c = I[r + CLUSTER];
    if (c === NONE) ownCluster(p, endMs, arrivalMs);
    else {
      // Joined an open cluster: its deadline may move later (the heap entry is re-queued lazily).
      C.raise(c, endMs, arrivalMs);
    }
    return p;
  }

  function addBatch(b: JoinBatch, batchId: number, arrivalMs: number): void {
    // A span makes at most three slots (itself and two frozen stand-ins).
    P.reserve(3 * b.n);
    for (let i = 0; i < b.n; i++) addRow(b, i, batchId, arrivalMs, b.loc[i]);
  }

  function add(span: EbpfSpan, batchId: number, arrivalMs: number, loc = -1): void {
    one.clear();
    joinFieldsOf(span, one, loc);
    P.reserve(3);
    const p = addRow(one, 0, batchId, arrivalMs, loc);
    if (loc < 0) P.held.set(p, span);
  }

  function emit(c: number, nowMs: number, out: EmittedTrace[]): void {
    const n = C.size(c);
    E.begin(n);
    const mem = E.mem;
    const I = P.i32;
    let k = 0;
    for (let s = C.head(c); s !== NONE; s = I[s * W + MNEXT]) {
      mem[k] = s;
      I[s * W + POS] = k++;
    }
    ambiguous += resolveParents(P, E, skewUs);
    emitCluster(P, E, emitOpts, state, nowMs, counters, out, deferred);
    E.end();
    for (let i = 0; i < n; i++) I[mem[i] * W + FLAGS] |= P_EMITTED;
    for (let i = 0; i < n; i++) {
      const s = mem[i], b = s * W;
      const f = I[b + FLAGS];
      if (f & P_FROZEN) {
        state.removeFrozen(s);
        continue;
      }
      pendingNew--;
      if (f & P_DUP) continue;
      const entry = (f & P_ENTRY) !== 0;
      if (I[b + GKEY] >= 0) state.unwait(entry ? G_ENTRY : G_EXIT, I[b + GKEY]);
      if (I[b + SKEY] >= 0) state.unwait(entry ? S_ENTRY : S_EXIT, I[b + SKEY]);
    }
    for (let i = 0; i < n; i++) P.free(mem[i]);
    C.free(c);
  }

  function flush(nowMs: number, load?: SpanLoader): EmittedTrace[] {
    const out: EmittedTrace[] = [];
    while (heap.topKey() <= nowMs) {
      heap.pop();
      const c = heap.poppedId;
      if (!C.alive(c) || C.gen(c) !== heap.poppedGen) continue;
      const d = deadline(c);
      if (d > nowMs) heap.push(d, c, C.gen(c));
      else emit(c, nowMs, out);
    }
    state.expire(nowMs);
    loadDeferred(deferred, load);
    return out;
  }

  function flushAll(nowMs: number, load?: SpanLoader): EmittedTrace[] {
    const out: EmittedTrace[] = [];
    while (heap.pop()) {
      const c = heap.poppedId;
      if (C.alive(c) && C.gen(c) === heap.poppedGen) emit(c, nowMs, out);
    }
    state.expire(nowMs);
    loadDeferred(deferred, load);
    return out;
  }

  function stats(): JoinerStats {
    return {
      pendingSpans: pendingNew,
      openTraces: C.open,
      linkedSpans: counters.linkedSpans,
      lateSpans: counters.lateSpans,
      sampledOutSpans: counters.sampledOutSpans,
      ambiguousSeqMatches: ambiguous,
    };
  }

  return { add, addBatch, flush, flushAll, stats };
}
