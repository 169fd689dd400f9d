// What the kernel side reports, decoded. The byte layout is in src/bpf/seqtrace.h and is
// decoded by offset in ./decode.ts; this is the form the rest of the agent works with.
//
// The kernel's u64 fields (times, socket cookies, goroutine ids) are JavaScript numbers, not
// BigInts: a BigInt is a heap object per field per event, and its arithmetic, comparisons and
// Map hashing cost several times a number's on the agent's hot path. They are exact below 2^53:
// cookies and goroutine ids are counters that never get there, and CLOCK_MONOTONIC passes it
// after 104 days of uptime, from where a time is rounded to 2 ns (4 ns after 208 days): still
// exact to the microsecond that spans carry, and rounding keeps the order of events.

export type CaptureEventKind = 'data' | 'close' | 'shutdown' | 'exec' | 'exit' | 'thread' | 'thread_exit' | 'goroutine' | 'stats';

export interface DataEvent {
  kind: 'data';
  /** CLOCK_MONOTONIC nanoseconds when the bytes moved (convert with the agent's boot-time offset). */
  tsNs: number;
  /** Kernel socket cookie: unique for the life of the kernel, never reused. */
  sockId: number;
  pid: number;
  tid: number;
  /** Goroutine id for Go processes when known, else 0. */
  goid: number;
  /** 'send': the process wrote the bytes; 'recv': it read them. */
  dir: 'send' | 'recv';
  /** TCP sequence number (u32) of the first byte moved. */
  seq: number;
  /** Bytes moved by this call. */
  len: number;
  /** The first bytes moved (at most capture_bytes); may be shorter than len. */
  head: Buffer;
  /** The last bytes moved when len exceeds what head holds (for finding message ends); else empty. */
  tail: Buffer;
  /**
   * 4 or 6 for TCP (an IPv6 socket carrying IPv4 is 6, with ::ffff:a.b.c.d addresses), 'unix' for
   * a Unix stream socket: then `seq` counts this end's bytes in that direction since the capture
   * first saw the socket (not the peer's: ./unixpairs.ts pairs the two ends), addresses are ''
   * and ports 0.
   */
  family: 4 | 6 | 'unix';
  /** src is this process's own end of the connection, dst the peer (for sends and receives alike). */
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
  /** Unix: the peer's socket id (0 while the capture has not seen the peer); TCP: 0. */
  peerId: number;
  /** Unix: the socket file's path (`@name` for an abstract socket; '' unknown); TCP: ''. */
  unixPath: string;
  /** Bytes moved without a user buffer (sendfile, splice): counted, not captured. */
  noPayload: boolean;
  /** Reading the user buffer failed part-way: head/tail are shorter than they should be. */
  truncated: boolean;
  /**
   * The plaintext of an OpenSSL call on a TCP socket (HTTPS; src/bpf/tls.bpf.h): `sockId` is the
   * socket's id + TLS_ID (its ciphertext is muted in the kernel), `seq` the TCP sequence number
   * just past the TLS record it came in, the same number at both ends of the connection; not a
   * byte position (consecutive events do not continue each other's numbers).
   */
  tls: boolean;
}

/** Added to a socket's id in its TLS plaintext's events (ST_TLS_ID): the socket's close ends both. */
export const TLS_ID = 2 ** 51;

/**
 * `close`: a socket seen before ended (its process closed it and TCP is done with it), after
 * every byte its process moved; a Unix socket's: its process read the end of the stream (its
 * peer closed or shut its sending side; there is no event for a Unix socket's own close). `shutdown`: it sent its FIN (its process closed it or shut its
 * sending side): it sends nothing more, though its process may still read.
 */
export interface CloseEvent {
  kind: 'close' | 'shutdown';
  tsNs: number;
  sockId: number;
  pid: number;
}

export interface ProcessEvent {
  kind: 'exec' | 'exit';
  tsNs: number;
  pid: number;
  /** For exec: the parent pid; for exit: 0. */
  ppid: number;
  /**
   * Exec of a process that was not traced: the kernel traces it from here until `addPid` keeps
   * it or `removePid` ends it (ST_PROC_PROVISIONAL). Always false for exit.
   */
  provisional: boolean;
  /** For exec: the new image's name (comm, at most 15 bytes); what is left to select and name a process gone before the agent looked. '' for exit. */
  comm: string;
  /**
   * For exec, with CaptureOptions.execEnv: those variables of the new image's environment (the
   * loader read them microseconds after the exec); null when it could not (gone already, not
   * permitted) or none was set, and for exit.
   */
  env: Map<string, string> | null;
}

/**
 * A thread of a traced process created another thread of the same process. Reported before
 * the new thread runs, so it precedes every event of that thread.
 */
export interface ThreadEvent {
  kind: 'thread';
  tsNs: number;
  /** The process (tgid) of both threads. */
  pid: number;
  /** The new thread. */
  tid: number;
  /** The thread that created it. */
  ptid: number;
}

/**
 * A thread of a traced process ended, not its last one (that is an `exit` of the process).
 * In stream order with the thread's own events: nothing of it follows.
 */
export interface ThreadExitEvent {
  kind: 'thread_exit';
  tsNs: number;
  pid: number;
  /** The thread that ended. */
  tid: number;
}

/**
 * A goroutine of a traced Go process started another (runtime.newproc1, src/bpf/go.bpf.h).
 * Reported before the new goroutine runs, so it precedes every event of it.
 */
export interface GoroutineEvent {
  kind: 'goroutine';
  tsNs: number;
  pid: number;
  /** The thread that ran newproc1. */
  tid: number;
  /** The new goroutine. */
  goid: number;
  /** The goroutine that started it. */
  pgoid: number;
}

/** Kernel counters, reported periodically by the loader. */
export interface StatsEvent {
  kind: 'stats';
  /** Events the ring buffer had no room for. */
  ringbufDrops: number;
  /** Events emitted so far. */
  events: number;
  /** Captures cut short (buffer could not be read completely). */
  truncated: number;
  /** CPU time the loader process has used so far (user+system), nanoseconds. */
  loaderCpuNs: number;
  /** Events that reached the loader after it had written out later-stamped ones, so that the
   *  stream left time order (should stay 0: the loader writes out only events 10 ms old). */
  late: number;
}

export type CaptureEvent = DataEvent | CloseEvent | ProcessEvent | ThreadEvent | ThreadExitEvent | GoroutineEvent | StatsEvent;
