// JoinState: everything the linking remembers between calls, behind one small interface so
// that several linkers can later share it through a distributed store.
//
// Contract:
// - Waiters: for each join key (a thread group or an exchange's sequence numbers) and each
//   side (entry / exit), the pending spans that carry that key. No decision depends on the
//   order of a list: the joiner only asks "who carries this key", and decides parents from
//   the spans themselves (times, ports, ids) once their cluster is complete.
// - Frozen spans by span id: emitted spans brought back from the late index into an open
//   cluster, so that two late spans reaching the same emitted span meet in one cluster.
// - The late index: for each key of an emitted trace, what it resolved to (`LateSpan`: the
//   emitted span, its trace id and sampling decision). A record lives until `expireAtMs`
//   (emission + late_retention) or until the index holds more than `maxKeys` records, oldest
//   first; either way memory is bounded.
// - A shared implementation must make `wait`/`first` and `remember`/`lateGroup`/`lateSeq`
//   linearizable per key; keys are plain numbers (hashes), so they shard well.
// The in-process implementation below is a set of Maps; waiter lists are intrusive (each
// pending span carries the link to the next waiter on its group key and on its seq key), so
// waiting allocates nothing.
import type { LateSpan, PendingSpan } from './node.js';

/** Which waiter list: thread-group entries/exits, seq-key entries/exits. */
export const G_ENTRY = 0, G_EXIT = 1, S_ENTRY = 2, S_EXIT = 3;
export type WaitTable = 0 | 1 | 2 | 3;

/** The waiter after `p` in a list of `table`. */
export function nextWaiter(table: WaitTable, p: PendingSpan): PendingSpan | null {
  return table < S_ENTRY ? p.gNext : p.sNext;
}

export interface JoinState {
  /** First pending span waiting on `key`; follow with nextWaiter(). */
  first(table: WaitTable, key: number): PendingSpan | undefined;
  wait(table: WaitTable, key: number, p: PendingSpan): void;
  /** Drops every span of the key's list whose cluster was emitted. */
  unwait(table: WaitTable, key: number): void;

  frozen(spanId: string): PendingSpan | undefined;
  addFrozen(p: PendingSpan): void;
  removeFrozen(p: PendingSpan): void;
  frozenCount(): number;

  lateGroup(key: number): LateSpan | undefined;
  lateSeq(key: number): LateSpan | undefined;
  /** Indexes an emitted span under its keys until `ls.expireAtMs`. */
  remember(ls: LateSpan): void;
  /** The span was matched by sequence numbers after all: no longer a seq candidate. */
  settle(ls: LateSpan): void;
  /** Forgets records whose time is up. */
  expire(nowMs: number): void;
  lateCount(): number;
}

export function createMemoryJoinState(opts: { maxLateKeys: number }): JoinState {
  const tables: Map<number, PendingSpan>[] = [new Map(), new Map(), new Map(), new Map()];
  const frozenById = new Map<string, PendingSpan>();
  const lateGroups = new Map<number, LateSpan>();
  const lateSeqs = new Map<number, LateSpan>();
  // Records in emission order: expiry times only grow, so the oldest is always first.
  let queue: LateSpan[] = [];
  let head = 0;

  function drop(ls: LateSpan): void {
    if (ls.gkey >= 0 && lateGroups.get(ls.gkey) === ls) lateGroups.delete(ls.gkey);
    if (ls.skey >= 0 && lateSeqs.get(ls.skey) === ls) lateSeqs.delete(ls.skey);
  }

  function compact(): void {
    if (head > 4096 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
  }

  return {
    first: (t, key) => tables[t].get(key),
    wait(t, key, p) {
      const m = tables[t];
      const head = m.get(key);
      if (t < S_ENTRY) p.gNext = head ?? null;
      else p.sNext = head ?? null;
      m.set(key, p);
    },
    unwait(t, key) {
      const m = tables[t];
      const g = t < S_ENTRY;
      let headP: PendingSpan | null = m.get(key) ?? null;
      if (headP === null) return;
      let prev: PendingSpan | null = null;
      const start = headP;
      for (let q: PendingSpan | null = headP; q !== null;) {
        const next: PendingSpan | null = g ? q.gNext : q.sNext;
        if (!q.cluster!.alive) {
          if (prev === null) headP = next;
          else if (g) prev.gNext = next;
          else prev.sNext = next;
        } else prev = q;
        q = next;
      }
      if (headP === null) m.delete(key);
      else if (headP !== start) m.set(key, headP);
    },

    frozen: (id) => frozenById.get(id),
    addFrozen: (p) => void frozenById.set(p.spanId, p),
    removeFrozen(p) {
      if (frozenById.get(p.spanId) === p) frozenById.delete(p.spanId);
    },
    frozenCount: () => frozenById.size,

    lateGroup: (key) => lateGroups.get(key),
    lateSeq: (key) => lateSeqs.get(key),
    remember(ls) {
      let indexed = false;
      if (ls.entry && ls.gkey >= 0) {
        lateGroups.set(ls.gkey, ls);
        indexed = true;
      }
      if (ls.skey >= 0 && !ls.seqMatched) {
        lateSeqs.set(ls.skey, ls);
        indexed = true;
      }
      if (!indexed) return;
      queue.push(ls);
      while (queue.length - head > opts.maxLateKeys) drop(queue[head++]);
      compact();
    },
    settle(ls) {
      ls.seqMatched = true;
      if (ls.skey >= 0 && lateSeqs.get(ls.skey) === ls) lateSeqs.delete(ls.skey);
    },
    expire(nowMs) {
      while (head < queue.length && queue[head].expireAtMs <= nowMs) drop(queue[head++]);
      if (head === queue.length) {
        queue = [];
        head = 0;
      } else compact();
    },
    lateCount: () => queue.length - head,
  };
}
