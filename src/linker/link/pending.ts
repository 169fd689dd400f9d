// The spans waiting in open clusters, one slot each in typed-array columns: no object per
// span, so the ~2 million spans pending at 100,000 spans/s × 22 s cost the garbage collector
// nothing to copy or trace (one object per span, ~400 bytes with its fields, was most of the
// linker's GC work and heap growth). A slot holds only what linking, ids and sampling need
// (JoinBatch's fields, see fields.ts) plus the links that put it in its cluster's member list
// and in the waiter lists of its keys; the span itself is decoded again from its batch when
// its trace is kept.
//
// Slots are reused through a free list. Columns are replaced when they grow: callers reserve
// room before a step that allocates (reserve), and must not keep a column across a reserve.
import type { EbpfSpan } from '../../span/span.js';
import type { LateSpan } from './state.js';

/** flags bits (F_ENTRY and F_ERROR are fields.ts's) */
export const P_ENTRY = 1, P_ERROR = 2;
/** A stand-in for an already emitted span, brought back from the late index (see `frozen`). */
export const P_FROZEN = 4;
/** The same span as slot dupOf (a resent batch): linked like it, never a candidate. */
export const P_DUP = 8;
/** Its cluster was emitted: waiter lists drop it (JoinState.unwait). */
export const P_EMITTED = 16;

/** No slot / no cluster. */
export const NONE = -1;

export class PendingSpans {
  cap = 0;
  /** Slots in use. */
  used = 0;
  private freeList = new Int32Array(0);
  private freeCount = 0;
  private top = 0; // slots [0, top) have been handed out at least once

  idA = new Int32Array(0);
  idB = new Int32Array(0);
  idC = new Int32Array(0);
  idD = new Int32Array(0);
  gkey = new Int32Array(0);
  gchk = new Int32Array(0);
  skey = new Int32Array(0);
  reqSeq = new Uint32Array(0);
  respSeq = new Uint32Array(0);
  startUs = new Float64Array(0);
  endUs = new Float64Array(0);
  srcPort = new Uint16Array(0);
  dstPort = new Uint16Array(0);
  srcIpH = new Int32Array(0);
  dstIpH = new Int32Array(0);
  flags = new Uint8Array(0);
  appSampled = new Int8Array(0);
  /** normalised app trace id, four words per slot (all 0: none) */
  app = new Uint32Array(0);
  batchId = new Int32Array(0);
  /** where the span is in its batch; -1 when the span is held whole (`held`) */
  loc = new Int32Array(0);
  cluster = new Int32Array(0);
  /** next member of the same cluster */
  mNext = new Int32Array(0);
  /** next waiter on the same group key / seq key */
  gNext = new Int32Array(0);
  sNext = new Int32Array(0);
  /** P_DUP: the slot this one repeats */
  dupOf = new Int32Array(0);
  /** scratch of the emission: the slot's position among the members being emitted */
  pos = new Int32Array(0);

  /** Spans added whole (Joiner.add without a loc: tests, direct callers), by slot. */
  readonly held = new Map<number, EbpfSpan>();
  /** P_FROZEN slots: the late-index record each stands for. */
  readonly frozen = new Map<number, LateSpan>();

  constructor(capacity = 4096) {
    this.grow(capacity);
  }

  /** Room for `n` more slots without growing (so columns held in locals stay valid meanwhile). */
  reserve(n: number): void {
    if (this.used + n > this.cap) this.grow(Math.max(this.used + n, Math.ceil(this.cap * 1.5)));
  }

  /** A slot; its fields hold whatever its last user left: set every one. */
  alloc(): number {
    if (this.freeCount > 0) {
      this.used++;
      return this.freeList[--this.freeCount];
    }
    if (this.top === this.cap) this.grow(Math.ceil(this.cap * 1.5));
    this.used++;
    return this.top++;
  }

  free(slot: number): void {
    if (this.flags[slot] & P_FROZEN) this.frozen.delete(slot);
    if (this.loc[slot] < 0) this.held.delete(slot);
    this.flags[slot] = 0;
    this.freeList[this.freeCount++] = slot;
    this.used--;
  }

  /** (idA, idB) of a before b's as unsigned words: the order of their hex span ids. */
  idLess(a: number, b: number): boolean {
    const x = this.idA[a] >>> 0, y = this.idA[b] >>> 0;
    return x < y || (x === y && this.idB[a] >>> 0 < this.idB[b] >>> 0);
  }

  sameId(a: number, b: number): boolean {
    return this.idA[a] === this.idA[b] && this.idB[a] === this.idB[b];
  }

  /** Bytes of the columns (for the heap figures). */
  bytes(): number {
    return this.cap * BYTES_PER_SLOT;
  }

  private grow(cap: number): void {
    const n = this.top;
    const g = <T extends Int32Array | Uint32Array | Float64Array | Uint16Array | Uint8Array | Int8Array>(a: T, make: (k: number) => T, per = 1): T => {
      const b = make(cap * per);
      b.set(a.subarray(0, n * per));
      return b;
    };
    const i32 = (k: number) => new Int32Array(k), u32 = (k: number) => new Uint32Array(k), f64 = (k: number) => new Float64Array(k);
    this.idA = g(this.idA, i32); this.idB = g(this.idB, i32); this.idC = g(this.idC, i32); this.idD = g(this.idD, i32);
    this.gkey = g(this.gkey, i32); this.gchk = g(this.gchk, i32); this.skey = g(this.skey, i32);
    this.reqSeq = g(this.reqSeq, u32); this.respSeq = g(this.respSeq, u32);
    this.startUs = g(this.startUs, f64); this.endUs = g(this.endUs, f64);
    this.srcPort = g(this.srcPort, (k) => new Uint16Array(k)); this.dstPort = g(this.dstPort, (k) => new Uint16Array(k));
    this.srcIpH = g(this.srcIpH, i32); this.dstIpH = g(this.dstIpH, i32);
    this.flags = g(this.flags, (k) => new Uint8Array(k)); this.appSampled = g(this.appSampled, (k) => new Int8Array(k));
    this.app = g(this.app, u32, 4);
    this.batchId = g(this.batchId, i32); this.loc = g(this.loc, i32); this.cluster = g(this.cluster, i32);
    this.mNext = g(this.mNext, i32); this.gNext = g(this.gNext, i32); this.sNext = g(this.sNext, i32);
    this.dupOf = g(this.dupOf, i32); this.pos = g(this.pos, i32);
    const free = new Int32Array(cap);
    free.set(this.freeList.subarray(0, this.freeCount));
    this.freeList = free;
    this.cap = cap;
  }
}

/** Column bytes per slot (the free list included). */
export const BYTES_PER_SLOT = 4 * 4 + 3 * 4 + 2 * 4 + 2 * 8 + 2 * 2 + 2 * 4 + 1 + 1 + 16 + 3 * 4 + 3 * 4 + 4 + 4 + 4;
