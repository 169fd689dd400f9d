// Ids derived from what a span *is*, never from a counter or a random source: a span resent
// after an agent or linker restart keeps its id, and any linker seeing the same spans makes
// the same ids (DataKit's constant-seeded generator repeated its ids after every restart, §3.3).
//
// The hash is MurmurHash3 x86_128 fed with 32-bit words (numbers as words, strings two UTF-16
// units per word plus their length), written over module-level registers so that hashing a
// span allocates nothing. 128 well-mixed bits: 64 for the span id, all 128 for a root's trace id.
import type { EbpfSpan } from '../../span/span.js';

let h1 = 0, h2 = 0, h3 = 0, h4 = 0;
let k1 = 0, k2 = 0, k3 = 0, k4 = 0;
let fill = 0; // words waiting in k1..k4
let words = 0;

const C1 = 0x239b961b, C2 = 0xab0e9789, C3 = 0x38b34ae5, C4 = 0xa1e38b93;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function mixBlock(): void {
  k1 = Math.imul(rotl(Math.imul(k1, C1), 15), C2); h1 ^= k1;
  h1 = (Math.imul(rotl(h1, 19) + h2, 5) + 0x561ccd1b) | 0;
  k2 = Math.imul(rotl(Math.imul(k2, C2), 16), C3); h2 ^= k2;
  h2 = (Math.imul(rotl(h2, 17) + h3, 5) + 0x0bcaa747) | 0;
  k3 = Math.imul(rotl(Math.imul(k3, C3), 17), C4); h3 ^= k3;
  h3 = (Math.imul(rotl(h3, 15) + h4, 5) + 0x96cd1c35) | 0;
  k4 = Math.imul(rotl(Math.imul(k4, C4), 18), C1); h4 ^= k4;
  h4 = (Math.imul(rotl(h4, 13) + h1, 5) + 0x32ac3b17) | 0;
  k1 = k2 = k3 = k4 = 0;
  fill = 0;
}

function begin(seed: number): void {
  h1 = h2 = h3 = h4 = seed;
  k1 = k2 = k3 = k4 = 0;
  fill = 0;
  words = 0;
}

function word(w: number): void {
  w |= 0;
  if (fill === 0) k1 = w;
  else if (fill === 1) k2 = w;
  else if (fill === 2) k3 = w;
  else k4 = w;
  words++;
  if (++fill === 4) mixBlock();
}

/** A float64 integer up to 2^53 (µs timestamps) as two words. */
function wideWord(n: number): void {
  word(n >>> 0);
  word(Math.floor(n / 4294967296));
}

function text(s: string): void {
  const n = s.length;
  word(n);
  let i = 0;
  for (; i + 1 < n; i += 2) word(s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16));
  if (i < n) word(s.charCodeAt(i));
}

function finish(): void {
  if (fill > 0) {
    // Tail: mix the partial block's words without the lane rotation, as MurmurHash3 does.
    k1 = Math.imul(rotl(Math.imul(k1, C1), 15), C2); h1 ^= k1;
    k2 = Math.imul(rotl(Math.imul(k2, C2), 16), C3); h2 ^= k2;
    k3 = Math.imul(rotl(Math.imul(k3, C3), 17), C4); h3 ^= k3;
    k4 = Math.imul(rotl(Math.imul(k4, C4), 18), C1); h4 ^= k4;
  }
  const len = words * 4;
  h1 ^= len; h2 ^= len; h3 ^= len; h4 ^= len;
  h1 = (h1 + h2 + h3 + h4) | 0; h2 = (h2 + h1) | 0; h3 = (h3 + h1) | 0; h4 = (h4 + h1) | 0;
  h1 = fmix(h1); h2 = fmix(h2); h3 = fmix(h3); h4 = fmix(h4);
  h1 = (h1 + h2 + h3 + h4) | 0; h2 = (h2 + h1) | 0; h3 = (h3 + h1) | 0; h4 = (h4 + h1) | 0;
}

export function hex8(n: number): string {
  const s = (n >>> 0).toString(16);
  return s.length === 8 ? s : '00000000'.slice(s.length) + s;
}

/** The 128 bits of a span's identity; lanes a..d. The span id is hex(a, b). */
export interface SpanIdentity {
  a: number;
  b: number;
  c: number;
  d: number;
  spanId: string;
}

const SPAN_SEED = 0x5eb7ace1;
const GROUP_SEED = 0x67a0b1d5;
const TRACE_SALT = 0x7ace1d5f;

/**
 * Identity of a span: where it happened (host, pid, tid), what it was (kind, both sequence
 * numbers, start) and the connection (both ends). Two spans with all of these equal are the
 * same span sent twice.
 */
export function spanIdentity(span: EbpfSpan, out: SpanIdentity): void {
  begin(SPAN_SEED);
  text(span.host);
  word(span.pid);
  word(span.tid);
  word(span.kind === 'entry' ? 1 : 2);
  word(span.reqSeq);
  word(span.respSeq);
  wideWord(span.startUs);
  text(span.srcIp);
  word(span.srcPort);
  text(span.dstIp);
  word(span.dstPort);
  finish();
  // A span id of all zeros is invalid in W3C and OTLP.
  if (h1 === 0 && h2 === 0) h2 = 1;
  out.a = h1;
  out.b = h2;
  out.c = h3;
  out.d = h4;
  out.spanId = hex8(h1) + hex8(h2);
}

/**
 * Key of a thread group (host, pid, thread group id): a 52-bit number for the Map plus a
 * 32-bit check, so two groups are confused only when 84 hash bits agree.
 */
export function groupKey(span: EbpfSpan, out: { key: number; check: number }): void {
  begin(GROUP_SEED);
  text(span.host);
  word(span.pid);
  text(span.threadGroup);
  finish();
  out.key = (h1 & 0xfffff) * 4294967296 + (h2 >>> 0);
  out.check = h3;
}

/**
 * Key of an exchange by its sequence numbers. Exact as a 53-bit number would allow: two
 * different pairs share a key only when reqSeq is equal and respSeq agrees in its low 21 bits;
 * candidates are always compared on both full numbers.
 */
export function seqKey(reqSeq: number, respSeq: number): number {
  return reqSeq * 2097152 + (respSeq & 0x1fffff);
}

/** eBPF trace id of a trace: its root span's identity, re-mixed so it is not the span id padded. */
export function traceIdOf(a: number, b: number, c: number, d: number): string {
  let x1 = fmix(a ^ TRACE_SALT), x2 = fmix(b ^ x1), x3 = fmix(c ^ x2), x4 = fmix(d ^ x3);
  if ((x1 | x2 | x3 | x4) === 0) x4 = 1;
  return hex8(x1) + hex8(x2) + hex8(x3) + hex8(x4);
}

/** 32-bit hash of an address for scoring candidates; 0 means unknown. */
export function ipHash(ip: string): number {
  if (ip === '') return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < ip.length; i++) h = Math.imul(h ^ ip.charCodeAt(i), 0x01000193);
  return h === 0 ? 1 : h;
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const DEC = /^[0-9]{1,20}$/;
const ZERO32 = '00000000000000000000000000000000';
const MAX_U64 = (1n << 64n) - 1n;

/**
 * An application trace id as 32 lowercase hex digits, or '' when it is not a usable id.
 * - 32 hex digits (W3C traceparent, b3 128-bit): as is.
 * - 16 hex digits (b3 / Jaeger 64-bit): zero-padded to 128 bits. A 16-character string of
 *   decimal digits is read as hex too: Datadog's decimal ids are 64-bit random numbers and
 *   almost always have 19 or 20 digits, while 16 is exactly the length of a 64-bit hex id.
 * - Other strings of decimal digits (Datadog `x-datadog-trace-id`), up to 2^64−1: converted
 *   to hex and zero-padded.
 * The all-zero id is invalid (W3C) and gives ''.
 */
export function normaliseAppTraceId(raw: string): string {
  if (raw === '') return '';
  const s = raw.length === 32 || raw.length === 16 ? raw.toLowerCase() : raw;
  let out = '';
  if (HEX32.test(s)) out = s;
  else if (HEX16.test(s)) out = '0000000000000000' + s;
  else if (DEC.test(s)) {
    const v = BigInt(s);
    if (v > MAX_U64) return '';
    const h = v.toString(16);
    out = ZERO32.slice(h.length) + h;
  } else return '';
  return out === ZERO32 ? '' : out;
}
