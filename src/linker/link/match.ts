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
import { newResolution, NO_RESOLUTION, type PendingSpan, type Resolution } from './node.js';

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

function score(x: PendingSpan, e: PendingSpan): number {
  let s = 0;
  if (x.srcPort !== 0 && x.srcPort === e.dstPort) s += 2;
  if (x.dstPort !== 0 && x.dstPort === e.srcPort) s += 2;
  if (x.srcIpH !== 0 && x.srcIpH === e.dstIpH) s += 1;
  if (x.dstIpH !== 0 && x.dstIpH === e.srcIpH) s += 1;
  return s;
}

/** Can `p` still take a parent / be matched? Frozen spans keep what they were emitted with. */
function seqOpen(p: PendingSpan): boolean {
  return p.dupOf === null && p.skey >= 0 && (p.frozen === null || !p.frozen.seqMatched);
}

function offer(x: PendingSpan, e: PendingSpan, s: number): void {
  x.res.hasCandidates = true;
  if (s > x.res.bestScore) { x.res.best = e; x.res.bestScore = s; x.res.bestTie = false; } else if (s === x.res.bestScore) x.res.bestTie = true;
  if (s > e.res.bestScore) { e.res.best = x; e.res.bestScore = s; e.res.bestTie = false; } else if (s === e.res.bestScore) e.res.bestTie = true;
}

/**
 * Sets `parent` (and `seqLinked`) on the members of a cluster. Returns how many exits were
 * left unlinked because of a tie.
 */
const entries: PendingSpan[] = [];
const walk: PendingSpan[] = [];
/**
 * Resolutions lent to the members of the cluster being emitted (members[i].res = lent[i]),
 * reused for the next cluster: one cluster is resolved and emitted at a time, and nothing
 * reads a member's resolution after its emission. Allocating one per member cost ~1 µs a span.
 */
const lent: Resolution[] = [];

export function resolveParents(members: PendingSpan[], skewUs: number): number {
  entries.length = 0;
  for (let i = 0; i < members.length; i++) {
    const p = members[i];
    let r = lent[i];
    if (r === undefined) lent[i] = r = newResolution();
    else {
      r.parent = null; r.seqLinked = false; r.best = null; r.bestScore = -1; r.bestTie = false;
      r.hasCandidates = false; r.mark = 0; r.depth = -1; r.root = null; r.tref = null;
    }
    p.res = r;
    if (p.entry && p.dupOf === null) entries.push(p);
  }
  const exitsAndEntries = entries.length;
  // Thread groups: new exits only (a frozen exit keeps the parent it was emitted with).
  for (let i = 0; i < members.length; i++) {
    const x = members[i];
    if (x.entry || x.gkey < 0 || x.frozen !== null || x.dupOf !== null) continue;
    let best: PendingSpan | null = null;
    for (let j = 0; j < exitsAndEntries; j++) {
      const e = entries[j];
      if (e.gkey !== x.gkey || e.gchk !== x.gchk || !groupContains(e, x)) continue;
      if (best === null || e.startUs > best.startUs || (e.startUs === best.startUs && e.spanId < best.spanId)) best = e;
    }
    x.res.parent = best;
  }
  // Sequence numbers: gather every fitting pair and its score.
  for (let i = 0; i < members.length; i++) {
    const x = members[i];
    if (x.entry || !seqOpen(x)) continue;
    for (let j = 0; j < exitsAndEntries; j++) {
      const e = entries[j];
      if (e.skey !== x.skey || !seqOpen(e) || e === x) continue;
      if (x.frozen !== null && e.frozen !== null) continue; // both already emitted: decided then
      if (!seqFits(x, e, skewUs)) continue;
      offer(x, e, score(x, e));
    }
  }
  let ambiguous = 0;
  for (let i = 0; i < members.length; i++) {
    const x = members[i];
    if (x.entry || !x.res.hasCandidates) continue;
    const e = x.res.best!;
    if (!x.res.bestTie && e.res.best === x && !e.res.bestTie) {
      e.res.parent = x; // a frozen entry keeps its exported parent ''; the link only carries the trace id
      e.res.seqLinked = true;
      x.res.seqLinked = true;
    } else if (x.res.bestTie || e.res.bestTie) ambiguous++;
  }
  breakCycles(members);
  entries.length = 0; // hold no spans between calls
  return ambiguous;
}

/**
 * Parent pointers form a forest unless the agent sent contradictory keys (a thread group
 * reused across a call to itself, say). A cycle is cut at its span with the smallest id, so
 * the cut is the same for every linker.
 */
function breakCycles(members: PendingSpan[]): void {
  // mark: 0 unvisited, 1 on the current walk, 2 done.
  for (let i = 0; i < members.length; i++) {
    let p: PendingSpan | null = members[i];
    if (p.res.mark !== 0) continue;
    walk.length = 0;
    while (p !== null && p.res.mark === 0) {
      p.res.mark = 1;
      walk.push(p);
      p = p.res.parent;
    }
    if (p !== null && p.res.mark === 1) {
      let cut = p;
      for (let q = p.res.parent!; q !== p; q = q.res.parent!) if (q.spanId < cut.spanId) cut = q;
      if (cut.res.parent!.entry === false && cut.entry) { cut.res.parent!.res.seqLinked = false; cut.res.seqLinked = false; }
      cut.res.parent = null;
    }
    for (let j = 0; j < walk.length; j++) walk[j].res.mark = 2;
  }
  walk.length = 0;
}

/**
 * After the emission of `members` (resolveParents, then emitCluster): their resolutions go
 * back to be lent again, holding no spans in between.
 */
export function releaseResolutions(members: PendingSpan[]): void {
  for (let i = 0; i < members.length; i++) {
    const r = members[i].res;
    r.parent = null; r.best = null; r.root = null; r.tref = null;
    members[i].res = NO_RESOLUTION;
  }
}
