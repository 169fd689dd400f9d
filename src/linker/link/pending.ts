// The spans waiting in open clusters: one fixed-size record per span (a slot) in one
// ArrayBuffer. No object per span, so the ~2 million spans pending at 100,000 spans/s × 22 s
// cost the garbage collector nothing to copy or trace (one object per span, ~400 bytes with
// its fields, was most of the linker's GC work and heap growth). A record holds only what
// linking, ids and sampling need (JoinBatch's fields, see fields.ts) plus the links that put
// it in its cluster's member list and in the waiter lists of its keys; the span itself is
// decoded again from its batch when its trace is kept.
//
// Record, not columns: the joiner touches a span's fields together, at random slots (a
// cluster's members, a key's waiters), so all of them sit in 128 bytes, two cache lines; with
// one typed array per field (tried first) every span touched cost a cache miss per field.
// Fields are read and written through two views of the buffer:
//   doubles: P.f64[s * DW + START]     int32s: P.i32[s * W + GKEY]
// Slots are reused through a free list. The buffer is replaced when it grows: callers
// reserve room before a step that allocates (reserve), and must not keep a view across it.
import type { EbpfSpan } from '../../span/span.js';
import type { TraceRef } from './state.js';

/** int32 words per record (128 bytes) */
export const W = 32;
/** float64 words per record */
export const DW = W / 2;

// float64 fields (index s * DW + k)
export const START = 0, END = 1, BATCH = 2;
// int32 fields (index s * W + k); words 0..5 hold the doubles above
export const IDA = 6, IDB = 7, IDC = 8, IDD = 9, GKEY = 10, GCHK = 11, SKEY = 12;
/** sequence numbers, u32 stored as int32 (compare with `| 0` / read with `>>> 0`) */
export const REQ = 13, RESP = 14;
export const SRC_IPH = 15, DST_IPH = 16;
/** the normalised app trace id as four words, most significant first (all 0: none) */
export const APP = 17;
/** where the span is in its batch; -1 when the span is held whole (`held`) */
export const LOC = 21;
export const CLUSTER = 22;
/** next member of the same cluster */
export const MNEXT = 23;
/** next waiter on the same group key / seq key */
export const GNEXT = 24, SNEXT = 25;
/** P_DUP: the slot this one repeats */
export const DUP = 26;
/** scratch of the emission: the slot's number among the members being emitted */
export const POS = 27;
export const SRC_PORT = 28, DST_PORT = 29;
export const FLAGS = 30;
/** 1 keep, -1 drop, 0 none */
export const APP_SAMPLED = 31;

/** FLAGS bits (P_ENTRY and P_ERROR are fields.ts's F_ENTRY and F_ERROR) */
export const P_ENTRY = 1, P_ERROR = 2;
/** The same span as slot DUP (a resent batch): linked like it, never a candidate. */
export const P_DUP = 8;
/** Its cluster was emitted: no longer pending. Waiter lists drop it unless it is kept there. */
export const P_EMITTED = 16;
/**
 * Emitted and kept (JoinState.retain) until late_retention, so that a late span can still
 * join it: an entry with a thread group stays in its group's entry list (P_KEEP_G), a span
 * no sequence-number match took stays in its exchange's list (P_KEEP_S). Its trace is
 * `trace[slot]`.
 */
export const P_RETAINED = 32, P_KEEP_G = 64, P_KEEP_S = 128;
/** A retained span pulled back into an open cluster by a late span (decided already: never re-linked). */
export const P_FROZEN = 4;
/** Its retention ended while it was frozen: freed when that cluster is emitted. */
export const P_EXPIRED = 256;

/** No slot / no cluster. */
export const NONE = -1;

/** Records to start with when the reservation cannot be had. */
const MIN_CAPACITY = 65536;

export class PendingSpans {
  cap = 0;
  /** Slots in use. */
  used = 0;
  private freeList = new Int32Array(0);
  private freeCount = 0;
  private top = 0; // slots [0, top) have been handed out at least once

  i32 = new Int32Array(0);
  f64 = new Float64Array(0);

  /** Spans added whole (Joiner.add without a loc: tests, direct callers), by slot. */
  readonly held = new Map<number, EbpfSpan>();
  /** The trace a P_RETAINED slot went out in (by slot; one TraceRef shared by a trace's spans). */
  trace: (TraceRef | undefined)[] = [];

  /**
   * The buffer is reserved for `capacity` records at once (4 Mi records, 512 MiB, by default):
   * memory the process never touched is not resident, so this costs only what is used, and
   * the buffer never has to grow. A growth (beyond the reservation) copies the records into a
   * buffer twice as large: while it copies, both are resident, and every page of the new one
   * faults in (a page fault costs µs here).
   */
  constructor(capacity = 1 << 22) {
    try {
      this.grow(capacity);
    } catch (e) {
      // Strict overcommit (vm.overcommit_memory=2) counts a reservation as used: start small
      // and grow instead.
      if (!(e instanceof RangeError) || capacity <= MIN_CAPACITY) throw e;
      this.grow(MIN_CAPACITY);
    }
  }

  /** Room for `n` more slots without growing (so views held in locals stay valid meanwhile). */
  reserve(n: number): void {
    if (this.used + n > this.cap) this.grow(Math.max(this.used + n, this.cap * 2));
  }

  /** A slot; its fields hold whatever its last user left: set every one. */
  alloc(): number {
    if (this.freeCount > 0) {
      this.used++;
      return this.freeList[--this.freeCount];
    }
    if (this.top === this.cap) this.grow(this.cap * 2);
    this.used++;
    this.trace.push(undefined); // as long as the slots handed out
    return this.top++;
  }

  free(slot: number): void {
    if (this.i32[slot * W + LOC] < 0) this.held.delete(slot);
    this.trace[slot] = undefined;
    this.i32[slot * W + FLAGS] = 0;
    this.freeList[this.freeCount++] = slot;
    this.used--;
  }

  /** Slot a's span id before b's (the order of their hex strings). */
  idLess(a: number, b: number): boolean {
    const I = this.i32;
    const x = I[a * W + IDA] >>> 0, y = I[b * W + IDA] >>> 0;
    return x < y || (x === y && I[a * W + IDB] >>> 0 < I[b * W + IDB] >>> 0);
  }

  sameId(a: number, b: number): boolean {
    const I = this.i32;
    return I[a * W + IDA] === I[b * W + IDA] && I[a * W + IDB] === I[b * W + IDB];
  }

  private grow(cap: number): void {
    const buf = new ArrayBuffer(cap * 4 * W);
    const i32 = new Int32Array(buf);
    i32.set(this.i32.subarray(0, this.top * W));
    this.i32 = i32;
    this.f64 = new Float64Array(buf);
    const free = new Int32Array(cap);
    free.set(this.freeList.subarray(0, this.freeCount));
    this.freeList = free;
    this.cap = cap;
  }
}
