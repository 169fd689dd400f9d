// The Joiner (src/linker/joiner.ts) as seqtrace implements it; docs/linking.md explains the
// algorithm and its windows.
//
// add() files a span under its keys and merges it with every pending span it could be
// joined to (a cluster: union of candidates, small into large). Parents are decided only at
// emission (./match.ts), from the whole cluster, so arrival order never matters. A cluster
// is emitted once nowMs ≥ max(latest span end + window, latest arrival + grace); deadlines
// live in a min-heap.
//
// Pending spans and clusters are slots in typed-array columns (./pending.ts, ./clusters.ts):
// adding a span allocates nothing, and the spans waiting for their window are no work for
// the garbage collector.
import type { EbpfSpan } from '../../span/span.js';
import type { LinkerConfig } from '../../config/config.js';
import type { EmittedTrace, Joiner, JoinerStats, SpanLoader } from '../joiner.js';
import { Clusters, DeadlineHeap } from './clusters.js';
import { emitCluster, loadDeferred, type DeferredList, type EmitCounters, type EmitOptions } from './emit.js';
import { F_ENTRY, JoinBatch, joinFieldsOf } from './fields.js';
import { Emission, GROUP_SLACK_US, resolveParents } from './match.js';
import { NONE, P_DUP, P_EMITTED, P_ENTRY, P_FROZEN } from './pending.js';
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
    const bySpanTime = C.maxEndMs[c] + windowMs;
    const byArrival = C.maxArrivalMs[c] + graceMs;
    return bySpanTime > byArrival ? bySpanTime : byArrival;
  }

  /** Appends slot s to cluster c's members. */
  function join(s: number, c: number): void {
    P.cluster[s] = c;
    P.mNext[s] = NONE;
    if (C.size[c] === 0) C.head[c] = s;
    else P.mNext[C.tail[c]] = s;
    C.tail[c] = s;
    C.size[c]++;
  }

  /** Merges clusters x and y (the smaller one's members are renumbered); returns the one that lives. */
  function union(x: number, y: number): number {
    if (x === y) return x;
    let big = x, small = y;
    if (C.size[small] > C.size[big]) { big = y; small = x; }
    const cluster = P.cluster, mNext = P.mNext;
    for (let s = C.head[small]; s !== NONE; s = mNext[s]) cluster[s] = big;
    mNext[C.tail[big]] = C.head[small];
    C.tail[big] = C.tail[small];
    C.size[big] += C.size[small];
    if (C.maxEndMs[small] > C.maxEndMs[big]) C.maxEndMs[big] = C.maxEndMs[small];
    if (C.maxArrivalMs[small] > C.maxArrivalMs[big]) C.maxArrivalMs[big] = C.maxArrivalMs[small];
    C.size[small] = 0;
    C.free(small);
    return big;
  }

  /** A cluster of its own for slot s (queued by its deadline). */
  function ownCluster(s: number, endMs: number, arrivalMs: number): number {
    const c = C.alloc();
    C.size[c] = 0;
    C.maxEndMs[c] = endMs;
    C.maxArrivalMs[c] = arrivalMs;
    join(s, c);
    heap.push(deadline(c), c, C.gen[c]);
    return c;
  }

  /** Slot p (being added) may belong with slot q: same cluster. */
  function attach(p: number, q: number): void {
    const qc = P.cluster[q];
    const pc = P.cluster[p];
    if (pc === NONE) join(p, qc);
    else if (pc !== qc) union(pc, qc);
  }

  /** Brings an emitted span back into p's cluster so a late span can join it. */
  function joinFrozen(ls: LateSpan, p: number, endMs: number, arrivalMs: number): void {
    const held = state.frozen(ls.idA, ls.idB);
    if (held !== NONE) {
      attach(p, held);
      return;
    }
    const c = P.cluster[p] !== NONE ? P.cluster[p] : ownCluster(p, endMs, arrivalMs);
    const f = P.alloc();
    P.flags[f] = (ls.entry ? P_ENTRY : 0) | P_FROZEN;
    P.idA[f] = ls.idA; P.idB[f] = ls.idB; P.idC[f] = 0; P.idD[f] = 0;
    P.gkey[f] = ls.gkey; P.gchk[f] = ls.gchk; P.skey[f] = ls.seqMatched ? -1 : ls.skey;
    P.reqSeq[f] = ls.reqSeq; P.respSeq[f] = ls.respSeq; P.startUs[f] = ls.startUs; P.endUs[f] = ls.endUs;
    P.srcPort[f] = ls.srcPort; P.dstPort[f] = ls.dstPort; P.srcIpH[f] = ls.srcIpH; P.dstIpH[f] = ls.dstIpH;
    P.appSampled[f] = 0; P.app.fill(0, 4 * f, 4 * f + 4);
    P.batchId[f] = -1; P.loc[f] = -1; P.dupOf[f] = NONE;
    join(f, c);
    state.addFrozen(f, ls);
  }

  /** The pending span with the same identity as slot p on the same side of `key`, or NONE. */
  function findSame(table: WaitTable, key: number, p: number): number {
    const next = table < S_ENTRY ? P.gNext : P.sNext;
    for (let q = state.first(table, key); q !== NONE; q = next[q]) if (P.sameId(q, p)) return q;
    return NONE;
  }

  /** Row i of b as a new pending span. */
  function addRow(b: JoinBatch, i: number, batchId: number, arrivalMs: number, loc: number): number {
    const p = P.alloc();
    const entry = (b.flags[i] & F_ENTRY) !== 0;
    P.flags[p] = b.flags[i]; // F_ENTRY, F_ERROR = P_ENTRY, P_ERROR
    P.idA[p] = b.idA[i]; P.idB[p] = b.idB[i]; P.idC[p] = b.idC[i]; P.idD[p] = b.idD[i];
    const gkey = b.gkey[i], skey = b.skey[i];
    P.gkey[p] = gkey; P.gchk[p] = b.gchk[i]; P.skey[p] = skey;
    P.reqSeq[p] = b.reqSeq[i]; P.respSeq[p] = b.respSeq[i];
    const startUs = b.startUs[i], endUs = b.endUs[i];
    P.startUs[p] = startUs; P.endUs[p] = endUs;
    P.srcPort[p] = b.srcPort[i]; P.dstPort[p] = b.dstPort[i]; P.srcIpH[p] = b.srcIpH[i]; P.dstIpH[p] = b.dstIpH[i];
    P.appSampled[p] = b.appSampled[i];
    P.app[4 * p] = b.app[4 * i]; P.app[4 * p + 1] = b.app[4 * i + 1]; P.app[4 * p + 2] = b.app[4 * i + 2]; P.app[4 * p + 3] = b.app[4 * i + 3];
    P.batchId[p] = batchId;
    P.loc[p] = loc;
    P.cluster[p] = NONE;
    P.dupOf[p] = NONE;
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
      P.flags[p] |= P_DUP;
      P.dupOf[p] = same;
      const c = P.cluster[same];
      join(p, c);
      if (arrivalMs > C.maxArrivalMs[c]) C.maxArrivalMs[c] = arrivalMs;
      return p;
    }

    if (gkey >= 0) {
      const gchk = P.gchk[p];
      const lo = startUs - GROUP_SLACK_US, hi = endUs + GROUP_SLACK_US;
      if (entry) {
        // exits of the group that start within this entry
        for (let x = state.first(G_EXIT, gkey); x !== NONE; x = P.gNext[x]) {
          if (P.gchk[x] === gchk && P.startUs[x] >= lo && P.startUs[x] <= hi) attach(p, x);
        }
      } else {
        for (let e = state.first(G_ENTRY, gkey); e !== NONE; e = P.gNext[e]) {
          if (P.gchk[e] === gchk && startUs >= P.startUs[e] - GROUP_SLACK_US && startUs <= P.endUs[e] + GROUP_SLACK_US) attach(p, e);
        }
        const ls = state.lateGroup(gkey);
        if (ls !== undefined && ls.gchk === gchk && startUs >= ls.startUs - GROUP_SLACK_US && startUs <= ls.endUs + GROUP_SLACK_US) joinFrozen(ls, p, endMs, arrivalMs);
      }
    }
    if (skey >= 0) {
      const rq = P.reqSeq[p], rs = P.respSeq[p];
      if (entry) {
        // exits of the exchange that contain this entry (widened by the skew)
        for (let x = state.first(S_EXIT, skey); x !== NONE; x = P.sNext[x]) {
          if (P.reqSeq[x] === rq && P.respSeq[x] === rs && startUs >= P.startUs[x] - skewUs && endUs <= P.endUs[x] + skewUs) attach(p, x);
        }
        const ls = state.lateSeq(skey);
        if (ls !== undefined && !ls.entry && !ls.seqMatched && ls.reqSeq === rq && ls.respSeq === rs &&
          startUs >= ls.startUs - skewUs && endUs <= ls.endUs + skewUs) joinFrozen(ls, p, endMs, arrivalMs);
      } else {
        for (let e = state.first(S_ENTRY, skey); e !== NONE; e = P.sNext[e]) {
          if (P.reqSeq[e] === rq && P.respSeq[e] === rs && P.startUs[e] >= startUs - skewUs && P.endUs[e] <= endUs + skewUs) attach(p, e);
        }
        const ls = state.lateSeq(skey);
        if (ls !== undefined && ls.entry && !ls.seqMatched && ls.reqSeq === rq && ls.respSeq === rs &&
          ls.startUs >= startUs - skewUs && ls.endUs <= endUs + skewUs) joinFrozen(ls, p, endMs, arrivalMs);
      }
    }
    // Filed after the search, so a span never meets itself.
    if (gkey >= 0) state.wait(entry ? G_ENTRY : G_EXIT, gkey, p);
    if (skey >= 0) state.wait(entry ? S_ENTRY : S_EXIT, skey, p);

    const c = P.cluster[p];
    if (c === NONE) ownCluster(p, endMs, arrivalMs);
    else {
      // Joined an open cluster: its deadline may move later (the heap entry is re-queued lazily).
      if (endMs > C.maxEndMs[c]) C.maxEndMs[c] = endMs;
      if (arrivalMs > C.maxArrivalMs[c]) C.maxArrivalMs[c] = arrivalMs;
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
    const n = C.size[c];
    E.begin(n);
    const mem = E.mem;
    let k = 0;
    for (let s = C.head[c]; s !== NONE; s = P.mNext[s]) {
      mem[k] = s;
      P.pos[s] = k++;
    }
    ambiguous += resolveParents(P, E, skewUs);
    emitCluster(P, E, emitOpts, state, nowMs, counters, out, deferred);
    E.end();
    const flags = P.flags;
    for (let i = 0; i < n; i++) flags[mem[i]] |= P_EMITTED;
    for (let i = 0; i < n; i++) {
      const s = mem[i];
      const f = flags[s];
      if (f & P_FROZEN) {
        state.removeFrozen(s);
        continue;
      }
      pendingNew--;
      if (f & P_DUP) continue;
      const entry = (f & P_ENTRY) !== 0;
      if (P.gkey[s] >= 0) state.unwait(entry ? G_ENTRY : G_EXIT, P.gkey[s]);
      if (P.skey[s] >= 0) state.unwait(entry ? S_ENTRY : S_EXIT, P.skey[s]);
    }
    for (let i = 0; i < n; i++) P.free(mem[i]);
    C.size[c] = 0;
    C.free(c);
  }

  function flush(nowMs: number, load?: SpanLoader): EmittedTrace[] {
    const out: EmittedTrace[] = [];
    while (heap.topKey() <= nowMs) {
      heap.pop();
      const c = heap.poppedId;
      if (!C.alive[c] || C.gen[c] !== heap.poppedGen) continue;
      const d = deadline(c);
      if (d > nowMs) heap.push(d, c, C.gen[c]);
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
      if (C.alive[c] && C.gen[c] === heap.poppedGen) emit(c, nowMs, out);
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
