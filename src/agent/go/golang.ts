// Go processes: when a process is selected for tracing, find out whether it is a Go binary
// (its build info) and, when the agent can read it, name the binary's uprobes to the loader
// (once per binary) and hand it the process's offsets; the loader attaches the probes to that
// process only (src/bpf/go_probes.c). From then on its data events carry goroutine ids and its
// goroutine events let children inherit their creator's thread group. A Go process's threads
// say nothing about which request a call belongs to (goroutines move between them), so from
// the moment it is known to be Go (its ELF sections, read at once) until its goroutines are
// followed, and for good when its binary cannot be read (Go before 1.17, not amd64),
// `setThreadLinks` has the agent link its calls by X-Request-ID only; the agent says so once
// per binary.
import { readFileSync, statSync } from 'node:fs';
import type { Capture } from '../capture/loader.js';
import { hasGoBuildInfo, readGoBinary, type GoBinaryInfo } from './offsets.js';

export interface GoStats {
  /** Go processes whose goroutines are followed. */
  byGoroutine: number;
  /** Go processes traced without goroutines because their binary could not be read. */
  byThread: number;
  /** Failures telling the kernel (offsets or uprobes refused: traced without goroutines too). */
  errors: number;
}

export interface GoTracer {
  /**
   * A process was just selected for tracing (the kernel traces it already). Resolves when done.
   * again: it was told to a loader before (this one replaces it): told again, not counted again.
   */
  onTraced(pid: number, again?: boolean): Promise<void>;
  /** A new loader runs (the last one stopped): each binary's uprobes are named to it afresh. */
  reset(): void;
  readonly stats: GoStats;
}

export interface GoTracerOptions {
  capture: () => Pick<Capture, 'goProcess' | 'goUprobe'> | null;
  procRoot?: string;
  log(msg: string): void;
  /** Whether the threads of Go process `pid` link its calls: false until its goroutines are followed. */
  setThreadLinks(pid: number, links: boolean): void;
  read?: (path: string) => Promise<GoBinaryInfo>;
  /** Where goroutine starts are probed: 'auto' (the NOP5 when the binary has one) or 'ret' (tests). */
  parentProbe?: 'auto' | 'ret';
}

/**
 * A process's offsets: the round-trip probe off (pconnConn 0) without a net/http client; for a
 * position-independent binary the itab moved to where the process mapped the binary (its
 * mapping at file offset 0 in /proc/PID/maps), else off too.
 */
export function processOffsets(root: string, pid: number, exeInode: bigint, bin: GoBinaryInfo): GoBinaryInfo {
  if (!bin.roundTrip) return { ...bin, pconnConn: 0 };
  if (!bin.pie) return bin;
  const ino = String(exeInode);
  let maps = '';
  try {
    maps = readFileSync(`${root}/${pid}/maps`, 'latin1');
  } catch {
    return { ...bin, pconnConn: 0 };
  }
  // start-end perms offset dev inode path
  for (const line of maps.split('\n')) {
    const f = line.split(/\s+/, 6);
    if (f.length >= 6 && f[4] === ino && Number.parseInt(f[2], 16) === 0) {
      const start = Number.parseInt(f[0].split('-')[0], 16);
      return { ...bin, tcpConnItab: start - bin.loadVaddr + bin.tcpConnItab };
    }
  }
  return { ...bin, pconnConn: 0 };
}

export function createGoTracer(opts: GoTracerOptions): GoTracer {
  const root = opts.procRoot ?? '/proc';
  const read = opts.read ?? readGoBinary;
  const stats: GoStats = { byGoroutine: 0, byThread: 0, errors: 0 };
  // binary (dev:inode:mtime) → its info, and whether its uprobes were named to the loader
  const binaries = new Map<string, Promise<GoBinaryInfo>>();
  const attached = new Map<string, Promise<void>>();
  // binary → whether it has Go's build info section (read at once, before the tool answers)
  const goElf = new Map<string, boolean>();
  let toolWarned = false;

  async function onTraced(pid: number, again = false): Promise<void> {
    const exe = `${root}/${pid}/exe`;
    let key: string, ino: bigint;
    try {
      // As bigints: an overlay's inode numbers (xino) do not fit a double, and /proc/PID/maps
      // prints them whole.
      const st = statSync(exe, { bigint: true });
      ino = st.ino;
      key = `${st.dev}:${ino}:${st.mtimeNs}`;
    } catch {
      return; // gone, or a kernel thread
    }
    let isGo = goElf.get(key);
    if (isGo === undefined) goElf.set(key, (isGo = hasGoBuildInfo(exe)));
    // Until its goroutines are followed, its threads link nothing (they would link wrongly).
    if (isGo) opts.setThreadLinks(pid, false);
    let info = binaries.get(key);
    const first = !info;
    if (!info) {
      info = read(exe);
      binaries.set(key, info);
    }
    const bin = await info;
    if (!bin.goVersion) {
      // Not Go, or the reader itself is missing (a Go process then stays unlinked by thread):
      // say that once, or every Go process is silently traced without its goroutines.
      if (!toolWarned && bin.reason?.includes('failed') && bin.reason.includes('ENOENT')) {
        toolWarned = true;
        opts.log(`seqtrace agent: Go processes are traced without their goroutines, their calls joined to their requests by X-Request-ID only: ${bin.reason} (build it with npm run build)`);
      }
      return;
    }
    if (!bin.ok) {
      if (!again) stats.byThread++;
      opts.setThreadLinks(pid, false);
      if (first) opts.log(`seqtrace agent: Go process ${pid} (${exe}, ${bin.goVersion}) is traced without its goroutines, its calls joined to its requests by X-Request-ID only: ${bin.reason}`);
      return;
    }
    const cap = opts.capture();
    if (!cap) return;
    try {
      let up = attached.get(key);
      if (!up) {
        // The magic link resolves to the binary's inode, in whatever mount namespace it lives.
        up = (async () => {
          // One probe per goroutine started: the NOP5 (a call, not a trap, on kernels that
          // optimise it) when the compiler left one, else every RET of newproc1.
          if (bin.newprocNop5 && opts.parentProbe !== 'ret') await cap.goUprobe('newproc_nop5', exe, bin.newprocNop5);
          else for (const r of bin.newproc1Ret) await cap.goUprobe('newproc1_ret', exe, r);
          if (bin.roundTrip) await cap.goUprobe('roundtrip', exe, bin.roundTrip);
        })();
        attached.set(key, up);
        up.catch(() => attached.delete(key));
      }
      await up;
      await cap.goProcess(pid, processOffsets(root, pid, ino, bin));
      opts.setThreadLinks(pid, true); // by goroutine from now on
      if (!again) stats.byGoroutine++;
    } catch (e) {
      stats.errors++;
      opts.setThreadLinks(pid, false);
      opts.log(`seqtrace agent: Go process ${pid} (${exe}) is traced without its goroutines, its calls joined to its requests by X-Request-ID only: ${(e as Error).message}`);
    }
  }

  function reset(): void {
    attached.clear();
  }

  return { stats, onTraced, reset };
}
