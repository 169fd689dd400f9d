// JoinState: everything the linking remembers between calls, behind one small interface so
// that several linkers can later share it through a distributed store.
//
// Contract:
// - Span records (`spans`, pending.ts): one slot per span waiting in an open cluster, and per
//   emitted span kept for late spans (retained, below); slots are local to one linker's
//   process (a shared store would hold the same fields by span id).
// - Waiters: for each join key (a thread group or an exchange's sequence numbers) and each
//   side (entry / exit), the spans that carry that key, as a list through the records'
//   GNEXT / SNEXT: pending spans, and retained ones. No decision depends on the order of a
//   list: the joiner only asks "who carries this key", and decides parents from the spans
//   themselves (times, ports, ids) once their cluster is complete.
// - Retained spans (the late index): an emitted span a late span could still join stays in
//   the lists of the keys it is kept for (an entry by its thread group; a span no sequence
//   number match took, by its exchange) with the trace it went out in, until `expireAtMs`
//   (emission + late_retention) or until more than `maxKeys` are retained, oldest first:
//   memory is bounded either way. Keeping the emitted record where it already is costs
//   nothing at emission; a separate index cost a hash insert, an eviction and a lookup per
//   span, each a cache miss.
// - A shared implementation must make `wait`/`first` linearizable per key; keys are plain
//   numbers (hashes), so they shard well.
// The in-process implementation below is a set of hash tables (./keytable.ts) over the
// records; waiting allocates nothing.
import { KeyTable } from './keytable.js';
import {
  FLAGS, GKEY, GNEXT, NONE, P_EMITTED, P_ENTRY, P_EXPIRED, P_FROZEN, P_KEEP_G, P_KEEP_S, P_RETAINED, PendingSpans, SKEY, SNEXT, W,
} from './pending.js';

/** The outcome for one emitted trace, shared by its retained spans. */
export interface TraceRef {
  traceId: string;
  ebpfTraceId: string;
  sampled: boolean;
}

/** Which waiter list: thread-group entries/exits, seq-key entries/exits. */
export const G_ENTRY = 0, G_EXIT = 1, S_ENTRY = 2, S_EXIT = 3;
export type WaitTable = 0 | 1 | 2 | 3;

export interface JoinState {
  readonly spans: PendingSpans;
  /** First span (slot) listed under `key`, NONE when none; follow GNEXT / SNEXT. */
  first(table: WaitTable, key: number): number;
  wait(table: WaitTable, key: number, slot: number): void;
  /** Drops from the key's list every emitted span not kept there (P_KEEP_G / P_KEEP_S). */
  unwait(table: WaitTable, key: number): void;
  /**
   * Keeps the emitted span `slot` (its keep bits set) for late spans until `expireAtMs`, with
   * the trace it went out in. The oldest retained spans go first beyond the maximum.
   */
  retain(slot: number, trace: TraceRef, expireAtMs: number): void;
  /** Pulls the retained `slot` into an open cluster (a late span joins it): frozen until that cluster is emitted. */
  freeze(slot: number): void;
  /**
   * The frozen `slot`'s cluster was emitted: retained again (no longer by its exchange when
   * `settled`: a sequence-number match took it), or released if its time ran out meanwhile.
   */
  thaw(slot: number, settled: boolean): void;
  /** Releases the retained spans whose time is up (out of their lists, slots freed). */
  expire(nowMs: number): void;
  /** Retained spans. */
  lateCount(): number;
  /** Retained spans pulled into open clusters (frozen). */
  frozenCount(): number;
}

/** Which list of `table` a slot's link is in. */
const nextOf = (t: WaitTable) => (t < S_ENTRY ? GNEXT : SNEXT);

export function createMemoryJoinState(opts: { maxLateKeys: number }): JoinState {
  const spans = new PendingSpans();
  // key → head slot of the list
  const tables: KeyTable[] = [new KeyTable(), new KeyTable(), new KeyTable(), new KeyTable()];
  // Retained slots in emission order with their expiry: a ring.
  let ringSlot = new Int32Array(1024);
  let ringAt = new Float64Array(1024);
  let head = 0;
  let count = 0;

  function pushRing(slot: number, at: number): void {
    if (count === ringSlot.length) {
      const cap = ringSlot.length * 2;
      const s = new Int32Array(cap), a = new Float64Array(cap);
      for (let i = 0; i < count; i++) {
        const j = (head + i) & (ringSlot.length - 1);
        s[i] = ringSlot[j];
        a[i] = ringAt[j];
      }
      ringSlot = s;
      ringAt = a;
      head = 0;
    }
    const j = (head + count) & (ringSlot.length - 1);
    ringSlot[j] = slot;
    ringAt[j] = at;
    count++;
  }

  function popRing(): number {
    const slot = ringSlot[head];
    head = (head + 1) & (ringSlot.length - 1);
    count--;
    return slot;
  }

  function unwait(t: WaitTable, key: number): void {
    const m = tables[t];
    const start = m.get(key, NONE);
    if (start === NONE) return;
    const I = spans.i32;
    const next = nextOf(t);
    const keep = t < S_ENTRY ? P_KEEP_G : P_KEEP_S;
    let first = start;
    let prev = NONE;
    for (let q = start; q !== NONE;) {
      const n = I[q * W + next];
      const f = I[q * W + FLAGS];
      if (f & P_EMITTED && (f & keep) === 0) {
        if (prev === NONE) first = n;
        else I[prev * W + next] = n;
      } else prev = q;
      q = n;
    }
    if (first === NONE) m.delete(key);
    else if (first !== start) m.set(key, first);
  }

  /** Out of its lists and freed; a frozen slot is marked and freed when it thaws. */
  function release(slot: number): void {
    const I = spans.i32, b = slot * W;
    const f = I[b + FLAGS];
    if (f & P_FROZEN) {
      I[b + FLAGS] = f | P_EXPIRED;
      return;
    }
    I[b + FLAGS] = (f & ~(P_KEEP_G | P_KEEP_S | P_RETAINED)) | P_EMITTED;
    const entry = (f & P_ENTRY) !== 0;
    if (f & P_KEEP_G) unwait(entry ? G_ENTRY : G_EXIT, I[b + GKEY]);
    if (f & P_KEEP_S) unwait(entry ? S_ENTRY : S_EXIT, I[b + SKEY]);
    spans.free(slot);
  }

  let frozen = 0;

  return {
    spans,
    first: (t, key) => tables[t].get(key, NONE),
    wait(t, key, slot) {
      const m = tables[t];
      spans.i32[slot * W + nextOf(t)] = m.get(key, NONE);
      m.set(key, slot);
    },
    unwait,
    retain(slot, trace, expireAtMs) {
      if (opts.maxLateKeys <= 0) return;
      while (count >= opts.maxLateKeys) release(popRing()); // room first
      spans.i32[slot * W + FLAGS] |= P_RETAINED;
      spans.trace[slot] = trace;
      pushRing(slot, expireAtMs);
    },
    freeze(slot) {
      spans.i32[slot * W + FLAGS] |= P_FROZEN;
      frozen++;
    },
    thaw(slot, settled) {
      const I = spans.i32, b = slot * W;
      let f = I[b + FLAGS] & ~P_FROZEN;
      frozen--;
      if (settled && f & P_KEEP_S) {
        f &= ~P_KEEP_S;
        I[b + FLAGS] = f;
        unwait(f & P_ENTRY ? S_ENTRY : S_EXIT, I[b + SKEY]);
      }
      I[b + FLAGS] = f & ~P_EXPIRED;
      if (f & P_EXPIRED) release(slot);
    },
    expire(nowMs) {
      while (count > 0 && ringAt[head] <= nowMs) release(popRing());
      if (count === 0 && ringSlot.length > 1024) {
        ringSlot = new Int32Array(1024);
        ringAt = new Float64Array(1024);
        head = 0;
      }
    },
    lateCount: () => count,
    frozenCount: () => frozen,
  };
}
