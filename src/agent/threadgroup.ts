// Thread groups: which exit spans a thread made while it was serving which entry.
//
// An entry opens a group on the thread (or goroutine) that read its request and closes it when
// its response has been written. An exit whose request is written on a thread with exactly one
// open group joins it. With several open groups on one thread (event-loop servers interleave
// requests) nothing says which one the exit belongs to: it joins none and that is counted,
// rather than guessed. A closed group is removed at once, so it can never be joined afterwards
// (DataKit's defect §3.2: "started after" alone joined finished entries).
import { randomBytes } from 'node:crypto';

export interface ThreadGroupStats {
  opened: number;
  joined: number;
  /** Exits that found several open groups on their thread and joined none. */
  ambiguous: number;
  /** Exits that found no open group. */
  alone: number;
  /** Threads created while their creator served exactly one entry. */
  inherited: number;
}

export interface ThreadGroups {
  /** Open a group on thread `key` of process `pid`; returns its id (a u64 as a decimal string). */
  open(key: ThreadKey, pid: number): string;
  /** Close group `id` (opened on `key`); it can never be joined again. */
  close(key: ThreadKey, id: string): void;
  /** The group an exit started on `key` joins, or '' for none. */
  join(key: ThreadKey): string;
  /**
   * Thread `child` was created by thread `parent` of process `pid` (call it when the creation
   * is reported, before any event of the child). When the parent has exactly one open group at
   * that moment, the child's exits join it too until it closes (a handler that fans its calls
   * out to new threads); the group's close removes it from every thread that inherited it, so
   * a child that outlives the group joins nothing afterwards. With none or several open groups
   * on the parent, the child inherits nothing. Anything still listed under the child's tid
   * (an earlier thread with the same tid) is forgotten.
   */
  inherit(parent: ThreadKey, child: ThreadKey, pid: number): void;
  /** Forget every group of a process (it exited). */
  dropProcess(pid: number): void;
  /** Open groups, for tests and metrics. */
  openCount(): number;
  readonly stats: ThreadGroupStats;
}

/**
 * A thread: tid when the runtime has no user-level threads, else the goroutine id. tids are
 * host-wide unique while the thread lives; goroutine ids are per process, hence the pid.
 */
export type ThreadKey = number | string;

export function threadKey(pid: number, tid: number, goid: number): ThreadKey {
  return goid === 0 ? tid : `${pid}/${goid}`;
}

const MASK = (1n << 64n) - 1n;
/** Threads listed before the first sweep of those with no open group. */
const SWEEP_MIN = 8192;

/**
 * The groups open on one thread. Usually none or one (`only`); an event loop serving many
 * requests at once has many, kept in a Set so that closing one costs the same however many
 * are open (a list searched per close cost an nginx-like loop with 65,536 open groups seconds
 * per eviction of the connection table). Made once per thread and reused: the common case
 * (open, join, close of one group) allocates nothing.
 */
interface Open {
  /** Groups open on the thread. */
  n: number;
  /** The group when n === 1, else ''. */
  only: string;
  /** The groups when n > 1 (empty, kept for reuse, otherwise). */
  ids: Set<string> | null;
}

function add(o: Open, id: string): void {
  if (o.n === 0) o.only = id;
  else {
    if (o.n === 1) {
      o.ids ??= new Set();
      o.ids.add(o.only);
      o.only = '';
    }
    o.ids!.add(id);
  }
  o.n++;
}

/** Remove `id` if open on the thread; true when it was. */
function remove(o: Open, id: string): boolean {
  if (o.n === 1) {
    if (o.only !== id) return false;
    o.only = '';
    o.n = 0;
    return true;
  }
  if (o.n === 0 || !o.ids!.delete(id)) return false;
  if (--o.n === 1) {
    for (const left of o.ids!) o.only = left;
    o.ids!.clear();
  }
  return true;
}

function reset(o: Open): void {
  o.n = 0;
  o.only = '';
  o.ids?.clear();
}

function idsOf(o: Open): string[] {
  return o.n === 0 ? [] : o.n === 1 ? [o.only] : [...o.ids!];
}

/**
 * Ids: a random 64-bit base drawn at agent start plus a counter, so ids never repeat within a
 * run and collide across restarts only by chance (DataKit's constant seed repeated them, §3.3).
 */
export function createThreadGroups(base: bigint = randomBytes(8).readBigUInt64BE()): ThreadGroups {
  let counter = 0n;
  const openByThread = new Map<ThreadKey, Open>();
  // Size of openByThread at which the entries of finished threads are dropped: twice what a
  // sweep left, so that many threads with open groups (a Go server's goroutines, thousands
  // of requests in flight) do not make every new thread sweep in vain (O(threads) each).
  let sweepAt = SWEEP_MIN;
  const pidOf = new Map<ThreadKey, number>();
  // pid → its thread keys, so a process exit (reported for every process on the host) costs
  // a lookup, not a walk over every thread.
  const keysOf = new Map<number, Set<ThreadKey>>();

  function bind(key: ThreadKey, pid: number): void {
    const was = pidOf.get(key);
    if (was === pid) return;
    if (was !== undefined) keysOf.get(was)?.delete(key);
    pidOf.set(key, pid);
    let set = keysOf.get(pid);
    if (!set) keysOf.set(pid, (set = new Set()));
    set.add(key);
  }

  function unbind(key: ThreadKey): void {
    const was = pidOf.get(key);
    if (was === undefined) return;
    pidOf.delete(key);
    const set = keysOf.get(was);
    if (set) {
      set.delete(key);
      if (set.size === 0) keysOf.delete(was);
    }
  }
  const stats: ThreadGroupStats = { opened: 0, joined: 0, ambiguous: 0, alone: 0, inherited: 0 };
  // Group id → threads that inherited it (only groups whose thread created threads).
  const inheritors = new Map<string, ThreadKey[]>();

  function inheritedBy(id: string, key: ThreadKey): boolean {
    return inheritors.get(id)?.includes(key) ?? false;
  }

  function removeFrom(key: ThreadKey, id: string): boolean {
    // The thread's entry stays (usually empty) for its next entry: no Map churn per request.
    const o = openByThread.get(key);
    return o !== undefined && remove(o, id);
  }

  function closeGroup(key: ThreadKey, id: string): void {
    // Not "return when the owner no longer lists it": a new thread that reused the owner's
    // tid has cleared its list (inherit), yet the group's inheritors must still leave it.
    removeFrom(key, id);
    if (inheritors.size > 0) {
      const inh = inheritors.get(id);
      if (inh) {
        for (const k of inh) removeFrom(k, id);
        inheritors.delete(id);
      }
    }
  }

  function sweep(): void {
    for (const [key, o] of openByThread) {
      if (o.n === 0) {
        openByThread.delete(key);
        unbind(key);
      }
    }
  }

  // BigInt arithmetic and its toString: a flat string. An id counted in two numbers and
  // concatenated was as fast but a ConsString, and the agent's old generation grew with them.
  function nextId(): string {
    let id: bigint;
    do id = (base + ++counter) & MASK; while (id === 0n); // 0 means "no group" on the wire
    return id.toString();
  }

  return {
    stats,
    open(key, pid) {
      const id = nextId();
      const o = openByThread.get(key);
      if (o) {
        if (o.n === 0) bind(key, pid); // a tid may now belong to another process
        add(o, id);
      } else {
        // Threads come and go: drop the empty entries of finished ones now and then.
        if (openByThread.size >= sweepAt) {
          sweep();
          sweepAt = Math.max(SWEEP_MIN, 2 * openByThread.size);
        }
        openByThread.set(key, { n: 1, only: id, ids: null });
        bind(key, pid);
      }
      stats.opened++;
      return id;
    },
    close: closeGroup,
    inherit(parent, child, pid) {
      const p = openByThread.get(parent);
      if (!p || p.n !== 1) return;
      const id = p.only;
      const mine = openByThread.get(child);
      // A new thread has no groups: whatever is listed under its tid belonged to an earlier
      // thread that had the same tid and is gone. Keeping it would make the new thread's
      // exits ambiguous (or join a stranger's group).
      if (mine) { reset(mine); add(mine, id); }
      else openByThread.set(child, { n: 1, only: id, ids: null });
      bind(child, pid);
      const inh = inheritors.get(id);
      if (inh) inh.push(child);
      else inheritors.set(id, [child]);
      stats.inherited++;
    },
    join(key) {
      const o = openByThread.get(key);
      if (!o || o.n === 0) { stats.alone++; return ''; }
      if (o.n > 1) { stats.ambiguous++; return ''; }
      stats.joined++;
      return o.only;
    },
    dropProcess(pid) {
      const keys = keysOf.get(pid);
      if (!keys) return;
      for (const key of [...keys]) {
        const o = openByThread.get(key);
        if (o) {
          for (const id of idsOf(o)) {
            if (inheritedBy(id, key)) removeFrom(key, id);
            else closeGroup(key, id);
          }
        }
        openByThread.delete(key);
        unbind(key);
      }
    },
    openCount() {
      // For metrics and tests only: count the groups each thread owns (not inherited ones).
      let n = 0;
      for (const [key, o] of openByThread) for (const id of idsOf(o)) if (!inheritedBy(id, key)) n++;
      return n;
    },
  };
}
