// Clusters (spans that may belong together, emitted together) and the deadline heap, in
// typed-array columns like the pending spans (pending.ts). A cluster's members are a list
// through PendingSpans.mNext (head, tail: appending or merging two lists is O(1); the
// smaller cluster's members are renumbered to the larger one).
//
// The heap holds (deadline, cluster, generation). Entries are lazy: a cluster's deadline only
// moves later, so a popped cluster whose deadline has grown is queued again, and an entry of
// a cluster that was merged away or emitted (its id since reused: another generation) is
// skipped.

export class Clusters {
  cap = 0;
  private freeList = new Int32Array(0);
  private freeCount = 0;
  private top = 0;
  /** Live clusters. */
  open = 0;

  head = new Int32Array(0);
  tail = new Int32Array(0);
  size = new Int32Array(0);
  maxEndMs = new Float64Array(0);
  maxArrivalMs = new Float64Array(0);
  /** bumped when the id is freed: heap entries of an older generation are stale */
  gen = new Int32Array(0);
  alive = new Uint8Array(0);

  constructor(capacity = 1024) {
    this.grow(capacity);
  }

  alloc(): number {
    let c: number;
    if (this.freeCount > 0) c = this.freeList[--this.freeCount];
    else {
      if (this.top === this.cap) this.grow(this.cap * 2);
      c = this.top++;
    }
    this.alive[c] = 1;
    this.open++;
    return c;
  }

  free(c: number): void {
    this.alive[c] = 0;
    this.gen[c] = (this.gen[c] + 1) | 0;
    this.freeList[this.freeCount++] = c;
    this.open--;
  }

  private grow(cap: number): void {
    const n = this.top;
    const g = <T extends Int32Array | Float64Array | Uint8Array>(a: T, make: (k: number) => T): T => {
      const b = make(cap);
      b.set(a.subarray(0, n));
      return b;
    };
    const i32 = (k: number) => new Int32Array(k), f64 = (k: number) => new Float64Array(k);
    this.head = g(this.head, i32); this.tail = g(this.tail, i32); this.size = g(this.size, i32);
    this.maxEndMs = g(this.maxEndMs, f64); this.maxArrivalMs = g(this.maxArrivalMs, f64);
    this.gen = g(this.gen, i32); this.alive = g(this.alive, (k) => new Uint8Array(k));
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
