// Clusters (spans that may belong together, emitted together) and the deadline heap, in
// typed arrays like the pending spans (pending.ts). A cluster's members are a list through
// the pending records' MNEXT (head, tail: appending or merging two lists is O(1); the smaller
// cluster's members are renumbered to the larger one).
//
// The heap holds (deadline, cluster, generation). Entries are lazy: a cluster's deadline only
// moves later, so a popped cluster whose deadline has grown is queued again, and an entry of
// a cluster that was merged away or emitted (its id since reused: another generation) is
// skipped.

/** int32 words per cluster record (32 bytes: one cache line holds two) */
const CW = 8;
// float64 fields (index c * CW / 2 + k)
const MAX_END = 0, MAX_ARRIVAL = 1;
// int32 fields (index c * CW + k); words 0..3 hold the doubles
const HEAD = 4, TAIL = 5, SIZE = 6, GEN = 7;

/**
 * Clusters as records of one buffer (a cluster's fields are read together, for a random
 * cluster: one cache line, not one per field). `gen` is bumped when an id is freed: heap
 * entries of an older generation are stale. Alive = not on the free list.
 */
export class Clusters {
  cap = 0;
  private freeList = new Int32Array(0);
  private freeCount = 0;
  private top = 0;
  /** Live clusters. */
  open = 0;
  private i32 = new Int32Array(0);
  private f64 = new Float64Array(0);
  private live = new Uint8Array(0);

  constructor(capacity = 4096) {
    this.grow(capacity);
  }

  alloc(): number {
    let c: number;
    if (this.freeCount > 0) c = this.freeList[--this.freeCount];
    else {
      if (this.top === this.cap) this.grow(this.cap * 2);
      c = this.top++;
    }
    this.live[c] = 1;
    this.i32[c * CW + SIZE] = 0;
    this.open++;
    return c;
  }

  free(c: number): void {
    this.live[c] = 0;
    this.i32[c * CW + GEN] = (this.i32[c * CW + GEN] + 1) | 0;
    this.i32[c * CW + SIZE] = 0;
    this.freeList[this.freeCount++] = c;
    this.open--;
  }

  alive(c: number): boolean { return this.live[c] === 1; }
  gen(c: number): number { return this.i32[c * CW + GEN]; }
  head(c: number): number { return this.i32[c * CW + HEAD]; }
  tail(c: number): number { return this.i32[c * CW + TAIL]; }
  size(c: number): number { return this.i32[c * CW + SIZE]; }
  maxEndMs(c: number): number { return this.f64[c * (CW / 2) + MAX_END]; }
  maxArrivalMs(c: number): number { return this.f64[c * (CW / 2) + MAX_ARRIVAL]; }
  setHead(c: number, s: number): void { this.i32[c * CW + HEAD] = s; }
  setTail(c: number, s: number): void { this.i32[c * CW + TAIL] = s; }
  setSize(c: number, n: number): void { this.i32[c * CW + SIZE] = n; }
  /** Raises the latest span end / arrival of c to at least these. */
  raise(c: number, endMs: number, arrivalMs: number): void {
    const f = this.f64, b = c * (CW / 2);
    if (endMs > f[b + MAX_END]) f[b + MAX_END] = endMs;
    if (arrivalMs > f[b + MAX_ARRIVAL]) f[b + MAX_ARRIVAL] = arrivalMs;
  }
  setTimes(c: number, endMs: number, arrivalMs: number): void {
    const b = c * (CW / 2);
    this.f64[b + MAX_END] = endMs;
    this.f64[b + MAX_ARRIVAL] = arrivalMs;
  }

  private grow(cap: number): void {
    const buf = new ArrayBuffer(cap * 4 * CW);
    const i32 = new Int32Array(buf);
    i32.set(this.i32);
    this.i32 = i32;
    this.f64 = new Float64Array(buf);
    const live = new Uint8Array(cap);
    live.set(this.live);
    this.live = live;
    const free = new Int32Array(cap);
    free.set(this.freeList.subarray(0, this.freeCount));
    this.freeList = free;
    this.cap = cap;
  }
}

/** A binary min-heap of (deadline, cluster, generation) in typed arrays. */
export class DeadlineHeap {
  n = 0;
  private keys = new Float64Array(1024);
  private ids = new Int32Array(1024);
  private gens = new Int32Array(1024);
  /** Cluster and generation of the entry popPast() returned last. */
  poppedId = -1;
  poppedGen = 0;

  push(key: number, id: number, gen: number): void {
    if (this.n === this.keys.length) this.grow();
    const keys = this.keys, ids = this.ids, gens = this.gens;
    let i = this.n++;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (keys[up] <= key) break;
      keys[i] = keys[up];
      ids[i] = ids[up];
      gens[i] = gens[up];
      i = up;
    }
    keys[i] = key;
    ids[i] = id;
    gens[i] = gen;
  }

  topKey(): number {
    return this.n > 0 ? this.keys[0] : Infinity;
  }

  /** Pops the smallest entry into poppedId/poppedGen; false when empty. */
  pop(): boolean {
    const n = this.n;
    if (n === 0) return false;
    const keys = this.keys, ids = this.ids, gens = this.gens;
    this.poppedId = ids[0];
    this.poppedGen = gens[0];
    const m = n - 1;
    this.n = m;
    if (m > 0) {
      const lastKey = keys[m], lastId = ids[m], lastGen = gens[m];
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && keys[c + 1] < keys[c]) c++;
        if (keys[c] >= lastKey) break;
        keys[i] = keys[c];
        ids[i] = ids[c];
        gens[i] = gens[c];
        i = c;
      }
      keys[i] = lastKey;
      ids[i] = lastId;
      gens[i] = lastGen;
    }
    return true;
  }

  private grow(): void {
    const cap = this.keys.length * 2;
    const k = new Float64Array(cap), d = new Int32Array(cap), g = new Int32Array(cap);
    k.set(this.keys);
    d.set(this.ids);
    g.set(this.gens);
    this.keys = k;
    this.ids = d;
    this.gens = g;
  }
}
