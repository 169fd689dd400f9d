// Runs the eBPF loader (src/bpf/loader.c) as a child process and turns its stdout into
// CaptureEvents. The loader holds the programs and maps; when it exits (close(), or this
// process dying and its stdin reaching EOF) the kernel side is gone with it.

import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Readable, Writable } from 'node:stream';
import { seqError, type SeqError } from '../../errors.js';
import { decodeFrame, frameReader, type ControlFrame } from './decode.js';
import type { CaptureEvent, StatsEvent } from './event.js';

const CAPTURE_MODES = ['socket', 'syscall', 'auto'] as const;
export type CaptureMode = (typeof CAPTURE_MODES)[number];
const UPROBE_WAYS = ['auto', 'perf', 'tracefs', 'perf-or-tracefs'] as const;

export interface CaptureOptions {
  /** socket: tp_btf sock_send/recv_length (6.3+); syscall: syscall tracepoints; auto: socket when the kernel has it. */
  mode?: CaptureMode;
  /** Head bytes copied per message, 0..4096 (config `capture_bytes`). */
  captureBytes?: number;
  /** Ring buffer size, a power of two (default 4 MiB). */
  ringbufBytes?: number;
  /** Processes traced from the start. */
  pids?: number[];
  /**
   * Trace every process that execs from its exec on, until addPid keeps it or removePid ends it
   * (its exec event says `provisional`): the agent decides at the exec event, and what the
   * process sends meanwhile is not lost. Default false: only what addPid says is traced.
   */
  provisionalExec?: boolean;
  /**
   * Environment variables an exec event carries (ProcessEvent.env), read by the loader as it
   * takes the event: what selects and names a process that is gone before the agent reads /proc.
   * At most 16 names, each without '=' and under 64 bytes.
   */
  execEnv?: readonly string[];
  /**
   * How Go and OpenSSL uprobes are attached (docs/kernel.md, "Uprobes and privileges"): 'auto'
   * (default: uprobe_multi links where the kernel has them, else perf events, else tracefs
   * events), or 'perf-or-tracefs' (what auto does without links), only 'perf' or only
   * 'tracefs' events (older kernels' ways, for tests).
   */
  uprobes?: (typeof UPROBE_WAYS)[number];
  /** The loader binary; default src/bpf/build/seqtrace-loader (env SEQTRACE_LOADER overrides). */
  loaderPath?: string;
  /** Events of one drain of the ring buffer (the array is not reused by the caller's next call). */
  onEvents(events: CaptureEvent[]): void;
  /** The loader failed after starting (died, bad frame). Capture has stopped. */
  onError(err: SeqError): void;
}

export interface Capture {
  /** The mode the loader chose. */
  readonly mode: 'socket' | 'syscall';
  /** The loader process (owner of the BPF programs and maps). */
  readonly loaderPid: number;
  /** Trace a process (tgid); resolves once the kernel map holds it. Its children are traced by the kernel. */
  addPid(pid: number): Promise<void>;
  /** Stop tracing a process; resolves once the kernel map no longer holds it. */
  removePid(pid: number): Promise<void>;
  /**
   * Go process (src/bpf/go.bpf.h): where its goroutine ids are. Its data events then carry
   * goids, and round trips of its HTTP client the caller's goid. Resolves once the kernel has it.
   */
  goProcess(pid: number, offsets: GoProcOffsets): Promise<void>;
  /** Name a Go uprobe of the binary at `path` (file offset): attached to each of its processes given to goProcess (src/bpf/go_probes.c). */
  goUprobe(which: 'newproc1_ret' | 'newproc_nop5' | 'roundtrip' | 'execute', path: string, offset: number): Promise<void>;
  /**
   * A process using OpenSSL: its calls' plaintext becomes data events of their sockets (ST_F_TLS,
   * src/bpf/tls.bpf.h), the probes attached to that process only, on the libssl at `path`
   * (src/bpf/tls_probes.c). Resolves once attached.
   */
  tlsProcess(pid: number, path: string): Promise<void>;
  /**
   * Send `shutdown` events (a traced socket sent its FIN) from now on: every TCP state change on
   * the host then runs a program (≈ 50 ns, ≈ 5 a connection), so only once they are of use.
   */
  wantShutdowns(): Promise<void>;
  /**
   * Stop sending the data events of a socket (its close still comes): it carries no HTTP/1.
   * Resolves false when the kernel refused (sockets.bpf.h, `muted`).
   */
  mute(sockId: number): Promise<boolean>;
  /** The latest counters (updated every second, and by refreshStats()). */
  stats(): StatsEvent;
  /** Ask the loader for the counters now. */
  refreshStats(): Promise<StatsEvent>;
  /** Detach every program and free every map (the loader exits); resolves when it has. */
  close(): Promise<void>;
}

/** The offsets of src/bpf/seqtrace.h struct st_go_proc (from src/agent/go/gooffsets). */
export interface GoProcOffsets {
  tlsOffset: number;
  goidOffset: number;
  /** 0: no round-trip probe (the binary has no net/http client). */
  pconnConn: number;
  tcpConnItab: number;
  tcpConnFd: number;
  netFdSysfd: number;
  /** g.m and m.curg: the parent goroutine at newproc1's RET (on g0). */
  gM: number;
  mCurg: number;
}

const EXIT_UNAVAILABLE = 2;

export function defaultLoaderPath(): string {
  if (process.env.SEQTRACE_LOADER) return process.env.SEQTRACE_LOADER;
  // from src/agent/capture (tsx) or dist/agent/capture (compiled), the binary is in src/bpf/build
  for (const rel of ['../../bpf/build/seqtrace-loader', '../../../src/bpf/build/seqtrace-loader']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  return fileURLToPath(new URL('../../bpf/build/seqtrace-loader', import.meta.url));
}

/** The most variables an exec event carries (the loader's EXEC_ENV_NAMES). */
export const EXEC_ENV_MAX = 16;
/** A name the loader takes for --exec-env: 1 to 63 bytes (EXEC_ENV_NAME_MAX - 1), no '=' or NUL. */
export const isExecEnvName = (n: string): boolean => /^[^=\0]+$/.test(n) && Buffer.byteLength(n) <= 63;

function checkOptions(o: CaptureOptions): string[] {
  const args: string[] = ['--mode', o.mode ?? 'auto'];
  if (!CAPTURE_MODES.includes(o.mode ?? 'auto')) {
    throw seqError('SEQ_ERR_EBPF_LOAD', `capture mode "${o.mode}" is not one of ${CAPTURE_MODES.join(', ')}`);
  }
  if (o.captureBytes !== undefined) {
    if (!Number.isInteger(o.captureBytes) || o.captureBytes < 0 || o.captureBytes > 4096) {
      throw seqError('SEQ_ERR_EBPF_LOAD', `capture_bytes ${o.captureBytes} is not an integer from 0 to 4096`);
    }
    args.push('--capture-bytes', String(o.captureBytes));
  }
  if (o.ringbufBytes !== undefined) {
    const r = o.ringbufBytes;
    if (!Number.isInteger(r) || r < 4096 || (r & (r - 1)) !== 0) {
      throw seqError('SEQ_ERR_EBPF_LOAD', `ring buffer size ${r} is not a power of two of at least 4096`);
    }
    args.push('--ringbuf-bytes', String(r));
  }
  for (const pid of o.pids ?? []) args.push('--pid', String(pid));
  if (o.provisionalExec) args.push('--provisional-exec');
  if (o.uprobes !== undefined) {
    if (!UPROBE_WAYS.includes(o.uprobes)) throw seqError('SEQ_ERR_EBPF_LOAD', `uprobes "${o.uprobes}" is not one of ${UPROBE_WAYS.join(', ')}`);
    args.push('--uprobes', o.uprobes);
  }
  const env = o.execEnv ?? [];
  if (env.length > EXEC_ENV_MAX || !env.every(isExecEnvName)) {
    throw seqError('SEQ_ERR_EBPF_LOAD', `exec environment names ${JSON.stringify(env)}: at most ${EXEC_ENV_MAX}, each 1 to 63 bytes without '='`);
  }
  for (const n of env) args.push('--exec-env', n);
  return args;
}

/** Loads the eBPF programs and starts streaming. Rejects with SEQ_ERR_EBPF_UNAVAILABLE or SEQ_ERR_EBPF_LOAD naming the cause. */
export function startCapture(opts: CaptureOptions): Promise<Capture> {
  let args: string[];
  try {
    args = checkOptions(opts);
  } catch (e) {
    return Promise.reject(e);
  }
  const bin = opts.loaderPath ?? defaultLoaderPath();
  if (!existsSync(bin)) {
    return Promise.reject(seqError('SEQ_ERR_EBPF_LOAD', `the eBPF loader ${bin} is missing: build it with \`make -C src/bpf\` (npm run build)`));
  }
  const child: ChildProcessByStdio<Writable, Readable, Readable> = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  let stderrChars = 0; // ever received: where a command's messages begin (loaderSaid)
  let ready = false;
  let closing = false;
  let failed = false;
  let latest: StatsEvent = { kind: 'stats', ringbufDrops: 0, events: 0, truncated: 0, loaderCpuNs: 0, late: 0 };
  // commands are answered in order: one ACK each
  const waiting: Array<{ resolve: (ok: boolean) => void; reject: (e: Error) => void }> = [];
  const statsWaiting: Array<(s: StatsEvent) => void> = [];
  let batch: CaptureEvent[] = [];

  return new Promise<Capture>((resolveStart, rejectStart) => {
    const fail = (err: SeqError) => {
      if (failed) return;
      failed = true;
      for (const w of waiting.splice(0)) w.reject(err);
      if (!ready) rejectStart(err);
      else if (!closing) opts.onError(err);
    };

    const onFrame = (b: Buffer, at: number, size: number) => {
      let ev: CaptureEvent | ControlFrame;
      try {
        ev = decodeFrame(b, at, size);
      } catch (e) {
        fail(seqError('SEQ_ERR_EBPF_LOAD', `the eBPF loader sent a bad frame: ${(e as Error).message}`));
        child.kill('SIGTERM');
        return;
      }
      switch (ev.kind) {
        case 'ready':
          ready = true;
          resolveStart(capture(ev.mode));
          return;
        case 'ack':
          waiting.shift()?.resolve(ev.ok);
          return;
        case 'stats':
          latest = ev;
          for (const r of statsWaiting.splice(0)) r(ev);
          batch.push(ev);
          return;
        default:
          batch.push(ev);
      }
    };
    const read = frameReader(onFrame);
    child.stdout.on('data', (chunk: Buffer) => {
      read(chunk);
      // the loader flushes once per drain, so one chunk is about one drain
      if (batch.length > 0) {
        const out = batch;
        batch = [];
        opts.onEvents(out);
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      stderr = (stderr + s).slice(-8192);
      stderrChars += s.length;
    });
    child.stdin.on('error', () => { /* the exit handler reports why */ });
    child.on('error', (e) => fail(seqError('SEQ_ERR_EBPF_LOAD', `cannot run the eBPF loader ${bin}: ${e.message}`)));
    // 'close', not 'exit': the reason is the loader's last stderr lines, and 'exit' can come
    // before the pipe has been read to its end.
    child.on('close', (code, signal) => {
      if (closing && ready) return;
      const why = lastLines(stderr) || `exit ${code ?? signal}`;
      const code2 = code === EXIT_UNAVAILABLE ? 'SEQ_ERR_EBPF_UNAVAILABLE' : 'SEQ_ERR_EBPF_LOAD';
      fail(seqError(code2, ready ? `the eBPF loader stopped: ${why}` : `eBPF capture could not start: ${why}`));
    });

    function command(line: string): Promise<boolean> {
      if (failed || closing) return Promise.reject(seqError('SEQ_ERR_EBPF_LOAD', 'eBPF capture is not running'));
      return new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        child.stdin.write(line + '\n');
      });
    }

    /**
     * A refused command's reason: the loader's own lines on stderr since `mark` (stderrChars
     * when it was sent). They come on the other pipe than its ACK, so maybe just after it.
     */
    async function loaderSaid(mark: number): Promise<string> {
      await new Promise((resolve) => setTimeout(resolve, 20));
      const said = stderr.slice(Math.max(0, stderr.length - (stderrChars - mark)));
      return lastLines(said) || 'the loader gave no reason';
    }

    function pidCommand(verb: 'add' | 'del', pid: number): Promise<void> {
      if (!Number.isInteger(pid) || pid <= 0 || pid > 0x7fffffff) {
        return Promise.reject(seqError('SEQ_ERR_EBPF_LOAD', `pid ${pid} is not a positive integer`));
      }
      return command(`${verb} ${pid}`).then((ok) => {
        if (!ok) throw seqError('SEQ_ERR_EBPF_LOAD', `the kernel refused to ${verb === 'add' ? 'trace' : 'untrace'} pid ${pid} (a pid past kernel.pid_max as it was when capture started?)`);
      });
    }

    function capture(mode: 'socket' | 'syscall'): Capture {
      return {
        mode,
        loaderPid: child.pid ?? 0,
        addPid: (pid) => pidCommand('add', pid),
        removePid: (pid) => pidCommand('del', pid),
        goProcess(pid, o) {
          const nums = [o.tlsOffset, o.goidOffset, o.pconnConn, o.tcpConnItab, o.tcpConnFd, o.netFdSysfd, o.gM, o.mCurg];
          if (!Number.isInteger(pid) || pid <= 0 || !nums.every(Number.isSafeInteger) || nums.slice(1).some((n) => n < 0)) {
            return Promise.reject(seqError('SEQ_ERR_EBPF_LOAD', `go offsets for pid ${pid} are not integers (tls may be negative, others not): ${nums.join(' ')}`));
          }
          const mark = stderrChars;
          return command(`go ${pid} ${nums.join(' ')}`).then(async (ok) => {
            if (!ok) throw seqError('SEQ_ERR_EBPF_LOAD', `the kernel refused the Go offsets or uprobes of pid ${pid}: ${await loaderSaid(mark)}`);
          });
        },
        goUprobe(which, path, offset) {
          if (!Number.isSafeInteger(offset) || offset < 0 || /[\n\r]/.test(path) || !path.startsWith('/')) {
            return Promise.reject(seqError('SEQ_ERR_EBPF_LOAD', `uprobe ${which}: offset ${offset} / path ${JSON.stringify(path)} not accepted (an absolute path without newlines, a non-negative offset)`));
          }
          const mark = stderrChars;
          return command(`uprobe ${which} ${offset} ${path}`).then(async (ok) => {
            if (!ok) throw seqError('SEQ_ERR_EBPF_LOAD', `the ${which} uprobe at offset ${offset} of ${path} was refused: ${await loaderSaid(mark)}`);
          });
        },
        tlsProcess(pid, path) {
          if (!Number.isInteger(pid) || pid <= 0 || /[\n\r]/.test(path) || !path.startsWith('/')) {
            return Promise.reject(seqError('SEQ_ERR_EBPF_LOAD', `tls: pid ${pid} / path ${JSON.stringify(path)} not accepted (a positive pid, an absolute path without newlines)`));
          }
          const mark = stderrChars;
          return command(`tls ${pid} ${path}`).then(async (ok) => {
            if (!ok) throw seqError('SEQ_ERR_EBPF_LOAD', `the kernel refused OpenSSL's uprobes on ${path} for pid ${pid}: ${await loaderSaid(mark)}`);
          });
        },
        wantShutdowns() {
          const mark = stderrChars;
          return command('shutdowns').then(async (ok) => {
            if (!ok) throw seqError('SEQ_ERR_EBPF_LOAD', `attaching sock_state for shutdown events failed: ${await loaderSaid(mark)}`);
          });
        },
        mute: (sockId) => {
          if (!Number.isSafeInteger(sockId) || sockId <= 0) return Promise.reject(seqError('SEQ_ERR_EBPF_LOAD', `mute: socket id ${sockId} is not a positive integer`));
          return command(`mute ${sockId}`);
        },
        stats: () => latest,
        refreshStats: () => new Promise<StatsEvent>((resolve, reject) => {
          statsWaiting.push(resolve);
          command('stats').catch(reject);
        }),
        close: () => {
          if (closing) return exited;
          closing = true;
          if (child.exitCode === null && child.signalCode === null) {
            child.stdin.end();
            child.kill('SIGTERM');
          }
          return exited;
        },
      };
    }
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null) resolve();
      else child.once('close', () => resolve());
    });
  });
}

function lastLines(s: string): string {
  // the loader's own message is its last line; libbpf's verifier log comes before it
  const lines = s.trim().split('\n').filter((l) => l.length > 0);
  const own = lines.filter((l) => l.startsWith('seqtrace-loader:'));
  const pick = own.length > 0 ? own : lines.slice(-3);
  return pick.join('; ');
}
