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
import type { EmittedTrace, Joiner, JoinerStats } from '../joiner.js';
import { emitCluster, type EmitCounters, type EmitOptions } from './emit.js';
import { heapPop, heapPush, heapTopKey, newHeap } from './heap.js';
import { groupKey, seqKey, spanIdentity, type SpanIdentity } from './ids.js';
import { groupContains, resolveParents, seqFits } from './match.js';
import { frozenPending, newPending, type Cluster, type LateSpan, type PendingSpan } from './node.js';
import { rateThreshold } from './sampling.js';
import { createMemoryJoinState, G_ENTRY, G_EXIT, S_ENTRY, S_EXIT, type JoinState } from './state.js';

export type JoinerOptions = Pick<LinkerConfig, 'window' | 'sampling_rate' | 'use_app_trace_id' | 'keep_error_traces' | 'clock_skew' | 'late_retention'> & {
  /** Most records in the late index (default 1,000,000); the oldest go first beyond it. */
  late_index_max_keys?: number;
};

/** Longest extra wait after the latest arrival into a trace: agents flush every second. */
export const MAX_ARRIVAL_GRACE_MS = 2000;
export const DEFAULT_LATE_INDEX_MAX_KEYS = 1_000_000;

function emitted(p: PendingSpan): boolean {
  return !p.cluster.alive;
}

/**
 * A joiner. The EbpfSpan objects passed to add() become the LinkedSpans it emits (the id
 * fields are added to them in place, to spare a copy per span).
 */
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
  };
  const counters: EmitCounters = { linkedSpans: 0, lateSpans: 0, sampledOutSpans: 0 };
  const heap = newHeap();
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
    small.members = [];
    openTraces--;
  }

  /** Brings an emitted span back into `p`'s cluster so a late span can join it. */
  function joinFrozen(ls: LateSpan, p: PendingSpan): void {
    const held = state.pending(ls.spanId);
    if (held !== undefined) {
      union(held.cluster, p.cluster);
      return;
    }
    const f = frozenPending(ls, p.cluster);
    p.cluster.members.push(f);
    state.addPending(f);
  }

  function add(span: EbpfSpan, batchId: number, arrivalMs: number): void {
    spanIdentity(span, ident);
    const endUs = span.startUs + span.durationUs;
    // Span time drives the window, but a clock running ahead cannot hold a trace longer
    // than arrival + clock_skew.
    let endMs = endUs / 1000;
    if (endMs > arrivalMs + skewMs) endMs = arrivalMs + skewMs;

    const held = state.pending(ident.spanId);
    if (held !== undefined && held.span !== null) {
      // The same span again (a resent batch): emitted with the ids of the first copy, and
      // never a second candidate that would make its own match look ambiguous.
      const c = held.cluster;
      const dup = newPending(span, null, ident.spanId, c);
      dup.dupOf = held.dupOf ?? held;
      dup.batchId = batchId;
      dup.entry = held.entry;
      dup.startUs = span.startUs;
      c.members.push(dup);
      if (arrivalMs > c.maxArrivalMs) c.maxArrivalMs = arrivalMs;
      pendingNew++;
      return;
    }

    const cluster: Cluster = { members: [], maxEndMs: endMs, maxArrivalMs: arrivalMs, alive: true };
    const p = newPending(span, null, ident.spanId, cluster);
    cluster.members.push(p);
    p.a = ident.a; p.b = ident.b; p.c = ident.c; p.d = ident.d;
    p.batchId = batchId;
    p.entry = span.kind === 'entry';
    p.reqSeq = span.reqSeq;
    p.respSeq = span.respSeq;
    p.startUs = span.startUs;
    p.endUs = endUs;
    p.srcPort = span.srcPort;
    p.dstPort = span.dstPort;
    if (held === undefined) state.addPending(p);
    pendingNew++;
    openTraces++;
    heapPush(heap, deadline(cluster), cluster);

    const tg = span.threadGroup;
    if (tg !== '' && tg !== '0') {
      groupKey(span, gk);
      const key = gk.key, chk = gk.check;
      p.gkey = key;
      p.gchk = chk;
      if (p.entry) {
        const xs = state.waiters(G_EXIT, key);
        if (xs !== undefined) {
          for (let i = 0; i < xs.length; i++) {
            const x = xs[i];
            if (x.gchk === chk && groupContains(p, x)) union(x.cluster, p.cluster);
          }
        }
        state.wait(G_ENTRY, key, p);
      } else {
        const es = state.waiters(G_ENTRY, key);
        if (es !== undefined) {
          for (let i = 0; i < es.length; i++) {
            const e = es[i];
            if (e.gchk === chk && groupContains(e, p)) union(e.cluster, p.cluster);
          }
        }
        const ls = state.lateGroup(key);
        if (ls !== undefined && ls.gchk === chk && groupContains(ls, p)) joinFrozen(ls, p);
        state.wait(G_EXIT, key, p);
      }
    }

    if (span.reqSeq !== 0 || span.respSeq !== 0) {
      const key = seqKey(span.reqSeq, span.respSeq);
      p.skey = key;
      if (p.entry) {
        const xs = state.waiters(S_EXIT, key);
        if (xs !== undefined) {
          for (let i = 0; i < xs.length; i++) if (seqFits(xs[i], p, skewUs)) union(xs[i].cluster, p.cluster);
        }
        const ls = state.lateSeq(key);
        if (ls !== undefined && !ls.entry && !ls.seqMatched && seqFits(ls, p, skewUs)) joinFrozen(ls, p);
        state.wait(S_ENTRY, key, p);
      } else {
        const es = state.waiters(S_ENTRY, key);
        if (es !== undefined) {
          for (let i = 0; i < es.length; i++) if (seqFits(p, es[i], skewUs)) union(es[i].cluster, p.cluster);
        }
        const ls = state.lateSeq(key);
        if (ls !== undefined && ls.entry && !ls.seqMatched && seqFits(p, ls, skewUs)) joinFrozen(ls, p);
        state.wait(S_EXIT, key, p);
      }
    }
  }

  function emit(c: Cluster, nowMs: number, out: EmittedTrace[]): void {
    c.alive = false;
    openTraces--;
    const members = c.members;
    ambiguous += resolveParents(members, skewUs);
    emitCluster(members, emitOpts, state, nowMs, counters, out);
    for (let i = 0; i < members.length; i++) {
      const p = members[i];
      state.removePending(p);
      if (p.frozen !== null) continue;
      pendingNew--;
      if (p.dupOf !== null) continue;
      if (p.gkey >= 0) state.unwait(p.entry ? G_ENTRY : G_EXIT, p.gkey, emitted);
      if (p.skey >= 0) state.unwait(p.entry ? S_ENTRY : S_EXIT, p.skey, emitted);
    }
    c.members = [];
  }

  function flush(nowMs: number): EmittedTrace[] {
    const out: EmittedTrace[] = [];
    while (heapTopKey(heap) <= nowMs) {
      const c = heapPop(heap)!;
      if (!c.alive) continue;
      const d = deadline(c);
      if (d > nowMs) heapPush(heap, d, c);
      else emit(c, nowMs, out);
    }
    state.expire(nowMs);
    return out;
  }

  function flushAll(nowMs: number): EmittedTrace[] {
    const out: EmittedTrace[] = [];
    for (let c = heapPop(heap); c !== undefined; c = heapPop(heap)) if (c.alive) emit(c, nowMs, out);
    state.expire(nowMs);
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
