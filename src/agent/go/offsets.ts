// What the Go probes need from a Go binary, read from the binary itself by a small Go tool
// (./gooffsets, Go's own debug/buildinfo, debug/elf, debug/dwarf and debug/gosym; for a binary
// without symbols or DWARF, the pclntab and the runtime's type descriptors): the goid's place in
// runtime.g, where g is in TLS, the HTTP client's connection chain down to its fd, and the
// file offsets of runtime.newproc1 (entry and RETs) and net/http.(*persistConn).roundTrip.
import { execFile } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { goBuild } from './gobuild.js';
import type { GoProcOffsets } from '../capture/loader.js';

export interface GoBinaryInfo extends GoProcOffsets {
  /** false: not a Go binary, or one the agent cannot read (reason says why). */
  ok: boolean;
  reason?: string;
  /** '' when the file is not a Go binary at all. */
  goVersion: string;
  newproc1: number;
  newproc1Ret: number[];
  /** The NOP5 before newproc.func1's call to runqput (new g in RBX), 0 when absent: cheaper than the RETs. */
  newprocNop5: number;
  /** 0 when the binary has no net/http client. */
  roundTrip: number;
  /** runtime.execute (only bench/go-switch-cost.sh attaches it: the seed's per-switch probe). */
  execute: number;
  /** Where the functions were found: 'symtab', or 'pclntab' for a binary without symbols. */
  symbols: string;
  /** Where the struct offsets came from: 'dwarf', or 'types' (the runtime's type descriptors). */
  layout: string;
  /** Position-independent: tcpConnItab is as linked, the segment at file offset 0 at loadVaddr. */
  pie: boolean;
  loadVaddr: number;
}

// The tool's sources stay in src/ (tsc does not copy them): from src/agent/go (tsx) or
// dist/agent/go (compiled), the same directory.
const TOOL_DIR = fileURLToPath(new URL('../../../src/agent/go/gooffsets/', import.meta.url));

/** The tool's binary: SEQTRACE_GOOFFSETS, else src/agent/go/gooffsets/build/seqtrace-gooffsets (npm run build makes it). */
export function goOffsetsToolPath(): string {
  return process.env.SEQTRACE_GOOFFSETS ?? `${TOOL_DIR}build/seqtrace-gooffsets`;
}

/** Builds the tool when it is missing (needs the `go` command; no network: standard library only). */
export function ensureGoOffsetsTool(): string {
  const bin = goOffsetsToolPath();
  if (existsSync(bin)) return bin;
  return goBuild(TOOL_DIR, bin);
}

/**
 * Whether the file is a 64-bit little-endian ELF with a `.go.buildinfo` section: a Go program
 * (what debug/buildinfo looks for first). Read at once, before the tool has read the binary,
 * so that no Go process is linked by thread meanwhile. A few reads of its headers.
 */
export function hasGoBuildInfo(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return false;
  }
  try {
    const h = Buffer.alloc(64);
    if (readSync(fd, h, 0, 64, 0) < 64 || h.readUInt32BE(0) !== 0x7f454c46 || h[4] !== 2 || h[5] !== 1) return false;
    const shoff = Number(h.readBigUInt64LE(0x28));
    const shentsize = h.readUInt16LE(0x3a), shnum = h.readUInt16LE(0x3c), shstrndx = h.readUInt16LE(0x3e);
    if (shoff === 0 || shentsize < 64 || shnum === 0 || shstrndx >= shnum) return false;
    const sh = Buffer.alloc(shnum * shentsize);
    if (readSync(fd, sh, 0, sh.length, shoff) < sh.length) return false;
    const namesAt = Number(sh.readBigUInt64LE(shstrndx * shentsize + 0x18));
    const namesSize = Math.min(Number(sh.readBigUInt64LE(shstrndx * shentsize + 0x20)), 1 << 16);
    const names = Buffer.alloc(namesSize);
    const got = readSync(fd, names, 0, namesSize, namesAt);
    const want = '.go.buildinfo\0';
    for (let i = 0; i < shnum; i++) {
      const at = sh.readUInt32LE(i * shentsize);
      if (at + want.length <= got && names.toString('latin1', at, at + want.length) === want) return true;
    }
    return false;
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

/** Reads a binary (a path the agent can open, e.g. /proc/PID/exe). Never rejects: a failure is ok:false with the reason. */
export function readGoBinary(path: string, tool = goOffsetsToolPath()): Promise<GoBinaryInfo> {
  const failed = (reason: string): GoBinaryInfo => ({
    ok: false, reason, goVersion: '', tlsOffset: 0, goidOffset: 0, pconnConn: 0, tcpConnItab: 0, tcpConnFd: 0,
    netFdSysfd: 0, gM: 0, mCurg: 0, newproc1: 0, newproc1Ret: [], newprocNop5: 0, roundTrip: 0, execute: 0,
    symbols: '', layout: '', pie: false, loadVaddr: 0,
  });
  return new Promise((resolve) => {
    execFile(tool, [path], { timeout: 20_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) return resolve(failed(`${tool} failed: ${(stderr || err.message).trim()}`));
      try {
        const j = JSON.parse(stdout) as GoBinaryInfo;
        resolve({ ...failed(''), ...j, newproc1Ret: j.newproc1Ret ?? [], reason: j.reason });
      } catch (e) {
        resolve(failed(`${tool} printed no JSON: ${(e as Error).message}`));
      }
    });
  });
}
