// The Joiner (src/linker/joiner.ts) as seqtrace implements it; docs/linking.md explains the
// algorithm and its windows.
//
// add() files a span under its keys and merges it with every pending span it could be
// joined to (a cluster: union of candidates, small into large). Parents are decided only at
// emission (./match.ts), from the whole cluster, so arrival order never matters. A cluster
// is emitted once nowMs ≥ max(latest span end + window, latest arrival + grace); deadlines
// live in a min-heap.
import type { EbpfSpan } from '../../span/span.js';
import type { LinkerConfig } from '../../config/config.js';
import type { EmittedTrace, Joiner, JoinerStats, SpanLoader } from '../joiner.js';
import { emitCluster, loadDeferred, type DeferredList, type EmitCounters, type EmitOptions } from './emit.js';
import { heapPop, heapPush, heapTopKey, newHeap } from './heap.js';
import { groupKey, ipHash, normaliseAppTraceId, seqKey, spanIdentity, type SpanIdentity } from './ids.js';
import { groupContains, releaseResolutions, resolveParents, seqFits } from './match.js';
import { frozenPending, newPending, type Cluster, type LateSpan, type PendingSpan } from './node.js';
import { isErrorSpan, rateThreshold } from './sampling.js';
import { createMemoryJoinState, G_ENTRY, G_EXIT, nextWaiter, S_ENTRY, S_EXIT, type JoinState, type WaitTable } from './state.js';

export type JoinerOptions = Pick<LinkerConfig, 'window' | 'sampling_rate' | 'use_app_trace_id' | 'keep_error_traces' | 'clock_skew' | 'late_retention'> & {
  /** Most records in the late index (default 1,000,000); the oldest go first beyond it. */
  late_index_max_keys?: number;
  /** Build the LinkedSpans of traces that are not sampled (default true; the linker passes false). */
  link_sampled_out?: boolean;
};

/** Longest extra wait after the latest arrival into a trace: agents flush every second. */
export const MAX_ARRIVAL_GRACE_MS = 2000;
export const DEFAULT_LATE_INDEX_MAX_KEYS = 1_000_000;

const EMPTY: PendingSpan[] = [];

/** A joiner. Emitted LinkedSpans are new objects; the EbpfSpans passed to add() are not changed. */
export function createJoiner(opts: JoinerOptions, joinState?: JoinState): Joiner {
  const windowMs = opts.window;
  const graceMs = Math.min(windowMs, MAX_ARRIVAL_GRACE_MS);
  const skewMs = opts.clock_skew;
  const skewUs = skewMs * 1000;
  const state = joinState ?? createMemoryJoinState({ maxLateKeys: opts.late_index_max_keys ?? DEFAULT_LATE_INDEX_MAX_KEYS });
  const emitOpts: EmitOptions = {
    useAppTraceId: opts.use_app_trace_id,
    keepErrorTraces: opts.keep_error_traces,
    threshold: rateThreshold(opts.sampling_rate),
    lateRetentionMs: opts.late_retention,
    linkSampledOut: opts.link_sampled_out ?? true,
  };
  const counters: EmitCounters = { linkedSpans: 0, lateSpans: 0, sampledOutSpans: 0 };
  const heap = newHeap();
  /** Kept spans held by loc, made into LinkedSpans at the end of the flush. */
  const deferred: DeferredList = [];
  const ident: SpanIdentity = { a: 0, b: 0, c: 0, d: 0, spanId: '' };
  const gk = { key: 0, check: 0 };
  let pendingNew = 0;
  let openTraces = 0;
  let ambiguous = 0;

  function deadline(c: Cluster): number {
    const bySpanTime = c.maxEndMs + windowMs;
    const byArrival = c.maxArrivalMs + graceMs;
    return bySpanTime > byArrival ? bySpanTime : byArrival;
  }

  function union(x: Cluster, y: Cluster): void {
    if (x === y) return;
    let big = x, small = y;
    if (small.members.length > big.members.length) { big = y; small = x; }
    const from = small.members, to = big.members;
    for (let i = 0; i < from.length; i++) {
      from[i].cluster = big;
      to.push(from[i]);
    }
    if (small.maxEndMs > big.maxEndMs) big.maxEndMs = small.maxEndMs;
    if (small.maxArrivalMs > big.maxArrivalMs) big.maxArrivalMs = small.maxArrivalMs;
    small.alive = false;
    small.members = EMPTY;
    openTraces--;
  }

  /** A cluster of its own for `p` (queued by its deadline). */
  function ownCluster(p: PendingSpan, endMs: number, arrivalMs: number): Cluster {
    const c: Cluster = { members: [p], maxEndMs: endMs, maxArrivalMs: arrivalMs, alive: true };
    p.cluster = c;
    openTraces++;
    heapPush(heap, deadline(c), c);
    return c;
  }

  /** `p` (being added) may belong with `q`: same cluster. */
  function attach(p: PendingSpan, q: PendingSpan): void {
    const qc = q.cluster!;
    if (p.cluster === null) {
      p.cluster = qc;
      qc.members.push(p);
    } else union(p.cluster, qc);
  }

  /** Brings an emitted span back into `p`'s cluster so a late span can join it. */
  function joinFrozen(ls: LateSpan, p: PendingSpan, endMs: number, arrivalMs: number): void {
    const held = state.frozen(ls.spanId);
    if (held !== undefined) {
      attach(p, held);
      return;
    }
    const c = p.cluster ?? ownCluster(p, endMs, arrivalMs);
    const f = frozenPending(ls, c);
    c.members.push(f);
    state.addFrozen(f);
  }

  /** The pending span with the same identity on the same side of `key`, if any. */
  function findSame(table: WaitTable, key: number, spanId: string): PendingSpan | null {
    for (let q = state.first(table, key) ?? null; q !== null; q = nextWaiter(table, q)) if (q.spanId === spanId) return q;
    return null;
  }

  function add(span: EbpfSpan, batchId: number, arrivalMs: number, loc = -1): void {
    const keep = loc < 0;
    spanIdentity(span, ident);
    const entry = span.kind === 'entry';
    const endUs = span.startUs + span.durationUs;
    // Span time drives the window, but a clock running ahead cannot hold a trace longer
    // than arrival + clock_skew.
    let endMs = endUs / 1000;
    if (endMs > arrivalMs + skewMs) endMs = arrivalMs + skewMs;
    const hasSeq = span.reqSeq !== 0 || span.respSeq !== 0;
    const skey = hasSeq ? seqKey(span.reqSeq, span.respSeq) : -1;
    const tg = span.threadGroup;
    let gkey = -1, gchk = 0;
    if (tg !== '' && tg !== '0') {
      groupKey(span, gk);
      gkey = gk.key;
      gchk = gk.check;
    }

    // The same span again (a resent batch): emitted with the ids of the first copy, and never
    // a second candidate that would make its own match look ambiguous. Equal identities have
    // equal keys, so looking on one key's list is enough.
    const same = skey >= 0 ? findSame(entry ? S_ENTRY : S_EXIT, skey, ident.spanId)
      : gkey >= 0 ? findSame(entry ? G_ENTRY : G_EXIT, gkey, ident.spanId) : null;
    if (same !== null) {
      const c = same.cluster!;
      const dup = newPending(keep ? span : null, null, ident.spanId, c);
      dup.dupOf = same;
      dup.batchId = batchId;
      dup.loc = loc;
      dup.entry = entry;
      dup.startUs = span.startUs;
      c.members.push(dup);
      if (arrivalMs > c.maxArrivalMs) c.maxArrivalMs = arrivalMs;
      pendingNew++;
      return;
    }

    const p = newPending(keep ? span : null, null, ident.spanId, null);
    p.batchId = batchId;
    p.loc = loc;
    p.idC = ident.c;
    p.idD = ident.d;
    p.srcIpH = ipHash(span.srcIp);
    p.dstIpH = ipHash(span.dstIp);
    p.error = isErrorSpan(span);
    p.appTraceId = span.appTraceId === '' ? '' : normaliseAppTraceId(span.appTraceId);
    p.appSampled = span.appSampled;
    p.entry = entry;
    p.reqSeq = span.reqSeq;
    p.respSeq = span.respSeq;
    p.startUs = span.startUs;
    p.endUs = endUs;
    p.srcPort = span.srcPort;
    p.dstPort = span.dstPort;
    p.gkey = gkey;
    p.gchk = gchk;
    p.skey = skey;
    pendingNew++;

    if (gkey >= 0) {
      if (entry) {
        for (let x = state.first(G_EXIT, gkey) ?? null; x !== null; x = x.gNext) if (x.gchk === gchk && groupContains(p, x)) attach(p, x);
      } else {
        for (let e = state.first(G_ENTRY, gkey) ?? null; e !== null; e = e.gNext) if (e.gchk === gchk && groupContains(e, p)) attach(p, e);
        const ls = state.lateGroup(gkey);
        if (ls !== undefined && ls.gchk === gchk && groupContains(ls, p)) joinFrozen(ls, p, endMs, arrivalMs);
      }
    }
    if (skey >= 0) {
      if (entry) {
        for (let x = state.first(S_EXIT, skey) ?? null; x !== null; x = x.sNext) if (seqFits(x, p, skewUs)) attach(p, x);
        const ls = state.lateSeq(skey);
        if (ls !== undefined && !ls.entry && !ls.seqMatched && seqFits(ls, p, skewUs)) joinFrozen(ls, p, endMs, arrivalMs);
      } else {
        for (let e = state.first(S_ENTRY, skey) ?? null; e !== null; e = e.sNext) if (seqFits(p, e, skewUs)) attach(p, e);
        const ls = state.lateSeq(skey);
        if (ls !== undefined && ls.entry && !ls.seqMatched && seqFits(p, ls, skewUs)) joinFrozen(ls, p, endMs, arrivalMs);
      }
    }
    // Filed after the search, so a span never meets itself.
    if (gkey >= 0) state.wait(entry ? G_ENTRY : G_EXIT, gkey, p);
    if (skey >= 0) state.wait(entry ? S_ENTRY : S_EXIT, skey, p);

    const c = p.cluster;
    if (c === null) ownCluster(p, endMs, arrivalMs);
    else {
      // Joined an open cluster: its deadline may move later (the heap entry is re-queued lazily).
      if (endMs > c.maxEndMs) c.maxEndMs = endMs;
      if (arrivalMs > c.maxArrivalMs) c.maxArrivalMs = arrivalMs;
    }
  }

  function emit(c: Cluster, nowMs: number, out: EmittedTrace[]): void {
    c.alive = false;
    openTraces--;
    const members = c.members;
    ambiguous += resolveParents(members, skewUs);
    emitCluster(members, emitOpts, state, nowMs, counters, out, deferred);
    releaseResolutions(members);
    for (let i = 0; i < members.length; i++) {
      const p = members[i];
      if (p.frozen !== null) {
        state.removeFrozen(p);
        continue;
      }
      pendingNew--;
      if (p.dupOf !== null) continue;
      if (p.gkey >= 0) state.unwait(p.entry ? G_ENTRY : G_EXIT, p.gkey);
      if (p.skey >= 0) state.unwait(p.entry ? S_ENTRY : S_EXIT, p.skey);
    }
    c.members = EMPTY;
  }

  function flush(nowMs: number, load?: SpanLoader): EmittedTrace[] {
    const out: EmittedTrace[] = [];
    while (heapTopKey(heap) <= nowMs) {
      const c = heapPop(heap)!;
      if (!c.alive) continue;
      const d = deadline(c);
      if (d > nowMs) heapPush(heap, d, c);
      else emit(c, nowMs, out);
    }
    state.expire(nowMs);
    loadDeferred(deferred, load);
    return out;
  }

  function flushAll(nowMs: number, load?: SpanLoader): EmittedTrace[] {
    const out: EmittedTrace[] = [];
    for (let c = heapPop(heap); c !== undefined; c = heapPop(heap)) if (c.alive) emit(c, nowMs, out);
    state.expire(nowMs);
    loadDeferred(deferred, load);
    return out;
  }

  function stats(): JoinerStats {
    return {
      pendingSpans: pendingNew,
      openTraces,
      linkedSpans: counters.linkedSpans,
      lateSpans: counters.lateSpans,
      sampledOutSpans: counters.sampledOutSpans,
      ambiguousSeqMatches: ambiguous,
    };
  }

  return { add, flush, flushAll, stats };
}
