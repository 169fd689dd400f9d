// JoinState: everything the linking remembers between calls, behind one small interface so
// that several linkers can later share it through a distributed store.
//
// Contract:
// - Pending spans by span id: the spans (new and frozen) held in open clusters.
// - Waiters: for each join key (a thread group or an exchange's sequence numbers) and each
//   side (entry / exit), the pending spans that carry that key. Lists keep insertion order,
//   but no decision depends on that order: the joiner only asks "who carries this key", and
//   decides parents from the spans themselves (times, ports, ids).
// - The late index: for each key of an emitted trace, what it resolved to (`LateSpan`: the
//   emitted span, its trace id and sampling decision). A record lives until `expireAtMs`
//   (emission + late_retention) or until the index holds more than `maxKeys` records, oldest
//   first; either way memory is bounded.
// - A shared implementation must make `wait`+`waiters` and `remember`+`lateGroup`/`lateSeq`
//   linearizable per key; keys are plain numbers so they shard well.
// The in-process implementation below is a set of Maps.
import type { LateSpan, PendingSpan } from './node.js';

/** Which waiter list: thread-group entries/exits, seq-key entries/exits. */
export const G_ENTRY = 0, G_EXIT = 1, S_ENTRY = 2, S_EXIT = 3;
export type WaitTable = 0 | 1 | 2 | 3;

export interface JoinState {
  pending(spanId: string): PendingSpan | undefined;
  addPending(p: PendingSpan): void;
  removePending(p: PendingSpan): void;
  pendingCount(): number;

  waiters(table: WaitTable, key: number): PendingSpan[] | undefined;
  wait(table: WaitTable, key: number, p: PendingSpan): void;
  /** Drops every emitted span (`isDone`) from the key's list. */
  unwait(table: WaitTable, key: number, isDone: (p: PendingSpan) => boolean): void;

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
  const pendingById = new Map<string, PendingSpan>();
  const tables: Map<number, PendingSpan[]>[] = [new Map(), new Map(), new Map(), new Map()];
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
    if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
  }

  return {
    pending: (id) => pendingById.get(id),
    addPending: (p) => void pendingById.set(p.spanId, p),
    removePending(p) {
      if (pendingById.get(p.spanId) === p) pendingById.delete(p.spanId);
    },
    pendingCount: () => pendingById.size,

    waiters: (t, key) => tables[t].get(key),
    wait(t, key, p) {
      const m = tables[t];
      const list = m.get(key);
      if (list === undefined) m.set(key, [p]);
      else list.push(p);
    },
    unwait(t, key, isDone) {
      const m = tables[t];
      const list = m.get(key);
      if (list === undefined) return;
      let j = 0;
      for (let i = 0; i < list.length; i++) if (!isDone(list[i])) list[j++] = list[i];
      if (j === 0) m.delete(key);
      else list.length = j;
    },

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
