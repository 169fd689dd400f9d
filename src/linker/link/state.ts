// JoinState: everything the linking remembers between calls, behind one small interface so
// that several linkers can later share it through a distributed store.
//
// Contract:
// - Pending spans (`spans`, pending.ts): one slot per span waiting in an open cluster, in
//   columns; slots are local to one linker's process (a shared store would hold the same
//   fields by span id).
// - Waiters: for each join key (a thread group or an exchange's sequence numbers) and each
//   side (entry / exit), the pending spans that carry that key, as a list through the
//   slots' gNext / sNext. No decision depends on the order of a list: the joiner only asks
//   "who carries this key", and decides parents from the spans themselves (times, ports,
//   ids) once their cluster is complete.
// - Frozen spans by span id: emitted spans brought back from the late index into an open
//   cluster (a P_FROZEN slot), so that two late spans reaching the same emitted span meet in
//   one cluster.
// - The late index: for each key of an emitted trace, what it resolved to (`LateSpan`: the
//   emitted span, its trace id and sampling decision). A record lives until `expireAtMs`
//   (emission + late_retention) or until the index holds more than `maxKeys` records, oldest
//   first; either way memory is bounded.
// - A shared implementation must make `wait`/`first` and `remember`/`lateGroup`/`lateSeq`
//   linearizable per key; keys are plain numbers (hashes), so they shard well.
// The in-process implementation below is a set of hash tables (./keytable.ts) over the slot
// columns; waiting allocates nothing.
import { hex16 } from './ids.js';
import { KeyTable } from './keytable.js';
import { FLAGS, GNEXT, NONE, P_EMITTED, PendingSpans, SNEXT, W } from './pending.js';

/** The outcome for one emitted trace, shared by every late record of it. */
export interface TraceRef {
  traceId: string;
  ebpfTraceId: string;
  sampled: boolean;
}

/**
 * What the late index remembers of an emitted span: enough to join a span arriving after
 * its trace left (its keys, times and connection) and the trace it went out in.
 * Indexed by group key when it is an entry with a thread group, and by seq key while
 * nothing matched it by sequence numbers.
 */
export interface LateSpan {
  /** the span id's two words (hex16(idA, idB)), int32 */
  idA: number;
  idB: number;
  entry: boolean;
  gkey: number; // -1: no thread group
  gchk: number;
  skey: number; // -1: sequence numbers unusable (0/0)
  reqSeq: number;
  respSeq: number;
  startUs: number;
  endUs: number;
  srcPort: number;
  dstPort: number;
  srcIpH: number;
  dstIpH: number;
  trace: TraceRef;
  /** Matched by sequence numbers (now or when emitted): no longer a seq candidate. */
  seqMatched: boolean;
  expireAtMs: number;
}

/** Which waiter list: thread-group entries/exits, seq-key entries/exits. */
export const G_ENTRY = 0, G_EXIT = 1, S_ENTRY = 2, S_EXIT = 3;
export type WaitTable = 0 | 1 | 2 | 3;

export interface JoinState {
  readonly spans: PendingSpans;
  /** First pending span (slot) waiting on `key`, NONE when none; follow gNext / sNext. */
  first(table: WaitTable, key: number): number;
  wait(table: WaitTable, key: number, slot: number): void;
  /** Drops every span of the key's list whose cluster was emitted (P_EMITTED). */
  unwait(table: WaitTable, key: number): void;

  /** The P_FROZEN slot standing for the emitted span with id (idA, idB), or NONE. */
  frozen(idA: number, idB: number): number;
  addFrozen(slot: number, ls: LateSpan): void;
  removeFrozen(slot: number): void;
  frozenCount(): number;

  lateGroup(key: number): LateSpan | undefined;
  lateSeq(key: number): LateSpan | undefined;
  /** Indexes an emitted span under its keys until `ls.expireAtMs` (copies it: `ls` may be reused). */
  remember(ls: LateSpan): void;
  /** The span was matched by sequence numbers after all: no longer a seq candidate. */
  settle(ls: LateSpan): void;
  /** Forgets records whose time is up. */
  expire(nowMs: number): void;
  lateCount(): number;
}

const F_ENTRY = 1, F_SEQ_MATCHED = 2;

/**
 * The late index in columns: one slot per remembered span in typed arrays (about 76 bytes a
 * record, with the keys' Map entries ~110) instead of one object per span (~250 bytes with
 * its span id string), which at 1,000,000 records was a few hundred MB of old-generation
 * heap for the GC to trace. Records are numbered in emission order (`seq`); slot = seq mod
 * capacity; the capacity doubles on demand up to maxLateKeys. The Maps from key to record
 * hold seq numbers; a LateSpan object is made only when a lookup hits.
 */
function createLateColumns(maxKeys: number) {
  let cap = 0;
  let idA = new Uint32Array(0), idB = new Uint32Array(0);
  let flags = new Uint8Array(0);
  let gkey = new Int32Array(0), gchk = new Int32Array(0), skey = new Int32Array(0);
  let reqSeq = new Uint32Array(0), respSeq = new Uint32Array(0);
  let startUs = new Float64Array(0), endUs = new Float64Array(0), expireAt = new Float64Array(0);
  let srcPort = new Uint16Array(0), dstPort = new Uint16Array(0);
  let srcIpH = new Int32Array(0), dstIpH = new Int32Array(0);
  let trace: (TraceRef | undefined)[] = [];
  let head = 0; // oldest live seq
  let tail = 0; // next seq

  let base = 0; // slot of seq q is (q - base) % cap

  /** A bigger ring: the live records are copied to the start of new arrays (memcpy). */
  function grow(): void {
    const next = Math.min(maxKeys, Math.max(4096, cap * 2));
    const count = tail - head;
    const from = cap === 0 ? 0 : (head - base) % cap;
    const first = Math.min(count, cap - from);
    function move<T extends Uint32Array | Uint8Array | Int32Array | Float64Array | Uint16Array>(old: T, a: T): T {
      if (count > 0) {
        a.set(old.subarray(from, from + first), 0);
        if (count > first) a.set(old.subarray(0, count - first), first);
      }
      return a;
    }
    idA = move(idA, new Uint32Array(next)); idB = move(idB, new Uint32Array(next));
    flags = move(flags, new Uint8Array(next));
    gkey = move(gkey, new Int32Array(next)); gchk = move(gchk, new Int32Array(next)); skey = move(skey, new Int32Array(next));
    reqSeq = move(reqSeq, new Uint32Array(next)); respSeq = move(respSeq, new Uint32Array(next));
    startUs = move(startUs, new Float64Array(next)); endUs = move(endUs, new Float64Array(next)); expireAt = move(expireAt, new Float64Array(next));
    srcPort = move(srcPort, new Uint16Array(next)); dstPort = move(dstPort, new Uint16Array(next));
    srcIpH = move(srcIpH, new Int32Array(next)); dstIpH = move(dstIpH, new Int32Array(next));
    const t: (TraceRef | undefined)[] = new Array(next).fill(undefined);
    for (let k = 0; k < count; k++) t[k] = trace[(from + k) % cap];
    trace = t;
    cap = next;
    base = head;
  }

  const slot = (q: number) => (q - base) % cap;

  return {
    count: () => tail - head,
    oldest: () => head,
    end: () => tail,
    expireAt: (q: number) => expireAt[slot(q)],
    gkeyOf: (q: number) => gkey[slot(q)],
    skeyOf: (q: number) => skey[slot(q)],
    isEntry: (q: number) => (flags[slot(q)] & F_ENTRY) !== 0,
    sameSpan(q: number, a: number, b: number): boolean {
      const i = slot(q);
      return idA[i] === (a >>> 0) && idB[i] === (b >>> 0);
    },
    /** Appends a record; the caller makes room first (count < maxKeys). */
    push(ls: LateSpan): number {
      if (tail - head >= cap) grow();
      const q = tail++;
      const i = slot(q);
      idA[i] = ls.idA; idB[i] = ls.idB;
      flags[i] = (ls.entry ? F_ENTRY : 0) | (ls.seqMatched ? F_SEQ_MATCHED : 0);
      gkey[i] = ls.gkey; gchk[i] = ls.gchk; skey[i] = ls.skey;
      reqSeq[i] = ls.reqSeq; respSeq[i] = ls.respSeq;
      startUs[i] = ls.startUs; endUs[i] = ls.endUs; expireAt[i] = ls.expireAtMs;
      srcPort[i] = ls.srcPort; dstPort[i] = ls.dstPort; srcIpH[i] = ls.srcIpH; dstIpH[i] = ls.dstIpH;
      trace[i] = ls.trace;
      return q;
    },
    /** Forgets the oldest record (its trace reference goes with it). */
    shift(): number {
      const q = head++;
      trace[slot(q)] = undefined;
      return q;
    },
    settle(q: number): void {
      flags[slot(q)] |= F_SEQ_MATCHED;
    },
    /** The record as an object (only when a lookup hits: rare, late spans and key collisions). */
    record(q: number): LateSpan {
      const i = slot(q);
      return {
        idA: idA[i] | 0, idB: idB[i] | 0, entry: (flags[i] & F_ENTRY) !== 0, gkey: gkey[i], gchk: gchk[i], skey: skey[i],
        reqSeq: reqSeq[i], respSeq: respSeq[i], startUs: startUs[i], endUs: endUs[i], srcPort: srcPort[i], dstPort: dstPort[i],
        srcIpH: srcIpH[i], dstIpH: dstIpH[i], trace: trace[i]!, seqMatched: (flags[i] & F_SEQ_MATCHED) !== 0, expireAtMs: expireAt[i],
      };
    },
    /** Drops everything once nothing is live (memory back at idle). */
    reset(): void {
      if (head !== tail || cap === 0) return;
      cap = 0; head = 0; tail = 0; base = 0;
      idA = idB = reqSeq = respSeq = new Uint32Array(0);
      flags = new Uint8Array(0);
      gkey = gchk = skey = srcIpH = dstIpH = new Int32Array(0);
      startUs = endUs = expireAt = new Float64Array(0);
      srcPort = dstPort = new Uint16Array(0);
      trace = [];
    },
  };
}

export function createMemoryJoinState(opts: { maxLateKeys: number }): JoinState {
  const spans = new PendingSpans();
  // key → head slot of the waiter list
  // key → head slot of the waiter list
  const tables: KeyTable[] = [new KeyTable(), new KeyTable(), new KeyTable(), new KeyTable()];
  // Frozen stand-ins by span id (rare: only while late spans join emitted traces).
  const frozenById = new Map<string, number>();
  // key → seq of the record in `late`.
  const lateGroups = new KeyTable();
  const lateSeqs = new KeyTable();
  const late = createLateColumns(opts.maxLateKeys);

  function dropOldest(): void {
    const q = late.shift();
    const g = late.gkeyOf(q), k = late.skeyOf(q);
    if (g >= 0 && lateGroups.get(g, -1) === q) lateGroups.delete(g);
    if (k >= 0 && lateSeqs.get(k, -1) === q) lateSeqs.delete(k);
  }

  return {
    spans,
    first: (t, key) => tables[t].get(key, NONE),
    wait(t, key, slot) {
      const m = tables[t];
      spans.i32[slot * W + (t < S_ENTRY ? GNEXT : SNEXT)] = m.get(key, NONE);
      m.set(key, slot);
    },
    unwait(t, key) {
      const m = tables[t];
      const start = m.get(key, NONE);
      if (start === NONE) return;
      const I = spans.i32;
      const next = t < S_ENTRY ? GNEXT : SNEXT;
      let head = start;
      let prev = NONE;
      for (let q = start; q !== NONE;) {
        const n = I[q * W + next];
        if (I[q * W + FLAGS] & P_EMITTED) {
          if (prev === NONE) head = n;
          else I[prev * W + next] = n;
        } else prev = q;
        q = n;
      }
      if (head === NONE) m.delete(key);
      else if (head !== start) m.set(key, head);
    },

    frozen: (a, b) => frozenById.get(hex16(a, b)) ?? NONE,
    addFrozen(slot, ls) {
      spans.frozen.set(slot, ls);
      frozenById.set(hex16(ls.idA, ls.idB), slot);
    },
    removeFrozen(slot) {
      const ls = spans.frozen.get(slot);
      if (ls === undefined) return;
      const id = hex16(ls.idA, ls.idB);
      if (frozenById.get(id) === slot) frozenById.delete(id);
    },
    frozenCount: () => frozenById.size,

    lateGroup(key) {
      const q = lateGroups.get(key, -1);
      return q < 0 ? undefined : late.record(q);
    },
    lateSeq(key) {
      const q = lateSeqs.get(key, -1);
      return q < 0 ? undefined : late.record(q);
    },
    remember(ls) {
      const byGroup = ls.entry && ls.gkey >= 0;
      const bySeq = ls.skey >= 0 && !ls.seqMatched;
      if ((!byGroup && !bySeq) || opts.maxLateKeys <= 0) return;
      while (late.count() >= opts.maxLateKeys) dropOldest(); // room first: the oldest slot is reused
      const q = late.push(ls);
      if (byGroup) lateGroups.set(ls.gkey, q);
      if (bySeq) lateSeqs.set(ls.skey, q);
    },
    settle(ls) {
      ls.seqMatched = true;
      // The record may be reachable by its seq key, or (replaced there by a colliding key) by
      // its group key only: mark it wherever it is, drop it from the seq index.
      const bySeq = ls.skey >= 0 ? lateSeqs.get(ls.skey, -1) : -1;
      if (bySeq >= 0 && late.sameSpan(bySeq, ls.idA, ls.idB)) {
        late.settle(bySeq);
        lateSeqs.delete(ls.skey);
        return;
      }
      const byGroup = ls.entry && ls.gkey >= 0 ? lateGroups.get(ls.gkey, -1) : -1;
      if (byGroup >= 0 && late.sameSpan(byGroup, ls.idA, ls.idB)) late.settle(byGroup);
    },
    expire(nowMs) {
      while (late.count() > 0 && late.expireAt(late.oldest()) <= nowMs) dropOldest();
      late.reset();
    },
    lateCount: () => late.count(),
  };
}
