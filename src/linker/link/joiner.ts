// The Joiner (src/linker/joiner.ts) as seqtrace implements it; docs/linking.md explains the
// algorithm and its windows.
//
// add() files a span under its keys and merges it with every pending span it could be
// joined to (a cluster: union of candidates, small into large). Parents are decided only at
// emission (./match.ts), from the whole cluster, so arrival order never matters. A cluster
// is emitted once nowMs ≥ max(latest span end + window, latest arrival + grace); deadlines
// live in a min-heap.
//
// Spans are fixed-size records in one buffer (./pending.ts), clusters 32-byte records and the
// deadlines a typed-array heap (./clusters.ts): adding a span allocates nothing, and the spans
// waiting for their window are no work for the garbage collector. An emitted span a late span
// could still join stays listed under its keys, retained (./state.ts): the late index.
import type { EbpfSpan } from '../../span/span.js';
import type { LinkerConfig } from '../../config/config.js';
import type { EmittedTrace, Joiner, JoinerStats, SpanLoader } from '../joiner.js';
import { Clusters, DeadlineHeap } from './clusters.js';
import { emitCluster, loadDeferred, type DeferredList, type EmitCounters, type EmitOptions } from './emit.js';
import { F_ENTRY, JoinBatch, joinFieldsOf } from './fields.js';
import { Emission, groupContains, resolveParents, seqPair } from './match.js';
import {
  APP, APP_SAMPLED, BATCH, CLUSTER, DST_IPH, DST_PORT, DUP, DW, END, FLAGS, GCHK, GKEY, GNEXT, IDA, IDB, IDC, IDD, LOC, MNEXT, NONE,
  P_DUP, P_EMITTED, P_ENTRY, P_FROZEN, P_KEEP_G, P_KEEP_S, POS, REQ, RESP, SKEY, SNEXT, SRC_IPH, SRC_PORT, START, W,
} from './pending.js';
import { rateThreshold } from './sampling.js';
import { createMemoryJoinState, G_ENTRY, G_EXIT, S_ENTRY, S_EXIT, type JoinState, type WaitTable } from './state.js';

export type JoinerOptions = Pick<LinkerConfig, 'window' | 'sampling_rate' | 'use_app_trace_id' | 'keep_error_traces' | 'clock_skew' | 'late_retention'> & {
  /** Most emitted spans retained for late spans (default 1,000,000); the oldest go first beyond it. */
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
  const maxLate = opts.late_index_max_keys ?? DEFAULT_LATE_INDEX_MAX_KEYS;
  const state = joinState ?? createMemoryJoinState({ maxLateKeys: maxLate });
  const retaining = maxLate > 0;
  const lateRetentionMs = opts.late_retention;
  const P = state.spans;
  const C = new Clusters();
  const heap = new DeadlineHeap();
  const E = new Emission();
  const emitOpts: EmitOptions = {
    useAppTraceId: opts.use_app_trace_id,
    keepErrorTraces: opts.keep_error_traces,
    threshold: rateThreshold(opts.sampling_rate),
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

  /**
   * Slot p (being added) may belong with the emitted span q (retained for late spans): q is
   * pulled back into p's cluster, frozen (it keeps its parent and trace), so that p takes
   * q's trace and two late spans reaching q meet in one cluster.
   */
  function lateJoin(p: number, q: number, endMs: number, arrivalMs: number): void {
    if (P.i32[q * W + FLAGS] & P_FROZEN) {
      attach(p, q); // already in an open cluster
      return;
    }
    const pc = P.i32[p * W + CLUSTER];
    const c = pc !== NONE ? pc : ownCluster(p, endMs, arrivalMs);
    state.freeze(q);
    join(q, c);
  }

  /** The pending span with the same identity as slot p on the same side of `key`, or NONE. */
  function findSame(table: WaitTable, key: number, p: number): number {
    const next = table < S_ENTRY ? GNEXT : SNEXT;
    const I = P.i32;
    for (let q = state.first(table, key); q !== NONE; q = I[q * W + next]) if ((I[q * W + FLAGS] & P_EMITTED) === 0 && P.sameId(q, p)) return q;
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

    // Every span listed under p's keys that it could belong with: pending ones join p's
    // cluster, emitted ones (retained for late spans) are pulled into it.
    if (gkey >= 0) {
      if (entry) {
        // exits of the group that start within this entry (emitted exits are not kept by group)
        for (let x = state.first(G_EXIT, gkey); x !== NONE; x = I[x * W + GNEXT]) {
          if (I[x * W + GCHK] === gchk && groupContains(startUs, endUs, D[x * DW + START])) attach(p, x);
        }
      } else {
        for (let e = state.first(G_ENTRY, gkey); e !== NONE; e = I[e * W + GNEXT]) {
          if (I[e * W + GCHK] !== gchk || !groupContains(D[e * DW + START], D[e * DW + END], startUs)) continue;
          if (I[e * W + FLAGS] & P_EMITTED) lateJoin(p, e, endMs, arrivalMs);
          else attach(p, e);
        }
      }
    }
    if (skey >= 0) {
      if (entry) {
        // exits that can be the other end of this entry's exchange
        for (let x = state.first(S_EXIT, skey); x !== NONE; x = I[x * W + SNEXT]) {
          if (!seqPair(I[x * W + REQ], I[x * W + RESP], D[x * DW + START], D[x * DW + END], rq, rs, startUs, endUs, skewUs)) continue;
          if (I[x * W + FLAGS] & P_EMITTED) lateJoin(p, x, endMs, arrivalMs);
          else attach(p, x);
        }
      } else {
        for (let e = state.first(S_ENTRY, skey); e !== NONE; e = I[e * W + SNEXT]) {
          if (!seqPair(rq, rs, startUs, endUs, I[e * W + REQ], I[e * W + RESP], D[e * DW + START], D[e * DW + END], skewUs)) continue;
          if (I[e * W + FLAGS] & P_EMITTED) lateJoin(p, e, endMs, arrivalMs);
          else attach(p, e);
        }
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
    emitCluster(P, E, emitOpts, counters, out, deferred);

    // What stays for late spans: an entry in its thread group's list, a span no sequence-number
    // match took in its exchange's list (every bit set before any list is pruned).
    for (let i = 0; i < n; i++) {
      const b = mem[i] * W;
      const f = I[b + FLAGS];
      if (f & P_FROZEN) continue;
      let keep = 0;
      if (retaining && (f & P_DUP) === 0) {
        if (f & P_ENTRY && I[b + GKEY] >= 0) keep |= P_KEEP_G;
        if (I[b + SKEY] >= 0 && !E.seqLinked[i]) keep |= P_KEEP_S;
      }
      I[b + FLAGS] = f | P_EMITTED | keep;
    }
    for (let i = 0; i < n; i++) {
      const b = mem[i] * W;
      const f = I[b + FLAGS];
      if (f & P_FROZEN) continue;
      pendingNew--;
      if (f & P_DUP) continue; // never listed
      const entry = (f & P_ENTRY) !== 0;
      if (I[b + GKEY] >= 0 && (f & P_KEEP_G) === 0) state.unwait(entry ? G_ENTRY : G_EXIT, I[b + GKEY]);
      if (I[b + SKEY] >= 0 && (f & P_KEEP_S) === 0) state.unwait(entry ? S_ENTRY : S_EXIT, I[b + SKEY]);
    }
    const expireAtMs = nowMs + lateRetentionMs;
    for (let i = 0; i < n; i++) {
      const s = mem[i], b = s * W;
      const f = I[b + FLAGS];
      I[b + CLUSTER] = NONE;
      if (f & P_FROZEN) state.thaw(s, E.seqLinked[i] === 1);
      else if (f & (P_KEEP_G | P_KEEP_S)) state.retain(s, E.tref[i]!, expireAtMs);
      else P.free(s);
    }
    E.end();
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
      retainedSpans: state.lateCount(),
    };
  }

  return { add, addBatch, flush, flushAll, stats };
}
