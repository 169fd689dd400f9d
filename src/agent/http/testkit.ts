// For the parsers' tests: a message as the kernel hands it over.
import assert from 'node:assert/strict';
import type { Chunk } from './parser.js';

const TAIL = 32; // ST_TAIL_BYTES

/** The message b as calls of `sizes` bytes, each captured as the kernel does: its first `cap` bytes and its last 32. */
export function calls(b: Buffer, sizes: number[], cap: number): Chunk[] {
  const out: Chunk[] = [];
  let at = 0, t = 1000;
  for (const n of sizes) {
    const part = b.subarray(at, at + n);
    out.push({ seq: at, len: part.length, head: part.subarray(0, cap), tail: part.length > cap ? part.subarray(Math.max(0, part.length - TAIL)) : Buffer.alloc(0), tsNs: (t += 1000) });
    at += n;
  }
  assert.equal(at, b.length);
  return out;
}
