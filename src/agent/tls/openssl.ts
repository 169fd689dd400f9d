// HTTPS through OpenSSL: when a traced process maps libssl (nginx, curl, Python's ssl, PHP,
// Ruby), the loader attaches OpenSSL's probes to that process (src/bpf/tls_probes.c), and its
// calls' plaintext arrives as data events of their sockets (DataEvent.tls). A process may load
// libssl after it was selected (Python imports ssl when first used): the agent asks again when it
// sees one of its connections start a TLS handshake (`onHandshake`), the probes then catch the
// calls after it. Processes whose TLS is not OpenSSL's with a socket BIO (Go's crypto/tls, Java,
// Node.js's memory BIO, rustls) have their ciphertext muted as any other protocol's.
import { readFileSync } from 'node:fs';
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

export function createTlsTracer(opts: TlsTracerOptions): TlsTracer {
  const root = opts.procRoot ?? '/proc';
  const stats: TlsStats = { processes: 0, errors: 0 };
  // pid → the library its probes are on
  const probed = new Map<number, string>();
  // pid → when a handshake last made the agent look
  const looked = new Map<number, number>();

  // A process selected at its exec has not mapped its libraries yet (the dynamic loader runs
  // after the exec): looked at again after these delays (ms), while it has none.
  const LATER_MS = [5, 20, 100, 500];

  async function onTraced(pid: number, attempt = 0): Promise<void> {
    if (!opts.enabled) return;
    const lib = mappedLibssl(root, pid);
    if (!lib) {
      if (attempt < LATER_MS.length && !probed.has(pid)) setTimeout(() => void onTraced(pid, attempt + 1), LATER_MS[attempt]).unref();
      return;
    }
    if (probed.get(pid) === lib) return;
    const cap = opts.capture();
    if (!cap) return;
    probed.set(pid, lib);
    try {
      // through the process's root: a process in another mount namespace has its own library
      await cap.tlsProcess(pid, `${root}/${pid}/root${lib}`);
      stats.processes++;
    } catch (e) {
      stats.errors++;
      opts.log(`seqtrace agent: process ${pid}'s HTTPS is not traced (OpenSSL's probes on ${lib}): ${(e as Error).message}`);
    }
  }

  return {
    stats,
    onTraced: (pid) => onTraced(pid),
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
