// What the kernel holds for one of our agents: the eBPF programs, links and maps of its loader.
// Other engineers' agents run on the same machine at the same time, so "ours" is not "new since
// the snapshot" alone: it is the ids in the loader's own file descriptors (/proc/PID/fdinfo
// shows prog_id / map_id / link_id for BPF fds), plus the maps its programs use.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { sleep } from '../e2e/harness.js';

export interface BpfIds {
  progs: Set<number>;
  links: Set<number>;
  maps: Set<number>;
}

function bpftool(what: 'prog' | 'link' | 'map'): Array<Record<string, unknown>> {
  const out = execFileSync('bpftool', ['-j', what, 'show'], { encoding: 'utf8' });
  return out.trim() ? JSON.parse(out) : [];
}

/** Every program, link and map the kernel holds right now (bpftool, JSON output). */
export function bpfSnapshot(): BpfIds {
  return {
    progs: new Set(bpftool('prog').map((p) => p.id as number)),
    links: new Set(bpftool('link').map((l) => l.id as number)),
    maps: new Set(bpftool('map').map((m) => m.id as number)),
  };
}

/** The ids behind the BPF file descriptors of `pid`, and the maps its programs use. */
export function heldBy(pid: number): BpfIds {
  const ids: BpfIds = { progs: new Set(), links: new Set(), maps: new Set() };
  for (const fd of readdirSync(`/proc/${pid}/fdinfo`)) {
    let info = '';
    try { info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'); } catch { continue; }
    const link = /^link_id:\s+(\d+)/m.exec(info);
    const prog = /^prog_id:\s+(\d+)/m.exec(info);
    const map = /^map_id:\s+(\d+)/m.exec(info);
    if (link) ids.links.add(Number(link[1]));
    else if (prog) ids.progs.add(Number(prog[1]));
    else if (map) ids.maps.add(Number(map[1]));
  }
  for (const p of bpftool('prog')) {
    if (ids.progs.has(p.id as number)) for (const m of (p.map_ids as number[] | undefined) ?? []) ids.maps.add(m);
  }
  return ids;
}

/** The ids of `ours` still present in the kernel. */
export function remaining(ours: BpfIds): { progs: number[]; links: number[]; maps: number[] } {
  const now = bpfSnapshot();
  return {
    progs: [...ours.progs].filter((id) => now.progs.has(id)),
    links: [...ours.links].filter((id) => now.links.has(id)),
    maps: [...ours.maps].filter((id) => now.maps.has(id)),
  };
}

function statOf(pid: number): { comm: string; ppid: number; state: string } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = s.lastIndexOf(')');
    const rest = s.slice(close + 2).split(' ');
    return { comm: s.slice(s.indexOf('(') + 1, close), state: rest[0], ppid: Number(rest[1]) };
  } catch {
    return undefined;
  }
}

/** True while `pid` exists and is not a zombie. */
export function alive(pid: number): boolean {
  const st = statOf(pid);
  return st !== undefined && st.state !== 'Z';
}

/** The seqtrace-loader child of `agentPid` (comm is cut at 15 characters). */
export async function loaderOf(agentPid: number, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      const st = statOf(Number(d));
      if (st && st.ppid === agentPid && st.comm.startsWith('seqtrace-loade')) return Number(d);
    }
    if (Date.now() > deadline) throw new Error(`no seqtrace-loader child of pid ${agentPid}`);
    await sleep(100);
  }
}

/** Wait until `pid` is gone; returns the milliseconds it took, or -1 at the timeout. */
export async function waitGone(pid: number, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  while (alive(pid)) {
    if (Date.now() - t0 > timeoutMs) return -1;
    await sleep(20);
  }
  return Date.now() - t0;
}

export function countIds(ids: BpfIds): string {
  return `${ids.progs.size} programs, ${ids.links.size} links, ${ids.maps.size} maps`;
}
