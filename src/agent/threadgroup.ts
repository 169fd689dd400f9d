// Thread groups: which exit spans a thread made while it was serving which entry.
//
// An entry opens a group on the thread (or goroutine) that read its request and closes it when
// its response has been written. An exit whose request is written on a thread with exactly one
// open group joins it. With several open groups on one thread (event-loop servers interleave
// requests) nothing says which one the exit belongs to: it joins none and that is counted,
// rather than guessed. A closed group is removed at once, so it can never be joined afterwards
// (DataKit's defect §3.2: "started after" alone joined finished entries).
//
// A thread a handler starts inherits the handler's group (inherit). Whether its calls really
// were that request's is known only once the group closes: a thread started for the request
// has ended by then, while a pool's worker that the handler happened to start (pools start
// workers lazily, on a submit) is still alive and may have run other requests' work meanwhile.
// So exits that joined through an inheritance are held (settle) until that is decided.
//
// An exit whose thread has no single open group (an event loop with several, a worker thread
// with none) joins by request id instead: the entry of its process, still open, whose request
// carried the same `X-Request-ID` (a proxy passes on its client's: nginx by default), when
// exactly one does. A value that two open entries of a process carry selects neither.
import { randomBytes } from 'node:crypto';

export interface ThreadGroupStats {
  opened: number;
  joined: number;
  /** Exits that found several open groups on their thread and joined none. */
  ambiguous: number;
  /** Exits that found no open group. */
  alone: number;
  /** Exits that joined (counted in `joined`) by X-Request-ID, their thread having no single open group. */
  byRequestId: number;
  /** Threads created while their creator served exactly one entry. */
  inherited: number;
  /**
   * Exits that joined through an inheritance (counted in `joined`) and were sent without the
   * group: their thread outlived the group, as a pool's worker does, or made too many calls.
   */
  pooled: number;
}

/**
 * How long after its group closed an inheriting thread may end and still count as started for
 * that request: a handler that waits for its threads (join) is woken while they are still on
 * their way out, and may answer before they are gone (a JVM's threads end after Thread.join
 * returns: with no grace the Java fan-out e2e test lost links). Pool workers outlive a request
 * by far; the margin is for a busy host, where the ending thread may wait for a CPU.
 */
export const INHERIT_GRACE_NS = 250_000_000;
/** Exits held for one inheritance at most: a thread making this many calls for one request is taken for a pool's. */
export const INHERIT_MAX_HELD = 64;

const PENDING = 0, KEEP = 1, DROP = 2;

/**
 * A thread's (or goroutine's) membership in a group it inherited. Goroutines are kept from the
 * start: their ends are not reported (docs/go.md, Limits).
 */
export interface Inheritance {
  readonly id: string;
  readonly key: ThreadKey;
  /** PENDING, KEEP or DROP. */
  state: number;
  /** When the thread ended (event time, ns); -1 while it lives. */
  endedNs: number;
  /** Once the group has closed: the last time the thread may end and keep it; -1 before. */
  keepUntilNs: number;
  /** Exits waiting for the decision. */
  waiting: Array<(keep: boolean) => void> | null;
}

export interface ThreadGroups {
  /**
   * Open a group on thread `key` of process `pid`; returns its id (a u64 as a decimal string).
   * requestId: the request's X-Request-ID ('' when it has none).
   */
  open(key: ThreadKey, pid: number, requestId?: string): string;
  /**
   * Close group `id` (opened on `key`) at `tsNs` (event time); it can never be joined again.
   * Its inheritances are decided: kept for threads that ended by `tsNs` + INHERIT_GRACE_NS,
   * dropped for the others, once advance() has passed that time.
   */
  close(key: ThreadKey, id: string, tsNs: number): void;
  /**
   * The group an exit started on `key` of process `pid` joins, or '' for none: the thread's
   * one open group, else the open group of `pid` whose entry carried `requestId` (its
   * X-Request-ID) when exactly one did.
   */
  join(key: ThreadKey, pid?: number, requestId?: string): string;
  /** Groups open on thread `key` (its own and inherited ones). */
  openOn(key: ThreadKey): number;
  /**
   * Whether any thread of process `pid` has a group open (is serving a request). Walks the
   * process's threads that have had groups: for the rare exit that joined nothing.
   */
  hasOpen(pid: number): boolean;
  /**
   * The inheritance through which an exit on `key` joined group `id` (what join returned), when
   * it is not decided yet: such an exit is sent through settle(). Null when there is nothing to
   * wait for (`id` is the thread's own group, or a goroutine's inheritance).
   */
  inheritance(key: ThreadKey, id: string): Inheritance | null;
  /**
   * Call `then` with whether an exit that joined through `m` keeps the group: at once when it
   * is decided, else when it is (close, advance, threadExit, flush).
   */
  settle(m: Inheritance, then: (keep: boolean) => void): void;
  /**
   * Thread `child` was created by thread `parent` of process `pid` (call it when the creation
   * is reported, before any event of the child). When the parent has exactly one open group at
   * that moment, the child's exits join it too until it closes (a handler that fans its calls
   * out to new threads), held until the close decides whether they keep it (close, settle);
   * the group's close removes it from every thread that inherited it, so
   * a child that outlives the group joins nothing afterwards. With none or several open groups
   * on the parent, the child inherits nothing. Anything still listed under the child's tid
   * (an earlier thread with the same tid) is forgotten.
   */
  inherit(parent: ThreadKey, child: ThreadKey, pid: number): void;
  /**
   * Thread `key` ended at `tsNs`: its inheritances know it (see close; one whose group closed
   * within the grace before is decided kept at once), and its tid is forgotten.
   */
  threadExit(key: ThreadKey, tsNs: number): void;
  /** Every event up to `tsNs` has been seen: decide the inheritances whose time has come. */
  advance(tsNs: number): void;
  /** The agent is stopping: decide every pending inheritance by what is known now (kept if its thread has ended). */
  flush(): void;
  /** Forget every group of a process (it exited at `tsNs`). */
  dropProcess(pid: number, tsNs: number): void;
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

/**
 * The key of an exchange of a process whose threads do not tell which request a call belongs
 * to (ProcessLookup.threadLinks false: a Go binary whose goroutines are not followed, so a
 * handler's calls are written by whichever thread runs it then). Its entries open their groups
 * on one key for the whole process, as an event loop's do, and its calls look on another that
 * never has any: they join nothing by thread, only by X-Request-ID.
 */
export function processKey(pid: number, server: boolean): string {
  return server ? `${pid}#entries` : `${pid}#calls`;
}

/** A request id within its process: ids are compared per process only. */
export function requestKey(pid: number, requestId: string): string {
  return `${pid} ${requestId}`;
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

/** A thread's entry, made with its first group. */
function one(id: string): Open {
  return { n: 1, only: id, ids: null };
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
  const stats: ThreadGroupStats = { opened: 0, joined: 0, ambiguous: 0, alone: 0, byRequestId: 0, inherited: 0, pooled: 0 };
  // pid and X-Request-ID → the open groups whose entries carried it (one, as a rule), and
  // group → its key here, for its close. Only groups whose requests had the header.
  const byRequestId = new Map<string, string[]>();
  const requestKeyOf = new Map<string, string>();
  // Group id → its inheritances, while the group is open (only groups whose thread created threads).
  const inheritors = new Map<string, Inheritance[]>();
  // Thread → its inheritances not decided yet (open groups, or closed and waiting for advance):
  // what its end settles.
  const undecided = new Map<ThreadKey, Inheritance[]>();
  // Closed groups with inheritances still pending, by the time they are decided at (closes
  // come in event order, so this is about sorted; one out of order waits for the one before).
  const deciding: Array<{ at: number; list: Inheritance[] }> = [];

  /** Thread `key`'s inheritance of open group `id`, if it has one. */
  function inheritanceOf(id: string, key: ThreadKey): Inheritance | undefined {
    const list = inheritors.get(id);
    if (list) for (const m of list) if (m.key === key) return m;
    return undefined;
  }

  function removeFrom(key: ThreadKey, id: string): boolean {
    // The thread's entry stays (usually empty) for its next entry: no Map churn per request.
    const o = openByThread.get(key);
    return o !== undefined && remove(o, id);
  }

  function decide(m: Inheritance, keep: boolean): void {
    m.state = keep ? KEEP : DROP;
    const mine = undecided.get(m.key);
    if (mine) {
      const at = mine.indexOf(m);
      if (at >= 0) mine.splice(at, 1);
      if (mine.length === 0) undecided.delete(m.key);
    }
    const waiting = m.waiting;
    m.waiting = null;
    if (waiting) {
      for (const then of waiting) {
        if (!keep) stats.pooled++;
        then(keep);
      }
    }
  }

  function closeGroup(key: ThreadKey, id: string, tsNs: number): void {
    // Not "return when the owner no longer lists it": a new thread that reused the owner's
    // tid has cleared its list (inherit), yet the group's inheritors must still leave it.
    removeFrom(key, id);
    if (requestKeyOf.size > 0) {
      const rk = requestKeyOf.get(id);
      if (rk !== undefined) {
        requestKeyOf.delete(id);
        const list = byRequestId.get(rk)!;
        if (list.length === 1) byRequestId.delete(rk);
        else list.splice(list.indexOf(id), 1);
      }
    }
    if (inheritors.size > 0) {
      const inh = inheritors.get(id);
      if (inh) {
        inheritors.delete(id);
        let pending = false;
        for (const m of inh) {
          removeFrom(m.key, id);
          if (m.state !== PENDING) continue;
          if (m.endedNs >= 0) decide(m, true); // gone before its request ended
          else {
            m.keepUntilNs = tsNs + INHERIT_GRACE_NS;
            pending = true;
          }
        }
        if (pending) deciding.push({ at: tsNs + INHERIT_GRACE_NS, list: inh });
      }
    }
  }

  /** The thread ended at `tsNs` (its own event, or its process's exit): mark what it inherited. */
  function ended(key: ThreadKey, tsNs: number): void {
    const mine = undecided.get(key);
    if (!mine) return;
    undecided.delete(key);
    for (const m of mine) {
      m.endedNs = tsNs;
      removeFrom(key, m.id); // it makes no more calls; its tid may come back for another thread
      // Its group closed just before (a handler woken by its join answered first): kept now,
      // not at the end of the grace, so that its exits reach the linker with their peers.
      if (m.keepUntilNs >= 0 && tsNs <= m.keepUntilNs) decide(m, true);
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
    open(key, pid, requestId = '') {
      const id = nextId();
      if (requestId) {
        const rk = requestKey(pid, requestId);
        const list = byRequestId.get(rk);
        if (list) list.push(id);
        else byRequestId.set(rk, [id]);
        requestKeyOf.set(id, rk);
      }
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
        openByThread.set(key, one(id));
        bind(key, pid);
      }
      stats.opened++;
      return id;
    },
    close: closeGroup,
    inherit(parent, child, pid) {
      // A new thread has no groups: whatever is listed under its tid belonged to an earlier
      // thread that had the same tid and is gone (its end unseen). Keeping it would make the
      // new thread's exits ambiguous (or join a stranger's group). What that thread inherited
      // is left to be decided without it: dropped, it was never seen to end.
      const mine = openByThread.get(child);
      if (mine) reset(mine);
      undecided.delete(child);
      const p = openByThread.get(parent);
      if (!p || p.n !== 1) return;
      const id = p.only;
      if (mine) add(mine, id);
      else openByThread.set(child, one(id));
      bind(child, pid);
      // Goroutines are kept from the start: their ends are not reported.
      const m: Inheritance = { id, key: child, state: typeof child === 'string' ? KEEP : PENDING, endedNs: -1, keepUntilNs: -1, waiting: null };
      const inh = inheritors.get(id);
      if (inh) inh.push(m);
      else inheritors.set(id, [m]);
      if (m.state === PENDING) {
        const list = undecided.get(child);
        if (list) list.push(m);
        else undecided.set(child, [m]);
      }
      stats.inherited++;
    },
    join(key, pid = 0, requestId = '') {
      const o = openByThread.get(key);
      if (o && o.n === 1) {
        stats.joined++;
        return o.only;
      }
      if (requestId) {
        const list = byRequestId.get(requestKey(pid, requestId));
        if (list?.length === 1) {
          stats.joined++;
          stats.byRequestId++;
          return list[0];
        }
      }
      if (!o || o.n === 0) stats.alone++;
      else stats.ambiguous++;
      return '';
    },
    openOn(key) {
      return openByThread.get(key)?.n ?? 0;
    },
    hasOpen(pid) {
      const keys = keysOf.get(pid);
      if (keys) for (const key of keys) if ((openByThread.get(key)?.n ?? 0) > 0) return true;
      return false;
    },
    inheritance(key, id) {
      if (inheritors.size === 0) return null;
      const m = inheritanceOf(id, key);
      return m?.state === PENDING ? m : null;
    },
    settle(m, then) {
      if (m.state === PENDING) {
        const waiting = (m.waiting ??= []);
        waiting.push(then);
        if (waiting.length >= INHERIT_MAX_HELD) {
          // So many calls for one request: taken for a pool's worker. It joins no more either.
          removeFrom(m.key, m.id);
          const inh = inheritors.get(m.id);
          const at = inh ? inh.indexOf(m) : -1;
          if (at >= 0) inh!.splice(at, 1);
          decide(m, false);
        }
        return;
      }
      if (m.state === DROP) stats.pooled++;
      then(m.state === KEEP);
    },
    threadExit: ended,
    advance(tsNs) {
      let n = 0;
      while (n < deciding.length && deciding[n].at <= tsNs) {
        const d = deciding[n++];
        for (const m of d.list) if (m.state === PENDING) decide(m, m.endedNs >= 0 && m.endedNs <= d.at);
      }
      if (n > 0) deciding.splice(0, n);
    },
    flush() {
      // What is known now: a thread that has ended kept its group, one still alive did not.
      for (const d of deciding.splice(0)) for (const m of d.list) if (m.state === PENDING) decide(m, m.endedNs >= 0);
      for (const list of inheritors.values()) for (const m of list) if (m.state === PENDING) decide(m, m.endedNs >= 0);
    },
    dropProcess(pid, tsNs) {
      const keys = keysOf.get(pid);
      if (!keys) return;
      for (const key of keys) ended(key, tsNs);
      for (const key of [...keys]) {
        const o = openByThread.get(key);
        if (o) {
          for (const id of idsOf(o)) {
            if (inheritanceOf(id, key)) removeFrom(key, id);
            else closeGroup(key, id, tsNs);
          }
        }
        openByThread.delete(key);
        unbind(key);
      }
    },
    openCount() {
      // For metrics and tests only: count the groups each thread owns (not inherited ones).
      let n = 0;
      for (const [key, o] of openByThread) for (const id of idsOf(o)) if (!inheritanceOf(id, key)) n++;
      return n;
    },
  };
}
