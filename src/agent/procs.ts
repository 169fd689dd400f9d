// Which processes are traced, as the seed says:
//   1. never: trace_namedenyset, plus seqtrace itself (its own pid and its loader's, and the
//      names seqtrace, seqtrace-loader, datakit, datakit-ebpf), and kernel threads;
//   2. then every process when trace_all_process;
//   3. else a process having any variable of trace_envset in its environment;
//   4. else a process whose name (comm, basename of its executable or of argv[0]) is in
//      trace_nameset.
// A process gone before the agent looked (a short client while the agent is busy) has only its
// comm left, cut to 15 bytes by the kernel: it is matched against the names cut so too.
// /proc is scanned every second, and a pid is re-examined at once on an exec event. The decision
// is kept per (pid, start time), so a reused pid is examined afresh.
//
// Service name: DK_BPFTRACE_SERVICE, DD_SERVICE or OTEL_SERVICE_NAME from the process's
// environment, else the process name. Reading another process's environ needs CAP_SYS_PTRACE
// (or the same uid).
import { closeSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import type { AgentConfig } from '../config/config.js';
import { parseEnviron } from './capture/decode.js';

export const ALWAYS_DENIED = ['seqtrace', 'seqtrace-loader', 'seqtrace-gooffsets', 'datakit', 'datakit-ebpf'];
export const SERVICE_ENV = ['DK_BPFTRACE_SERVICE', 'DD_SERVICE', 'OTEL_SERVICE_NAME'];

export type SelectionReason = 'all' | 'env' | 'name' | 'denied' | 'none';

export interface ProcInfo {
  pid: number;
  startTime: string;
  comm: string;
  /** comm, basename(exe), basename(argv0): every name the process goes by. */
  names: string[];
  /** basename of the executable ('' when unreadable) */
  exe: string;
  /** examined once it was exiting or had exited: its environment and names read empty */
  exited: boolean;
  traced: boolean;
  reason: SelectionReason;
  service: string;
  /** service came from the environment (else it is the process name) */
  serviceFromEnv: boolean;
}

export interface ProcSelectorOptions {
  cfg: Pick<AgentConfig, 'trace_all_process' | 'trace_envset' | 'trace_nameset' | 'trace_namedenyset'>;
  addPid(pid: number): void;
  removePid(pid: number): void;
  /** Pids never traced (the agent's own, its loader's); read at every decision. */
  denyPids?(): Iterable<number>;
  procRoot?: string;
  /** Rescan period; 0 disables the timer (tests call scan()). Default 1000. */
  intervalMs?: number;
}

export interface ProcSelectorStats {
  scans: number;
  traced: number;
  added: number;
  removed: number;
  /** environ files that could not be read (permissions). */
  environUnreadable: number;
}

export interface ProcSelector {
  scan(): void;
  /**
   * ppid: the parent named by the exec event (lends its service to a process already gone);
   * provisional: the kernel traces the process since this exec, until addPid or removePid;
   * comm: the exec event's name for the process (all that is left of one already reaped); env:
   * the selection and service variables of its environment, as the loader read them at the
   * exec (what selects and names it when it is gone before the agent reads /proc).
   * Returns whether what the process does from its exec on is kept (else its events are dropped).
   */
  onExec(pid: number, ppid?: number, provisional?: boolean, comm?: string, env?: Map<string, string> | null): boolean;
  onExit(pid: number): void;
  isTraced(pid: number): boolean;
  /** Every process traced now (what a restarted loader is given). */
  tracedPids(): number[];
  info(pid: number): ProcInfo | undefined;
  service(pid: number): string;
  processName(pid: number): string;
  threadName(pid: number, tid: number): string;
  /**
   * Whether the threads of `pid` tell which request its calls belong to (the thread-group
   * rule, docs/agent.md): true unless setThreadLinks(pid, false) since its exec.
   */
  threadLinks(pid: number): boolean;
  /**
   * links false: this exec of `pid` runs its requests on something other than threads, which
   * the agent does not follow (yet): a Go binary until its goroutines are followed, or for good
   * when they cannot be. Its calls then join an entry by X-Request-ID only. Forgotten at its
   * next exec or exit.
   */
  setThreadLinks(pid: number, links: boolean): void;
  /** Thread `tid` of `pid` ended (thread_exit): its name is forgotten (tids are reused). */
  onThreadExit(pid: number, tid: number): void;
  close(): void;
  readonly stats: ProcSelectorStats;
}

// /proc/PID/stat is read for every process every second, environ and cmdline at every exec,
// a thread's comm once per thread: open/read/close into one reused buffer costs a quarter to
// a half of readFileSync, which fstats, sees size 0 and reads in a loop (a whole scan: ≈ 12 ms
// → 4 ms of CPU with 115–125 processes; one environ 13 → 6 µs, one cmdline 10 → 5 µs).
let procBuf = Buffer.allocUnsafe(65536);

/** A /proc file's bytes, in the shared buffer (valid until the next call); null when unreadable. */
function readProcFile(path: string): Buffer | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    let n = 0;
    for (;;) {
      const got = readSync(fd, procBuf, n, procBuf.length - n, null);
      if (got === 0) return procBuf.subarray(0, n);
      n += got;
      if (n === procBuf.length) {
        const bigger = Buffer.allocUnsafe(procBuf.length * 2);
        procBuf.copy(bigger);
        procBuf = bigger;
      }
    }
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

interface Stat { comm: string; state: string; startTime: string; ppid: number; flags: number }

// task flags (field 9 of stat; include/linux/sched.h)
const PF_EXITING = 0x4;
const PF_KTHREAD = 0x200000;

/**
 * Exiting or exited, not yet reaped: its environ, exe and cmdline read empty. Not only a zombie:
 * from the start of exit (PF_EXITING) its memory is released while the state still reads
 * running, and a short curl caught there looked like a kernel thread (no exe, no command line):
 * denied, untraced, its spans named `curl` instead of its service (the Go e2e test, 2 runs in 10
 * on a slow host).
 */
const exited = (st: Stat) => st.state === 'Z' || st.state === 'X' || (st.flags & PF_EXITING) !== 0;

/** comm and start time (field 22) from /proc/PID/stat; comm may contain spaces and parens. */
function readStat(root: string, pid: number): Stat | null {
  const raw = readProcFile(`${root}/${pid}/stat`);
  if (!raw) return null;
  const s = raw.toString('latin1');
  const open = s.indexOf('(');
  const close = s.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const rest = s.slice(close + 2).split(' ');
  // rest[0] is field 3 (state): field N is rest[N - 3].
  return { comm: s.slice(open + 1, close), state: rest[0] ?? '', startTime: rest[19] ?? '', ppid: Number(rest[1]), flags: Number(rest[6]) };
}

function readEnviron(root: string, pid: number): Map<string, string> | null {
  const raw = readProcFile(`${root}/${pid}/environ`);
  return raw ? parseEnviron(raw) : null;
}

export function createProcSelector(opts: ProcSelectorOptions): ProcSelector {
  const root = opts.procRoot ?? '/proc';
  const deny = new Set([...ALWAYS_DENIED, ...opts.cfg.trace_namedenyset]);
  const names = new Set(opts.cfg.trace_nameset);
  // The same names as a comm shows them (TASK_COMM_LEN - 1 bytes), for processes known by it alone.
  const commOf = (name: string) => Buffer.from(name).subarray(0, 15).toString('latin1');
  const denyComm = new Set([...deny].map(commOf));
  const namesComm = new Set([...names].map(commOf));
  const envset = opts.cfg.trace_envset;
  const procs = new Map<number, ProcInfo>();
  // Processes that left /proc: their last spans may still be queued in the capture (a short
  // curl exits before the agent reads its events), and must still get their service name.
  const gone = new Map<number, ProcInfo>();
  const GONE_MAX = 4096;
  // pid → tid → thread name, read once per thread. Forgotten with the thread (onThreadExit) or
  // its process (onExit), so that a reused tid never takes a dead thread's name and a server
  // starting a thread per connection leaves only its live threads here; all re-read now and
  // then (scan), as a thread may rename itself.
  const threadNames = new Map<number, Map<number, string>>();
  // Processes whose threads do not tell which request a call belongs to (setThreadLinks).
  const unthreaded = new Set<number>();
  const stats: ProcSelectorStats = { scans: 0, traced: 0, added: 0, removed: 0, environUnreadable: 0 };

  const deniedPid = (pid: number) => (opts.denyPids ? [...opts.denyPids()].includes(pid) : false);
  /** Whether an environment selects its process: any variable of trace_envset. */
  const envSelects = (env: Map<string, string> | null) => env !== null && envset.some((k) => env.has(k));
  /** The service an environment names: its first non-empty SERVICE_ENV variable, else ''. */
  const envService = (env: Map<string, string> | null) => {
    for (const k of SERVICE_ENV) {
      const v = env?.get(k);
      if (v) return v;
    }
    return '';
  };

  /**
   * Selection of a process that exited before it was examined: its comm is all that is left of
   * it, and its environment is taken for its parent's (inherited across fork and, as a rule,
   * exec). Never added to the kernel: its pid may be reused.
   */
  function selectGone(pid: number, ppid: number, comm: string, env: Map<string, string> | null): SelectionReason {
    if (deniedPid(pid) || (comm && denyComm.has(comm))) return 'denied';
    if (opts.cfg.trace_all_process && comm) return 'all';
    if (envSelects(env)) return 'env';
    if (parentOf(ppid)?.reason === 'env') return 'env';
    return comm && namesComm.has(comm) ? 'name' : 'none';
  }

  /** Whether what a provisionally traced process did is kept: it is traced, or it is gone and was selected. */
  const kept = (info: ProcInfo) => info.traced || (info.exited && info.reason !== 'none' && info.reason !== 'denied');

  function parentOf(ppid: number): ProcInfo | undefined {
    if (ppid > 0 && !procs.has(ppid)) update(ppid, false); // a scan may reach the child first
    return procs.get(ppid);
  }

  /**
   * The service of a process whose environment cannot be read any more (it exited before the
   * agent looked): its parent's, when that came from the parent's environment (inherited
   * across fork and, as a rule, exec), else its own name.
   */
  function lentService(ppid: number, comm: string, env: Map<string, string> | null): { service: string; serviceFromEnv: boolean } {
    const own = envService(env);
    if (own) return { service: own, serviceFromEnv: true };
    const parent = parentOf(ppid);
    return parent?.serviceFromEnv ? { service: parent.service, serviceFromEnv: true } : { service: comm, serviceFromEnv: false };
  }

  /**
   * A process whose environ, exe and cmdline read empty (it is exiting or exited): nothing left
   * to select it by, yet its spans (captured while it ran) need a name. The same process
   * examined before (a short curl that a shell exec'd, its exec event read late) keeps the
   * environment it was selected and named by, only its name follows the exec; one never
   * examined (a traced parent's child is traced from its fork) borrows its parent's.
   */
  function examineExited(pid: number, st: Stat, old?: ProcInfo, env: Map<string, string> | null = null): ProcInfo {
    if (!env && old && old.startTime === st.startTime && old.serviceFromEnv) {
      return { ...old, comm: st.comm, names: old.names.includes(st.comm) ? old.names : [...old.names, st.comm], exited: true };
    }
    return { pid, startTime: st.startTime, comm: st.comm, names: [st.comm], exe: old?.exe ?? '', exited: true, traced: false, reason: (st.flags & PF_KTHREAD) !== 0 ? 'denied' : selectGone(pid, st.ppid, st.comm, env), ...lentService(st.ppid, st.comm, env) };
  }

  /** A process reaped before anything of it could be read: its exec event's comm and environment, and its parent. */
  function examineReaped(pid: number, ppid: number, comm: string, env: Map<string, string> | null = null): ProcInfo {
    return { pid, startTime: '', comm, names: comm ? [comm] : [], exe: '', exited: true, traced: false, reason: selectGone(pid, ppid, comm, env), ...lentService(ppid, comm, env) };
  }

  /** old: what this pid was examined as before, if anything; execEnv: what its exec event carried. */
  function examine(pid: number, st: Stat, old?: ProcInfo, execEnv: Map<string, string> | null = null): ProcInfo {
    if (exited(st)) return examineExited(pid, st, old, execEnv);
    // Kernel threads: flagged so, or children of kthreadd (pid 2) or kthreadd itself.
    const kernel = (st.flags & PF_KTHREAD) !== 0 || pid === 2 || st.ppid === 2;
    // The environment before the command line: a process that starts exiting in between reads
    // empty from then on, and its empty command line below says so (a live process always has
    // one), rather than an empty environment untracing it. At an exec, what the loader read of
    // it then, when it found any of the variables: nginx writes its process title over that
    // memory within milliseconds of its start, before the agent reads /proc.
    const env = kernel ? null : (execEnv ?? readEnviron(root, pid));
    let exe = '';
    try {
      exe = basename(readlinkSync(`${root}/${pid}/exe`).replace(/ \(deleted\)$/, ''));
    } catch {
      // Kernel threads have no executable; processes of other users need CAP_SYS_PTRACE.
    }
    let argv0 = '';
    const cmd = readProcFile(`${root}/${pid}/cmdline`); // null: gone already
    if (cmd) {
      const nul = cmd.indexOf(0);
      argv0 = basename(cmd.toString('utf8', 0, nul < 0 ? cmd.length : nul));
    }
    if (!kernel && !exe && !argv0) return examineExited(pid, st, old, execEnv);
    const info: ProcInfo = { pid, startTime: st.startTime, comm: st.comm, names: [st.comm], exe, exited: false, traced: false, reason: 'none', service: st.comm, serviceFromEnv: false };
    if (exe && !info.names.includes(exe)) info.names.push(exe);
    if (argv0 && !info.names.includes(argv0)) info.names.push(argv0);
    if (deniedPid(pid) || kernel || info.names.some((n) => deny.has(n))) {
      info.reason = 'denied';
      return info;
    }
    if (!env) stats.environUnreadable++;
    const named = envService(env);
    if (named) { info.service = named; info.serviceFromEnv = true; }
    if (!info.serviceFromEnv && exe && st.ppid > 1) {
      // A child forked without exec has its parent's environment whatever its environ file
      // reads: nginx writes its process title over that memory, in the master (after the agent
      // read it at exec) and so in the workers it forks. Same executable as its parent: taken
      // for such a child, and named by the service its parent was named by.
      const parent = parentOf(st.ppid);
      if (parent?.serviceFromEnv && parent.exe === exe) { info.service = parent.service; info.serviceFromEnv = true; }
    }
    if (opts.cfg.trace_all_process) info.reason = 'all';
    else if (envSelects(env)) info.reason = 'env';
    else if (info.names.some((n) => names.has(n))) info.reason = 'name';
    info.traced = info.reason !== 'none';
    return info;
  }

  function remember(info: ProcInfo): void {
    gone.delete(info.pid);
    gone.set(info.pid, info);
    if (gone.size > GONE_MAX) gone.delete(gone.keys().next().value as number);
  }

  function untrack(pid: number): void {
    const old = procs.get(pid);
    if (!old) return;
    procs.delete(pid);
    remember(old);
    if (old.traced) {
      stats.traced--;
      stats.removed++;
      opts.removePid(pid);
    }
  }

  /**
   * Examines pid (force: even if examined before) and tells the kernel what changed. provisional:
   * an exec the kernel traces until told (docs/agent.md, "From the exec on"): the decision is
   * told either way. Returns whether what the process did since its exec is kept.
   */
  function update(pid: number, force: boolean, ppid = 0, provisional = false, comm = '', env: Map<string, string> | null = null): boolean {
    const st = readStat(root, pid);
    if (!st) {
      if (!force) {
        untrack(pid);
        return false;
      }
      // On an exec event the process may already be gone: its exit event, which comes after
      // its data in the stream, will untrack it; until then its spans keep its names. One
      // traced before (the shell that exec'd it) stays so; one examined untraced before is
      // selected afresh as gone, keeping a service its environment named; one never
      // examined (or what a scan saw of an earlier process with its pid) goes by its exec
      // event's comm and its parent's service.
      let known = procs.get(pid);
      if (known && !known.traced) {
        const fresh = examineReaped(pid, ppid, comm || known.comm, env);
        if (known.serviceFromEnv && !fresh.serviceFromEnv) { fresh.service = known.service; fresh.serviceFromEnv = true; }
        procs.set(pid, (known = fresh)); // untraced before and after: nothing to count or tell
      } else if (!known) {
        const last = gone.get(pid);
        known = last && (!comm || last.comm === comm) && !env ? last : examineReaped(pid, ppid, comm, env);
        if (known !== last) remember(known);
      }
      if (!provisional) return known.traced;
      // What it did is kept as for any process gone before the decision (kept); the children
      // it forked go with it.
      const keep = kept(known);
      if (!keep) opts.removePid(pid);
      return keep;
    }
    const old = procs.get(pid);
    if (old && !force && old.startTime === st.startTime && old.comm === st.comm) return old.traced;
    const info = examine(pid, st, old, env);
    if (old?.traced && !info.traced) { stats.traced--; stats.removed++; if (!provisional) opts.removePid(pid); }
    if (info.traced && !old?.traced) { stats.traced++; stats.added++; if (!provisional) opts.addPid(pid); }
    procs.set(pid, info);
    if (!provisional) return info.traced;
    // Exiting already: kept like one reaped (above). Never added: its pid may be reused.
    const keep = kept(info);
    if (info.traced && !info.exited) opts.addPid(pid);
    else if (!keep) opts.removePid(pid);
    return keep;
  }

  function scan(): void {
    stats.scans++;
    const seen = new Set<number>();
    let entries: string[];
    try {
      entries = readdirSync(root);
    } catch {
      return;
    }
    for (const name of entries) {
      const c = name.charCodeAt(0);
      if (c < 48 || c > 57) continue;
      const pid = Number(name);
      seen.add(pid);
      update(pid, false);
    }
    for (const pid of [...procs.keys()]) if (!seen.has(pid)) untrack(pid);
    // Thread names change rarely but do change (pthread_setname_np): re-read now and then; and
    // at most 50,000 kept (thread ends lost with a full ring buffer are never forgotten).
    let names = 0;
    for (const m of threadNames.values()) names += m.size;
    if (stats.scans % 60 === 0 || names > 50_000) threadNames.clear();
  }

  /**
   * A pid the selector has not examined (a child the kernel traces since its fork, found
   * before the next scan): examine it now so its spans get names; traced by the kernel anyway.
   */
  function lookup(pid: number): ProcInfo | undefined {
    const st = readStat(root, pid);
    if (!st) return undefined;
    const info = examine(pid, st);
    remember(info); // not in procs: the next scan decides and calls addPid
    return info;
  }

  const timer = (opts.intervalMs ?? 1000) > 0 ? setInterval(scan, opts.intervalMs ?? 1000) : null;
  timer?.unref();

  return {
    stats,
    scan,
    onExec(pid, ppid, provisional, comm, env) {
      unthreaded.delete(pid); // another binary
      return update(pid, true, ppid, provisional, comm, env ?? null);
    },
    onExit(pid) {
      untrack(pid);
      threadNames.delete(pid);
      unthreaded.delete(pid);
    },
    threadLinks: (pid) => unthreaded.size === 0 || !unthreaded.has(pid),
    setThreadLinks(pid, links) {
      if (links) unthreaded.delete(pid);
      else unthreaded.add(pid);
    },
    onThreadExit(pid, tid) {
      threadNames.get(pid)?.delete(tid);
    },
    isTraced: (pid) => procs.get(pid)?.traced ?? false,
    tracedPids() {
      const out: number[] = [];
      for (const info of procs.values()) if (info.traced) out.push(info.pid);
      return out;
    },
    info: (pid) => procs.get(pid),
    service(pid) {
      return (procs.get(pid) ?? gone.get(pid) ?? lookup(pid))?.service ?? '';
    },
    processName(pid) {
      return (procs.get(pid) ?? gone.get(pid) ?? lookup(pid))?.comm ?? '';
    },
    threadName(pid, tid) {
      let names = threadNames.get(pid);
      if (!names) threadNames.set(pid, (names = new Map()));
      let n = names.get(tid);
      if (n === undefined) {
        n = readProcFile(`${root}/${pid}/task/${tid}/comm`)?.toString('utf8').trimEnd() ?? '';
        names.set(tid, n);
      }
      return n;
    },
    close() {
      if (timer) clearInterval(timer);
    },
  };
}
