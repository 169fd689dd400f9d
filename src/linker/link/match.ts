// Deciding parents inside one cluster, at emission time, from the spans alone. Because the
// decision looks at the whole cluster at once (never "whoever arrived first"), two linkers
// holding the same spans decide the same parents whatever the arrival order.
//
// - Thread group: an exit's parent is the entry of its group (host, pid, thread group) whose
//   time contains the exit's start (±GROUP_SLACK_US, one clock: same host); among several,
//   the latest-starting one (the innermost), ties by span id. An entry that had already
//   finished is never a parent (DataKit's §3.2).
// - Sequence numbers: an exit and an entry that can be the two ends of one exchange (seqPair:
//   equal reqSeq, equal respSeq unless the client read no answer, times that fit) are
//   candidates. Score: 2 per port that agrees crosswise (exit.srcPort = entry.dstPort,
//   exit.dstPort = entry.srcPort), 1 per address that agrees crosswise; 0 / '' never agree.
//   A pair links when each is the other's unique best. A tie on either side leaves it
//   unlinked and is counted as an ambiguous match.
//
// The members of the cluster being emitted are numbered 0..n-1 (`Emission.mem[k]` is the
// slot of member k, PendingSpans.pos[slot] = k) and what the emission works out for them
// (parent, best candidate, depth, root, trace) lives in the Emission's columns by that
// number: one scratch reused for every cluster, nothing carried by a pending span.
import { DST_IPH, DST_PORT, DW, END, FLAGS, GCHK, GKEY, P_DUP, P_ENTRY, P_FROZEN, P_KEEP_S, REQ, RESP, SKEY, SRC_IPH, SRC_PORT, START, W, type PendingSpans } from './pending.js';
import type { TraceRef } from './state.js';

export const GROUP_SLACK_US = 1000;

/** An exit starting at exitStartUs lies within its thread group's entry (one host, one clock: ±GROUP_SLACK_US). */
export function groupContains(entryStartUs: number, entryEndUs: number, exitStartUs: number): boolean {
  return exitStartUs >= entryStartUs - GROUP_SLACK_US && exitStartUs <= entryEndUs + GROUP_SLACK_US;
}

/**
 * Can an exit and an entry be the two ends of one exchange? The same request (reqSeq); the
 * same answer (respSeq), unless the client read none (respSeq 0: it gave up, timed out or lost
 * its connection first, while the server may have answered after); and times that fit, each
 * end widened by the clock skew (two hosts): the entry lies within the exit, or, when the client
 * read no answer, the entry began before the client gave up (the server may finish later).
 * Not both seqs 0 (the callers look only at spans with a seq key).
 */
export function seqPair(
  exitReq: number, exitResp: number, exitStartUs: number, exitEndUs: number,
  entryReq: number, entryResp: number, entryStartUs: number, entryEndUs: number, skewUs: number,
): boolean {
  if (exitReq !== entryReq || entryStartUs < exitStartUs - skewUs) return false;
  if (exitResp === 0) return entryStartUs <= exitEndUs + skewUs;
  return exitResp === entryResp && entryEndUs <= exitEndUs + skewUs;
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
  }

  /** Holds no trace between clusters. */
  end(): void {
    this.tref.fill(null, 0, this.n);
  }
}

/**
 * Can slot s still be matched by sequence numbers? A frozen (emitted) span only while no
 * match took it (it is still kept by its exchange).
 */
function seqOpen(P: PendingSpans, s: number): boolean {
  const f = P.i32[s * W + FLAGS];
  if (f & P_DUP || P.i32[s * W + SKEY] < 0) return false;
  return (f & P_FROZEN) === 0 || (f & P_KEEP_S) !== 0;
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
  const n = E.n, mem = E.mem, I = P.i32, D = P.f64;
  const entries = E.entries;
  let ne = 0;
  for (let k = 0; k < n; k++) {
    const f = I[mem[k] * W + FLAGS];
    if (f & P_ENTRY && (f & P_DUP) === 0) entries[ne++] = k;
  }
  // Thread groups: new exits only (a frozen exit keeps the parent it was emitted with).
  for (let k = 0; k < n; k++) {
    const x = mem[k] * W;
    if (I[x + FLAGS] & (P_ENTRY | P_FROZEN | P_DUP) || I[x + GKEY] < 0) continue;
    let best = -1, bestStart = 0;
    const xs = D[mem[k] * DW + START];
    for (let j = 0; j < ne; j++) {
      const ek = entries[j], e = mem[ek];
      if (I[e * W + GKEY] !== I[x + GKEY] || I[e * W + GCHK] !== I[x + GCHK]) continue;
      const es = D[e * DW + START];
      if (!groupContains(es, D[e * DW + END], xs)) continue;
      if (best < 0 || es > bestStart || (es === bestStart && P.idLess(e, mem[best]))) { best = ek; bestStart = es; }
    }
    E.parent[k] = best;
  }
  // Sequence numbers: gather every fitting pair and its score.
  for (let k = 0; k < n; k++) {
    const xs = mem[k], x = xs * W;
    if (I[x + FLAGS] & P_ENTRY || !seqOpen(P, xs)) continue;
    const xFrozen = (I[x + FLAGS] & P_FROZEN) !== 0;
    const xStart = D[xs * DW + START], xEnd = D[xs * DW + END];
    for (let j = 0; j < ne; j++) {
      const ek = entries[j], es = mem[ek], e = es * W;
      if (I[e + SKEY] !== I[x + SKEY] || ek === k || !seqOpen(P, es)) continue;
      if (xFrozen && I[e + FLAGS] & P_FROZEN) continue; // both already emitted: decided then
      if (!seqPair(I[x + REQ], I[x + RESP], xStart, xEnd, I[e + REQ], I[e + RESP], D[es * DW + START], D[es * DW + END], skewUs)) continue;
      let sc = 0;
      if (I[x + SRC_PORT] !== 0 && I[x + SRC_PORT] === I[e + DST_PORT]) sc += 2;
      if (I[x + DST_PORT] !== 0 && I[x + DST_PORT] === I[e + SRC_PORT]) sc += 2;
      if (I[x + SRC_IPH] !== 0 && I[x + SRC_IPH] === I[e + DST_IPH]) sc += 1;
      if (I[x + DST_IPH] !== 0 && I[x + DST_IPH] === I[e + SRC_IPH]) sc += 1;
      offer(E, k, ek, sc);
    }
  }
  let ambiguous = 0;
  for (let k = 0; k < n; k++) {
    if (I[mem[k] * W + FLAGS] & P_ENTRY || !E.hasCandidates[k]) continue;
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
      if ((P.i32[mem[par] * W + FLAGS] & P_ENTRY) === 0 && P.i32[mem[cut] * W + FLAGS] & P_ENTRY) { E.seqLinked[par] = 0; E.seqLinked[cut] = 0; }
      parent[cut] = -1;
    }
    for (let j = 0; j < walk.length; j++) mark[walk[j]] = 2;
  }
  walk.length = 0;
}
