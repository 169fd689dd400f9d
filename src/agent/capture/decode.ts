// Decodes the loader's stdout (src/bpf/loader.c) into CaptureEvents, by offset.
// The stream is frames: u32 little-endian length, then the bytes of one struct of
// src/bpf/seqtrace.h, whose first byte is its kind. LAYOUT below mirrors the C structs;
// decode.test.ts compares it with `seqtrace-loader --print-layout`.

import type { CaptureEvent, DataEvent } from './event.js';

export const LAYOUT = {
  data: {
    kind: 0, dir: 1, family: 2, flags: 3, pid: 4, tid: 8, seq: 12, ts_ns: 16, sock_id: 24, goid: 32,
    len: 40, head_len: 44, tail_len: 46, src_port: 48, dst_port: 50, path_len: 52, src_addr: 56, dst_addr: 72,
    tail: 88, head: 120, size: 120,
  },
  close: { kind: 0, pid: 4, ts_ns: 8, sock_id: 16, size: 24 },
  proc: { kind: 0, flags: 1, pid: 4, ppid: 8, ts_ns: 16, comm: 24, size: 40 },
  thread: { kind: 0, pid: 4, tid: 8, ptid: 12, ts_ns: 16, size: 24 },
  goroutine: { kind: 0, pid: 4, tid: 8, goid: 16, pgoid: 24, ts_ns: 32, size: 40 },
  stats: { kind: 0, events: 8, drops: 16, truncated: 24, loader_cpu_ns: 32, late: 40, size: 48 },
  ready: { kind: 0, mode: 1, capture_bytes: 2, ringbuf_bytes: 4, size: 8 },
  ack: { kind: 0, ok: 1, pid: 4, size: 8 },
  kinds: { data: 1, close: 2, exec: 3, exit: 4, stats: 5, ready: 6, ack: 7, thread: 8, goroutine: 9, thread_exit: 12, shutdown: 13 },
  tailBytes: 32,
  captureMax: 4096,
} as const;

const D = LAYOUT.data;
const K = LAYOUT.kinds;
const F_NO_PAYLOAD = 1;
const F_TRUNCATED = 2;
const F_TLS = 64;
const PROC_PROVISIONAL = 1; // ST_PROC_PROVISIONAL (seqtrace.h)
const EMPTY = Buffer.alloc(0);

/** Frames only the loader's client sees: READY once, ACK per stdin command. */
export type ControlFrame =
  | { kind: 'ready'; mode: 'socket' | 'syscall'; captureBytes: number; ringbufBytes: number }
  | { kind: 'ack'; ok: boolean; pid: number };

function ipv4(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

// Fields are read with byte arithmetic: Buffer's readUInt32LE & co validate their arguments
// and were called ~15 times per data event (callers guarantee the frame is whole).
function u32(b: Buffer, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16)) + b[at + 3] * 0x1000000;
}

function u16(b: Buffer, at: number): number {
  return b[at] | (b[at + 1] << 8);
}

// Every data event carries both addresses, and a busy host talks to few of them: the text
// form is looked up by the address's 32 bits instead of being built twice per event.
const ipv4Text = new Map<number, string>();
function ipv4Cached(b: Buffer, at: number): string {
  const key = u32(b, at);
  let s = ipv4Text.get(key);
  if (s === undefined) {
    if (ipv4Text.size >= 4096) ipv4Text.clear();
    s = ipv4(b, at);
    ipv4Text.set(key, s);
  }
  return s;
}

const ipv6Text = new Map<string, string>();
function ipv6Cached(b: Buffer, at: number): string {
  const key = b.toString('latin1', at, at + 16);
  let s = ipv6Text.get(key);
  if (s === undefined) {
    if (ipv6Text.size >= 4096) ipv6Text.clear();
    s = ipv6(b, at);
    ipv6Text.set(key, s);
  }
  return s;
}

/**
 * `NAME=value\0` strings in b[from..to), as /proc/PID/environ holds them and an exec frame's
 * tail (the loader's --exec-env) carries them; a string without '=' is skipped.
 */
export function parseEnviron(b: Buffer, from = 0, to = b.length): Map<string, string> {
  const env = new Map<string, string>();
  for (let at = from; at < to;) {
    let nul = b.indexOf(0, at);
    if (nul < 0 || nul > to) nul = to;
    const eq = b.indexOf(0x3d, at);
    if (eq > at && eq < nul) env.set(b.toString('utf8', at, eq), b.toString('utf8', eq + 1, nul));
    at = nul + 1;
  }
  return env;
}

/** An exec frame's tail: its variables, null when none. */
function execEnv(b: Buffer, from: number, to: number): Map<string, string> | null {
  const env = parseEnviron(b, from, to);
  return env.size ? env : null;
}

/** A NUL-terminated string in a field of n bytes (a comm: the kernel's bytes, latin1 as /proc's stat is read). */
function cString(b: Buffer, at: number, n: number): string {
  const nul = b.indexOf(0, at);
  return b.toString('latin1', at, nul < 0 || nul > at + n ? at + n : nul);
}

/** u64 at `at` as a number: exact below 2^53, rounded above (event.ts says why that is enough). */
function u64(b: Buffer, at: number): number {
  return u32(b, at + 4) * 4294967296 + u32(b, at);
}

/** RFC 5952 text form (longest zero run as ::, IPv4-mapped as ::ffff:a.b.c.d). */
export function ipv6(b: Buffer, at: number): string {
  let mapped = true;
  for (let i = 0; i < 10; i++) if (b[at + i] !== 0) { mapped = false; break; }
  if (mapped && b[at + 10] === 0xff && b[at + 11] === 0xff) return `::ffff:${ipv4(b, at + 12)}`;
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(b.readUInt16BE(at + i));
  let bestAt = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) { bestAt = i; bestLen = j - i; }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(':');
  if (bestAt < 0) return hex(words);
  return `${hex(words.slice(0, bestAt))}::${hex(words.slice(bestAt + bestLen))}`;
}

const FAMILY_UNIX = 1; // ST_FAMILY_UNIX

/** A Unix socket's path as the kernel keeps it: up to its NUL, or `@` + an abstract name (which begins with one). */
function unixPath(b: Buffer, from: number, to: number): string {
  if (from >= to) return '';
  if (b[from] === 0) return `@${b.toString('utf8', from + 1, to)}`;
  const nul = b.indexOf(0, from);
  return b.toString('utf8', from, nul < 0 || nul > to ? to : nul);
}

function decodeData(b: Buffer, at: number, size: number): DataEvent {
  const flags = b[at + D.flags];
  const headLen = Math.min(u16(b, at + D.head_len), size - D.head);
  const tailLen = Math.min(u16(b, at + D.tail_len), LAYOUT.tailBytes);
  const headEnd = at + D.head + headLen;
  const unix = b[at + D.family] === FAMILY_UNIX;
  const family = unix ? 'unix' : b[at + D.family] === 4 ? 4 : 6;
  return {
    kind: 'data',
    tsNs: u64(b, at + D.ts_ns),
    sockId: u64(b, at + D.sock_id),
    pid: u32(b, at + D.pid),
    tid: u32(b, at + D.tid),
    goid: u64(b, at + D.goid),
    dir: b[at + D.dir] === 1 ? 'send' : 'recv',
    seq: u32(b, at + D.seq),
    len: u32(b, at + D.len),
    // views into the frame, not copies: the stream never rewrites a chunk once read
    head: headLen > 0 ? b.subarray(at + D.head, headEnd) : EMPTY,
    tail: tailLen > 0 ? b.subarray(at + D.tail, at + D.tail + tailLen) : EMPTY,
    family,
    // (a Unix socket's ports are 0, its addresses none: its peer's id and its path instead)
    srcIp: unix ? '' : family === 4 ? ipv4Cached(b, at + D.src_addr) : ipv6Cached(b, at + D.src_addr),
    srcPort: u16(b, at + D.src_port),
    dstIp: unix ? '' : family === 4 ? ipv4Cached(b, at + D.dst_addr) : ipv6Cached(b, at + D.dst_addr),
    dstPort: u16(b, at + D.dst_port),
    peerId: unix ? u64(b, at + D.dst_addr) : 0,
    unixPath: unix ? unixPath(b, headEnd, Math.min(headEnd + u16(b, at + D.path_len), at + size)) : '',
    noPayload: (flags & F_NO_PAYLOAD) !== 0,
    truncated: (flags & F_TRUNCATED) !== 0,
    tls: (flags & F_TLS) !== 0,
  };
}

function need(size: number, n: number, what: string): void {
  if (size < n) throw new Error(`capture frame of kind ${what} is ${size} bytes, expected at least ${n}`);
}

/**
 * One frame's bytes (b[at .. at+size)) to an event. Throws on a frame that does not fit its
 * kind: the loader and this file disagree, which no later frame would fix.
 */
export function decodeFrame(b: Buffer, at: number, size: number): CaptureEvent | ControlFrame {
  const kind = b[at];
  switch (kind) {
    case K.data:
      need(size, D.size, 'data');
      return decodeData(b, at, size);
    case K.close:
    case K.shutdown:
      need(size, LAYOUT.close.size, 'close/shutdown');
      return {
        kind: kind === K.close ? 'close' : 'shutdown',
        tsNs: u64(b, at + LAYOUT.close.ts_ns),
        sockId: u64(b, at + LAYOUT.close.sock_id),
        pid: u32(b, at + LAYOUT.close.pid),
      };
    case K.exec:
    case K.exit:
      need(size, LAYOUT.proc.size, 'exec/exit');
      return {
        kind: kind === K.exec ? 'exec' : 'exit',
        tsNs: u64(b, at + LAYOUT.proc.ts_ns),
        pid: b.readUInt32LE(at + LAYOUT.proc.pid),
        ppid: b.readUInt32LE(at + LAYOUT.proc.ppid),
        provisional: kind === K.exec && (b[at + LAYOUT.proc.flags] & PROC_PROVISIONAL) !== 0,
        comm: cString(b, at + LAYOUT.proc.comm, LAYOUT.proc.size - LAYOUT.proc.comm),
        env: size > LAYOUT.proc.size ? execEnv(b, at + LAYOUT.proc.size, at + size) : null,
      };
    case K.thread:
      need(size, LAYOUT.thread.size, 'thread');
      return {
        kind: 'thread',
        tsNs: u64(b, at + LAYOUT.thread.ts_ns),
        pid: b.readUInt32LE(at + LAYOUT.thread.pid),
        tid: b.readUInt32LE(at + LAYOUT.thread.tid),
        ptid: b.readUInt32LE(at + LAYOUT.thread.ptid),
      };
    case K.thread_exit:
      need(size, LAYOUT.thread.size, 'thread_exit');
      return {
        kind: 'thread_exit',
        tsNs: u64(b, at + LAYOUT.thread.ts_ns),
        pid: b.readUInt32LE(at + LAYOUT.thread.pid),
        tid: b.readUInt32LE(at + LAYOUT.thread.tid),
      };
    case K.goroutine:
      need(size, LAYOUT.goroutine.size, 'goroutine');
      return {
        kind: 'goroutine',
        tsNs: u64(b, at + LAYOUT.goroutine.ts_ns),
        pid: b.readUInt32LE(at + LAYOUT.goroutine.pid),
        tid: b.readUInt32LE(at + LAYOUT.goroutine.tid),
        goid: u64(b, at + LAYOUT.goroutine.goid),
        pgoid: u64(b, at + LAYOUT.goroutine.pgoid),
      };
    case K.stats:
      need(size, LAYOUT.stats.size, 'stats');
      return {
        kind: 'stats',
        events: u64(b, at + LAYOUT.stats.events),
        ringbufDrops: u64(b, at + LAYOUT.stats.drops),
        truncated: u64(b, at + LAYOUT.stats.truncated),
        loaderCpuNs: u64(b, at + LAYOUT.stats.loader_cpu_ns),
        late: u64(b, at + LAYOUT.stats.late),
      };
    case K.ready:
      need(size, LAYOUT.ready.size, 'ready');
      return {
        kind: 'ready',
        mode: b[at + LAYOUT.ready.mode] === 2 ? 'syscall' : 'socket',
        captureBytes: b.readUInt16LE(at + LAYOUT.ready.capture_bytes),
        ringbufBytes: b.readUInt32LE(at + LAYOUT.ready.ringbuf_bytes),
      };
    case K.ack:
      need(size, LAYOUT.ack.size, 'ack');
      return { kind: 'ack', ok: b[at + LAYOUT.ack.ok] === 1, pid: b.readUInt32LE(at + LAYOUT.ack.pid) };
    default:
      throw new Error(`capture frame of unknown kind ${kind} (${size} bytes)`);
  }
}

/**
 * A reader of the loader's byte stream: feed it chunks as they arrive; it calls onFrame
 * for every whole frame. Frames are handed over where they lie in the chunk; only a frame split
 * across chunks is copied (into one buffer of its own size). Concatenating the rest of the
 * previous chunk with each new one copied every pipe read (64 KiB) once more, at tens of
 * megabytes a second of garbage outside V8's heap.
 */
export function frameReader(onFrame: (b: Buffer, at: number, size: number) => void): (chunk: Buffer) => void {
  // The bytes of a frame that a chunk ended in (its size word possibly among them, or cut).
  let pending: Buffer | null = null;
  return (chunk: Buffer) => {
    let at = 0;
    if (pending) {
      let part = pending;
      if (part.length < 4) {
        const n = Math.min(4 - part.length, chunk.length);
        part = Buffer.concat([part, chunk.subarray(0, n)]);
        at = n;
        if (part.length < 4) { pending = part; return; }
      }
      const total = 4 + u32(part, 0);
      const need = total - part.length;
      if (chunk.length - at < need) {
        pending = Buffer.concat([part, chunk.subarray(at)]);
        return;
      }
      pending = null;
      const frame = Buffer.concat([part, chunk.subarray(at, at + need)], total);
      at += need;
      onFrame(frame, 4, total - 4);
    }
    while (chunk.length - at >= 4) {
      const size = u32(chunk, at);
      if (chunk.length - at - 4 < size) break;
      onFrame(chunk, at + 4, size);
      at += 4 + size;
    }
    // a view: the chunk stays alive until the next one completes the frame
    if (at < chunk.length) pending = chunk.subarray(at);
  };
}
