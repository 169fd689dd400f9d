// HTTPS through OpenSSL (trace_tls): when a traced process maps libssl (nginx, curl, Python's
// ssl, PHP, Ruby), the loader attaches OpenSSL's probes to that process (src/bpf/tls_probes.c),
// and its calls' plaintext arrives as data events of their sockets (DataEvent.tls). Looked at
// when a process is selected and at each exec of a traced one (a binary seen using libssl is
// probed at once, before its dynamic loader maps it); a process may also load libssl later
// (Python imports ssl when first used): the agent asks again when it sees one of its
// connections start a TLS handshake (`onHandshake`), the probes then catch the calls after it.
// Processes whose TLS is not OpenSSL's with a socket BIO (Go's crypto/tls, Java, Node.js's
// memory BIO, rustls) have their ciphertext muted as any other protocol's.
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { Capture } from '../capture/loader.js';

export interface TlsStats {
  /** Processes whose OpenSSL calls are probed. */
  processes: number;
  /** Processes whose probes the kernel refused (the loader said why on its stderr). */
  errors: number;
}

export interface TlsTracer {
  /** A process was just selected for tracing (the kernel traces it already). Resolves when done. */
  onTraced(pid: number): Promise<void>;
  /**
   * A traced process called exec (a new image: a shell's exec of curl). A binary whose processes
   * used libssl before: probed at once; one not known yet: looked at now and, while it maps no
   * libssl, again 5, 20, 100 and 500 ms later (its dynamic loader maps it after the exec).
   */
  onExec(pid: number): void;
  /** A connection of traced process `pid` began a TLS handshake the probes did not see: look again. */
  onHandshake(pid: number): void;
  /** The process is gone: forget it. */
  onExit(pid: number): void;
  /** A new loader runs: every process is told to it afresh by onTraced. */
  reset(): void;
  readonly stats: TlsStats;
}

export interface TlsTracerOptions {
  /** trace_tls: false, and nothing is probed. */
  enabled: boolean;
  capture: () => Pick<Capture, 'tlsProcess'> | null;
  procRoot?: string;
  log(msg: string): void;
}

/** libssl.so, libssl.so.3, libssl.so.1.1 (not NSS's libssl3.so). */
const LIBSSL = /\/libssl\.so(\.\d+)*$/;

/** The path of the libssl process `pid` maps, as /proc/PID/maps names it; '' when none (or gone). */
export function mappedLibssl(root: string, pid: number): string {
  let maps: string;
  try {
    maps = readFileSync(`${root}/${pid}/maps`, 'latin1');
  } catch {
    return '';
  }
  let at = maps.indexOf('libssl.so');
  while (at >= 0) {
    const start = maps.lastIndexOf('\n', at) + 1;
    let end = maps.indexOf('\n', at);
    if (end < 0) end = maps.length;
    // start-end perms offset dev inode path: the path is the rest of the line
    const path = maps.slice(start, end).split(/\s+/).slice(5).join(' ');
    if (LIBSSL.test(path)) return path;
    at = maps.indexOf('libssl.so', end);
  }
  return '';
}

/** A handshake looked for again at most this often per process. */
const RECHECK_MS = 5000;

/** After an exec the dynamic loader has yet to map the image's libraries: looked at again after these delays (ms). */
const LATER_MS = [5, 20, 100, 500];

export function createTlsTracer(opts: TlsTracerOptions): TlsTracer {
  const root = opts.procRoot ?? '/proc';
  const stats: TlsStats = { processes: 0, errors: 0 };
  // pid → the library its probes are on
  const probed = new Map<number, string>();
  // pid → when a handshake last made the agent look
  const looked = new Map<number, number>();
  // binary (dev:inode of its executable) → the libssl its processes mapped, '' none once loaded:
  // a process of a binary known to use libssl gets its probes at its exec, before its dynamic
  // loader maps the library (a uprobe with a pid waits for the file to be mapped), so that a
  // client making its call milliseconds after its exec (curl) is seen from its first call.
  const binaries = new Map<string, string>();
  // The kernel refuses uprobes to this agent altogether (no uprobe_multi links, perf-event
  // uprobes without CAP_SYS_ADMIN, tracefs not writable: docs/agent.md, "Privileges"): said
  // once, then no process is probed, rather than a refusal logged for every process using TLS.
  let refusedForGood = false;

  function binaryOf(pid: number): string {
    try {
      const st = statSync(`${root}/${pid}/exe`, { bigint: true });
      return `${st.dev}:${st.ino}`;
    } catch {
      return ''; // gone, or a kernel thread
    }
  }

  async function probe(pid: number, lib: string): Promise<void> {
    const cap = opts.capture();
    if (!cap || refusedForGood || probed.get(pid) === lib) return;
    probed.set(pid, lib);
    try {
      // through the process's root: a process in another mount namespace has its own library
      await cap.tlsProcess(pid, `${root}/${pid}/root${lib}`);
      stats.processes++;
    } catch (e) {
      if (!existsSync(`${root}/${pid}`)) return; // it exited meanwhile (a short client): nothing to say
      stats.errors++;
      const msg = (e as Error).message;
      if (/CAP_SYS_ADMIN/.test(msg)) {
        if (!refusedForGood) opts.log(`seqtrace agent: HTTPS is not traced on this host (trace_tls): ${msg}`);
        refusedForGood = true;
        return;
      }
      opts.log(`seqtrace agent: process ${pid}'s HTTPS is not traced (OpenSSL's probes on ${lib}): ${msg}`);
    }
  }

  /** attempt: after an exec, the how-manieth look (-1: not after an exec, no other look). */
  async function onTraced(pid: number, attempt = -1): Promise<void> {
    if (!opts.enabled) return;
    const lib = mappedLibssl(root, pid);
    const bin = binaryOf(pid);
    if (lib) {
      if (bin) binaries.set(bin, lib);
      return probe(pid, lib);
    }
    if (attempt < 0 || probed.has(pid)) return;
    if (attempt < LATER_MS.length) setTimeout(() => void onTraced(pid, attempt + 1), LATER_MS[attempt]).unref();
    else if (bin && !binaries.has(bin)) binaries.set(bin, ''); // loaded without it: no more looks at its execs
  }

  function onExec(pid: number): void {
    if (!opts.enabled) return;
    // (probes on the old image's library stay on the pid: they cover the new image's if it is the same file)
    const known = binaries.get(binaryOf(pid));
    if (known) void probe(pid, known);
    else if (known === undefined) void onTraced(pid, 0);
  }

  return {
    stats,
    onTraced: (pid) => onTraced(pid),
    onExec,
    onHandshake(pid) {
      if (probed.has(pid)) return;
      const now = Date.now();
      if (now - (looked.get(pid) ?? -Infinity) < RECHECK_MS) return;
      looked.set(pid, now);
      void onTraced(pid);
    },
    onExit(pid) {
      probed.delete(pid);
      looked.delete(pid);
    },
    reset() {
      probed.clear();
      looked.clear();
    },
  };
}
