// What the kernel side reports, decoded. The byte layout is in src/bpf/seqtrace.h and is
// decoded by offset in ./decode.ts; this is the form the rest of the agent works with.

export type CaptureEventKind = 'data' | 'close' | 'exec' | 'exit' | 'thread' | 'goroutine' | 'stats';

export interface DataEvent {
  kind: 'data';
  /** CLOCK_MONOTONIC nanoseconds when the bytes moved (convert with the agent's boot-time offset). */
  tsNs: bigint;
  /** Kernel socket cookie: unique for the life of the kernel, never reused. */
  sockId: bigint;
  pid: number;
  tid: number;
  /** Goroutine id for Go processes when known, else 0n. */
  goid: bigint;
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
  /** 4 or 6 (an IPv6 socket carrying IPv4 is 6, with ::ffff:a.b.c.d addresses) */
  family: 4 | 6;
  /** src is this process's own end of the connection, dst the peer (for sends and receives alike). */
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
  /** Bytes moved without a user buffer (sendfile, splice): counted, not captured. */
  noPayload: boolean;
  /** Reading the user buffer failed part-way: head/tail are shorter than they should be. */
  truncated: boolean;
}

export interface CloseEvent {
  kind: 'close';
  tsNs: bigint;
  sockId: bigint;
  pid: number;
}

export interface ProcessEvent {
  kind: 'exec' | 'exit';
  tsNs: bigint;
  pid: number;
  /** For exec: the parent pid; for exit: 0. */
  ppid: number;
}

/**
 * A thread of a traced process created another thread of the same process. Reported before
 * the new thread runs, so it precedes every event of that thread.
 */
export interface ThreadEvent {
  kind: 'thread';
  tsNs: bigint;
  /** The process (tgid) of both threads. */
  pid: number;
  /** The new thread. */
  tid: number;
  /** The thread that created it. */
  ptid: number;
}

/**
 * A goroutine of a traced Go process started another (runtime.newproc1, src/bpf/go.bpf.h).
 * Reported before the new goroutine runs, so it precedes every event of it.
 */
export interface GoroutineEvent {
  kind: 'goroutine';
  tsNs: bigint;
  pid: number;
  /** The thread that ran newproc1. */
  tid: number;
  /** The new goroutine. */
  goid: bigint;
  /** The goroutine that started it. */
  pgoid: bigint;
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
}

export type CaptureEvent = DataEvent | CloseEvent | ProcessEvent | ThreadEvent | GoroutineEvent | StatsEvent;
