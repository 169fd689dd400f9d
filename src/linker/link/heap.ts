// A binary min-heap of (deadline, cluster) in two parallel arrays: emission pops what is due
// instead of scanning every open trace. Entries are lazy: a cluster's deadline only moves
// later, so the joiner re-queues a popped cluster whose deadline has grown and skips one that
// was merged away.
import type { Cluster } from './node.js';

export interface DeadlineHeap {
  keys: number[];
  items: Cluster[];
}

export function newHeap(): DeadlineHeap {
  return { keys: [], items: [] };
}

export function heapPush(h: DeadlineHeap, key: number, item: Cluster): void {
  const keys = h.keys, items = h.items;
  let i = keys.length;
  keys.push(key);
  items.push(item);
  while (i > 0) {
    const up = (i - 1) >> 1;
    if (keys[up] <= key) break;
    keys[i] = keys[up];
    items[i] = items[up];
    i = up;
  }
  keys[i] = key;
  items[i] = item;
}

export function heapTopKey(h: DeadlineHeap): number {
  return h.keys.length > 0 ? h.keys[0] : Infinity;
}

export function heapPop(h: DeadlineHeap): Cluster | undefined {
  const keys = h.keys, items = h.items;
  const n = keys.length;
  if (n === 0) return undefined;
  const top = items[0];
  const lastKey = keys.pop()!;
  const lastItem = items.pop()!;
  const m = n - 1;
  if (m > 0) {
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= m) break;
      if (c + 1 < m && keys[c + 1] < keys[c]) c++;
      if (keys[c] >= lastKey) break;
      keys[i] = keys[c];
      items[i] = items[c];
      i = c;
    }
    keys[i] = lastKey;
    items[i] = lastItem;
  }
  return top;
}
