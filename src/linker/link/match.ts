// Deciding parents inside one cluster, at emission time, from the spans alone. Because the
// decision looks at the whole cluster at once (never "whoever arrived first"), two linkers
// holding the same spans decide the same parents whatever the arrival order.
//
// - Thread group: an exit's parent is the entry of its group (host, pid, thread group) whose
//   time contains the exit's start (±GROUP_SLACK_US, one clock: same host); among several,
//   the latest-starting one (the innermost), ties by span id. An entry that had already
//   finished is never a parent (DataKit's §3.2).
// - Sequence numbers: an exit and an entry with equal reqSeq and respSeq (not both 0) whose
//   times fit (the entry lies within the exit, each end widened by clock_skew) are
//   candidates. Score: 2 per port that agrees crosswise (exit.srcPort = entry.dstPort,
//   exit.dstPort = entry.srcPort), 1 per address that agrees crosswise; 0 / '' never agree.
//   A pair links when each is the other's unique best. A tie on either side leaves it
//   unlinked and is counted as an ambiguous match.
//
// The members of the cluster being emitted are numbered 0..n-1 (`Emission.mem[k]` is the
// slot of member k, PendingSpans.pos[slot] = k) and what the emission works out for them
// (parent, best candidate, depth, root, trace) lives in the Emission's columns by that
// number: one scratch reused for every cluster, nothing carried by a pending span.
import { P_DUP, P_ENTRY, P_FROZEN, type PendingSpans } from './pending.js';
import type { LateSpan, TraceRef } from './state.js';

export const GROUP_SLACK_US = 1000;

/** Times of a span (pending or remembered in the late index). */
export interface Timed {
  reqSeq: number;
  respSeq: number;
  startUs: number;
  endUs: number;
}

export function groupContains(entry: Timed, exit: Timed): boolean {
  return exit.startUs >= entry.startUs - GROUP_SLACK_US && exit.startUs <= entry.endUs + GROUP_SLACK_US;
}

export function seqFits(exit: Timed, entry: Timed, skewUs: number): boolean {
  return exit.reqSeq === entry.reqSeq && exit.respSeq === entry.respSeq &&
    entry.startUs >= exit.startUs - skewUs && entry.endUs <= exit.endUs + skewUs;
}

/** The emission's scratch: member slots and, by member number, what is worked out for them. */
export class Emission {
  n = 0;
  mem = new Int32Array(64);
  parent = new Int32Array(64); // member number, -1: none
  seqLinked = new Uint8Array(64);
  best = new Int32Array(64);
  bestScore = new Int32Array(64);
  bestTie = new Uint8Array(64);
  hasCandidates = new Uint8Array(64);
  mark = new Uint8Array(64);
  depth = new Int32Array(64);
  root = new Int32Array(64);
  tref: (TraceRef | null)[] = [];
  /** Entries among the members (member numbers), not duplicates. */
  entries = new Int32Array(64);
  entryCount = 0;

  /** Room for n members, every column reset. */
  begin(n: number): void {
    if (n > this.mem.length) {
      let cap = this.mem.length;
      while (cap < n) cap *= 2;
      this.mem = new Int32Array(cap); this.parent = new Int32Array(cap); this.seqLinked = new Uint8Array(cap);
      this.best = new Int32Array(cap); this.bestScore = new Int32Array(cap); this.bestTie = new Uint8Array(cap);
      this.hasCandidates = new Uint8Array(cap); this.mark = new Uint8Array(cap); this.depth = new Int32Array(cap);
      this.root = new Int32Array(cap); this.entries = new Int32Array(cap);
    }
    this.n = n;
    this.parent.fill(-1, 0, n); this.seqLinked.fill(0, 0, n); this.best.fill(-1, 0, n); this.bestScore.fill(-1, 0, n);
    this.bestTie.fill(0, 0, n); this.hasCandidates.fill(0, 0, n); this.mark.fill(0, 0, n); this.depth.fill(-1, 0, n);
    this.root.fill(-1, 0, n);
    this.tref.length = n;
    this.tref.fill(null, 0, n);
    this.entryCount = 0;
  }

  /** Holds no trace between clusters. */
  end(): void {
    this.tref.fill(null, 0, this.n);
  }
}

/** Can member k still take a parent / be matched by seq? Frozen spans keep what they were emitted with. */
function seqOpen(P: PendingSpans, frozen: Map<number, LateSpan>, slot: number): boolean {
  const f = P.flags[slot];
  if (f & P_DUP || P.skey[slot] < 0) return false;
  return (f & P_FROZEN) === 0 || !frozen.get(slot)!.seqMatched;
}

function offer(E: Emission, x: number, e: number, s: number): void {
  E.hasCandidates[x] = 1;
  if (s > E.bestScore[x]) { E.best[x] = e; E.bestScore[x] = s; E.bestTie[x] = 0; } else if (s === E.bestScore[x]) E.bestTie[x] = 1;
  if (s > E.bestScore[e]) { E.best[e] = x; E.bestScore[e] = s; E.bestTie[e] = 0; } else if (s === E.bestScore[e]) E.bestTie[e] = 1;
}

/**
 * Sets `parent` (and `seqLinked`) of the members E.mem[0..n). Returns how many exits were
 * left unlinked because of a tie.
 */
export function resolveParents(P: PendingSpans, E: Emission, skewUs: number): number {
  const n = E.n, mem = E.mem, flags = P.flags;
  const entries = E.entries;
  let ne = 0;
  for (let k = 0; k < n; k++) {
    const f = flags[mem[k]];
    if (f & P_ENTRY && (f & P_DUP) === 0) entries[ne++] = k;
  }
  E.entryCount = ne;
  const gkey = P.gkey, gchk = P.gchk, startUs = P.startUs, endUs = P.endUs;
  // Thread groups: new exits only (a frozen exit keeps the parent it was emitted with).
  for (let k = 0; k < n; k++) {
    const x = mem[k];
    if (flags[x] & (P_ENTRY | P_FROZEN | P_DUP) || gkey[x] < 0) continue;
    let best = -1;
    const xs = startUs[x];
    for (let j = 0; j < ne; j++) {
      const ek = entries[j], e = mem[ek];
      if (gkey[e] !== gkey[x] || gchk[e] !== gchk[x]) continue;
      if (!(xs >= startUs[e] - GROUP_SLACK_US && xs <= endUs[e] + GROUP_SLACK_US)) continue;
      if (best < 0) { best = ek; continue; }
      const b = mem[best];
      if (startUs[e] > startUs[b] || (startUs[e] === startUs[b] && P.idLess(e, b))) best = ek;
    }
    E.parent[k] = best;
  }
  // Sequence numbers: gather every fitting pair and its score.
  const skey = P.skey, reqSeq = P.reqSeq, respSeq = P.respSeq, frozen = P.frozen;
  const srcPort = P.srcPort, dstPort = P.dstPort, srcIpH = P.srcIpH, dstIpH = P.dstIpH;
  for (let k = 0; k < n; k++) {
    const x = mem[k];
    if (flags[x] & P_ENTRY || !seqOpen(P, frozen, x)) continue;
    const xFrozen = (flags[x] & P_FROZEN) !== 0;
    for (let j = 0; j < ne; j++) {
      const ek = entries[j], e = mem[ek];
      if (skey[e] !== skey[x] || ek === k || !seqOpen(P, frozen, e)) continue;
      if (xFrozen && flags[e] & P_FROZEN) continue; // both already emitted: decided then
      if (reqSeq[x] !== reqSeq[e] || respSeq[x] !== respSeq[e]) continue;
      if (!(startUs[e] >= startUs[x] - skewUs && endUs[e] <= endUs[x] + skewUs)) continue;
      let s = 0;
      if (srcPort[x] !== 0 && srcPort[x] === dstPort[e]) s += 2;
      if (dstPort[x] !== 0 && dstPort[x] === srcPort[e]) s += 2;
      if (srcIpH[x] !== 0 && srcIpH[x] === dstIpH[e]) s += 1;
      if (dstIpH[x] !== 0 && dstIpH[x] === srcIpH[e]) s += 1;
      offer(E, k, ek, s);
    }
  }
  let ambiguous = 0;
  for (let k = 0; k < n; k++) {
    if (flags[mem[k]] & P_ENTRY || !E.hasCandidates[k]) continue;
    const e = E.best[k];
    if (!E.bestTie[k] && E.best[e] === k && !E.bestTie[e]) {
      E.parent[e] = k; // a frozen entry keeps its exported parent ''; the link only carries the trace id
      E.seqLinked[e] = 1;
      E.seqLinked[k] = 1;
    } else if (E.bestTie[k] || E.bestTie[e]) ambiguous++;
  }
  breakCycles(P, E);
  return ambiguous;
}

const walk: number[] = [];

/**
 * Parent pointers form a forest unless the agent sent contradictory keys (a thread group
 * reused across a call to itself, say). A cycle is cut at its span with the smallest id, so
 * the cut is the same for every linker.
 */
function breakCycles(P: PendingSpans, E: Emission): void {
  // mark: 0 unvisited, 1 on the current walk, 2 done.
  const mark = E.mark, parent = E.parent, mem = E.mem;
  for (let i = 0; i < E.n; i++) {
    let p = i;
    if (mark[p] !== 0) continue;
    walk.length = 0;
    while (p >= 0 && mark[p] === 0) {
      mark[p] = 1;
      walk.push(p);
      p = parent[p];
    }
    if (p >= 0 && mark[p] === 1) {
      let cut = p;
      for (let q = parent[p]; q !== p; q = parent[q]) if (P.idLess(mem[q], mem[cut])) cut = q;
      const par = parent[cut];
      if ((P.flags[mem[par]] & P_ENTRY) === 0 && P.flags[mem[cut]] & P_ENTRY) { E.seqLinked[par] = 0; E.seqLinked[cut] = 0; }
      parent[cut] = -1;
    }
    for (let j = 0; j < walk.length; j++) mark[walk[j]] = 2;
  }
  walk.length = 0;
}
