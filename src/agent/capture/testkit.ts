// Shared by the capture tests (real eBPF: events arrive asynchronously from the loader), by the
// agent benches that stand in for the loader (the frames it writes) and by the tests and benches
// that feed the connection table decoded events.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { LAYOUT } from './decode.js';
import type { DataEvent } from './event.js';

/** Polls get() every 20 ms until it returns something truthy; throws naming `what` after ms. */
export async function waitFor<T>(what: string, get: () => T | undefined | false, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A decoded data event, as decodeFrame gives it: `sockId`, `dir` and `head` given, the rest
 * defaulted (pid 100, tid 101, sequence 0, len the head's length, no tail, 10.0.0.1:8080 talking
 * to 10.0.0.2:50000).
 */
export function dataEvent(f: Pick<DataEvent, 'sockId' | 'dir' | 'head'> & Partial<DataEvent>): DataEvent {
  return {
    kind: 'data', tsNs: f.tsNs ?? 0, sockId: f.sockId, pid: f.pid ?? 100, tid: f.tid ?? 101, goid: f.goid ?? 0, dir: f.dir,
    seq: f.seq ?? 0, len: f.len ?? f.head.length, head: f.head, tail: f.tail ?? Buffer.alloc(0), family: f.family ?? 4,
    srcIp: f.srcIp ?? '10.0.0.1', srcPort: f.srcPort ?? 8080, dstIp: f.dstIp ?? '10.0.0.2', dstPort: f.dstPort ?? 50000,
    peerId: f.peerId ?? 0, unixPath: f.unixPath ?? '',
    noPayload: f.noPayload ?? false, truncated: f.truncated ?? false, tls: f.tls ?? false,
  };
}

/** The fields of a data event as the loader writes them (src/bpf/seqtrace.h, st_data_event). */
export interface DataFrameFields {
  dir: 'send' | 'recv';
  pid: number;
  tid: number;
  sockId: number;
  head: Buffer;
  tail?: Buffer;
  tsNs?: number;
  seq?: number;
  /** Bytes the call moved (default: the head's length). */
  len?: number;
  /** 4, 6, or 'unix' (ST_FAMILY_UNIX: then dstAddr's first 8 bytes are the peer's id, `path` follows the head). */
  family?: 4 | 6 | 'unix';
  /** Unix: the socket's path as the kernel keeps it. */
  path?: Buffer;
  /** st_flags bits (ST_F_NO_PAYLOAD, ST_F_TRUNCATED). */
  flags?: number;
  /** 4 bytes (IPv4) or 16 (IPv6). */
  srcAddr: ArrayLike<number>;
  dstAddr: ArrayLike<number>;
  srcPort: number;
  dstPort: number;
}

/** One data event's bytes in the loader's layout; with `prefixed`, as a frame (u32 length first). */
export function dataFrame(f: DataFrameFields, prefixed = false): Buffer {
  const D = LAYOUT.data;
  const tail = f.tail ?? Buffer.alloc(0);
  const path = f.path ?? Buffer.alloc(0);
  const at = prefixed ? 4 : 0;
  const b = Buffer.alloc(at + D.head + f.head.length + path.length);
  if (prefixed) b.writeUInt32LE(D.head + f.head.length + path.length, 0);
  b[at + D.kind] = LAYOUT.kinds.data;
  b[at + D.dir] = f.dir === 'send' ? 1 : 2;
  b[at + D.family] = f.family === 'unix' ? 1 : f.family ?? 4;
  b[at + D.flags] = f.flags ?? 0;
  b.writeUInt32LE(f.pid, at + D.pid);
  b.writeUInt32LE(f.tid, at + D.tid);
  b.writeUInt32LE(f.seq ?? 0, at + D.seq);
  b.writeBigUInt64LE(BigInt(f.tsNs ?? 0), at + D.ts_ns);
  b.writeBigUInt64LE(BigInt(f.sockId), at + D.sock_id);
  b.writeUInt32LE(f.len ?? f.head.length, at + D.len);
  b.writeUInt16LE(f.head.length, at + D.head_len);
  b.writeUInt16LE(tail.length, at + D.tail_len);
  b.writeUInt16LE(f.srcPort, at + D.src_port);
  b.writeUInt16LE(f.dstPort, at + D.dst_port);
  b.set(f.srcAddr, at + D.src_addr);
  b.set(f.dstAddr, at + D.dst_addr);
  b.writeUInt16LE(path.length, at + D.path_len);
  tail.copy(b, at + D.tail);
  f.head.copy(b, at + D.head);
  path.copy(b, at + D.head + f.head.length);
  return b;
}

/** BPF object ids (progs, links, maps) a process holds open, from /proc/PID/fdinfo. */
export function bpfObjectsOf(pid: number): { progs: number[]; links: number[]; maps: Array<{ id: number; name: string }> } {
  const progs: number[] = [];
  const links: number[] = [];
  const mapIds: number[] = [];
  let fds: string[] = [];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return { progs, links, maps: [] }; // the process is gone
  }
  for (const fd of fds) {
    let info = '';
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    const id = (key: string) => { const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(info); return m ? Number(m[1]) : undefined; };
    const link = id('link_id');
    const prog = id('prog_id');
    const map = id('map_id');
    if (link !== undefined) links.push(link);
    else if (prog !== undefined) progs.push(prog);
    else if (map !== undefined) mapIds.push(map);
  }
  const maps = mapIds.map((id) => {
    const m = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show', 'id', String(id)], { encoding: 'utf8' })) as { name?: string };
    return { id, name: m.name ?? '' };
  });
  return { progs, links, maps };
}

/** Names of the programs attached through the links pid holds. */
export function linkedProgs(pid: number): string[] {
  const links = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ id: number; prog_id: number }>;
  const held = new Set(bpfObjectsOf(pid).links);
  return links.filter((l) => held.has(l.id)).map((l) =>
    (JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'id', String(l.prog_id)], { encoding: 'utf8' })) as { name: string }).name);
}

/** The entries of map `id` now (bpftool: keys and values as arrays of hex bytes). */
export function mapDump(id: number): Array<{ key: string[]; value: string[] }> {
  return JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'id', String(id)], { encoding: 'utf8', maxBuffer: 1 << 28 })) as Array<{ key: string[]; value: string[] }>;
}

/** How many entries the map `name` of the loader (pid) holds now. */
export function loaderMapEntries(pid: number, name: string): number {
  const map = bpfObjectsOf(pid).maps.find((m) => m.name === name);
  if (!map) throw new Error(`the loader ${pid} holds no map named ${name}`);
  return mapDump(map.id).length;
}

/** The pids whose traced bit is set in the loader's `traced` map (map id). */
export function tracedPids(mapId: number): number[] {
  const entries = mapDump(mapId);
  const bytes = (hex: string[]) => Buffer.from(hex.map((x) => parseInt(x, 16)));
  const pids: number[] = [];
  for (const e of entries) {
    const word = bytes(e.key).readUInt32LE(0);
    const bits = bytes(e.value).readBigUInt64LE(0);
    for (let i = 0; i < 16; i++) if ((bits >> BigInt(4 * i)) & 1n) pids.push(word * 16 + i);
  }
  return pids;
}
