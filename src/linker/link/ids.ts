// Ids derived from what a span *is*, never from a counter or a random source: a span resent
// after an agent or linker restart keeps its id, and any linker seeing the same spans makes
// the same ids (DataKit's constant-seeded generator repeated its ids after every restart, §3.3).
//
// The hash is MurmurHash3 x86_128 fed with 32-bit words (numbers as words, strings two UTF-16
// units per word plus their length), over a reusable buffer so that hashing a span allocates
// nothing. 128 well-mixed bits: 64 for the span id, all 128 for a root's trace id.
import type { EbpfSpan } from '../../span/span.js';

// Words to hash are first written to one reusable buffer, then hashed in a single function
// over local variables (module-level `let` registers were ~30× slower: every access is a
// context slot with a hole check). begin() makes room for the whole input at once, so that
// writing a word is one store: a word() that could grow the buffer was too big to inline
// everywhere, and where it stayed a call it boxed every word (16–32 bytes of garbage a span).
let buf = new Int32Array(256);
let n = 0;
// The hash's 128-bit result.
let h1 = 0, h2 = 0, h3 = 0, h4 = 0;

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

/** Starts a hash of at most `words` words. */
function begin(words: number): void {
  n = 0;
  if (words > buf.length) {
    let cap = buf.length;
    while (cap < words) cap *= 2;
    buf = new Int32Array(cap);
  }
}

/** Words a text of `len` UTF-16 units takes (see text). */
const textWords = (len: number) => 2 + (len >> 1);

function word(w: number): void {
  buf[n++] = w;
}

/** A float64 integer up to 2^53 (µs timestamps) as two words. */
function wideWord(v: number): void {
  word(v >>> 0);
  word(Math.floor(v / 4294967296));
}

function text(s: string): void {
  const len = s.length, b = buf;
  let k = n;
  b[k++] = len;
  let i = 0;
  for (; i + 1 < len; i += 2) b[k++] = s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16);
  if (i < len) b[k++] = s.charCodeAt(i);
  n = k;
}

/**
 * The words text() makes of the string these bytes spell, for ASCII bytes (each byte is then
 * one UTF-16 unit): ingest's scanner hashes values where they lie in the body, without making
 * strings, and gets the ids the decoded span would get.
 */
function bytes(b: Uint8Array, from: number, to: number): void {
  const w = buf;
  let k = n;
  w[k++] = to - from;
  let i = from;
  for (; i + 1 < to; i += 2) w[k++] = b[i] | (b[i + 1] << 16);
  if (i < to) w[k++] = b[i];
  n = k;
}

/** MurmurHash3 x86_128 over buf[0..n), result in h1..h4. */
function finish(seed: number): void {
  const b = buf;
  let a1 = seed, a2 = seed, a3 = seed, a4 = seed;
  let k1 = 0, k2 = 0, k3 = 0, k4 = 0;
  const blocks = n & ~3;
  let i = 0;
  for (; i < blocks; i += 4) {
    k1 = Math.imul(rotl(Math.imul(b[i], C1), 15), C2); a1 ^= k1;
    a1 = (Math.imul(rotl(a1, 19) + a2, 5) + 0x561ccd1b) | 0;
    k2 = Math.imul(rotl(Math.imul(b[i + 1], C2), 16), C3); a2 ^= k2;
    a2 = (Math.imul(rotl(a2, 17) + a3, 5) + 0x0bcaa747) | 0;
    k3 = Math.imul(rotl(Math.imul(b[i + 2], C3), 17), C4); a3 ^= k3;
    a3 = (Math.imul(rotl(a3, 15) + a4, 5) + 0x96cd1c35) | 0;
    k4 = Math.imul(rotl(Math.imul(b[i + 3], C4), 18), C1); a4 ^= k4;
    a4 = (Math.imul(rotl(a4, 13) + a1, 5) + 0x32ac3b17) | 0;
  }
  const rest = n - blocks;
  if (rest > 0) {
    // Tail: the partial block's words mixed without the lane rotation, as MurmurHash3 does.
    k1 = Math.imul(rotl(Math.imul(b[i], C1), 15), C2); a1 ^= k1;
    if (rest > 1) { k2 = Math.imul(rotl(Math.imul(b[i + 1], C2), 16), C3); a2 ^= k2; }
    if (rest > 2) { k3 = Math.imul(rotl(Math.imul(b[i + 2], C3), 17), C4); a3 ^= k3; }
  }
  const len = n * 4;
  a1 ^= len; a2 ^= len; a3 ^= len; a4 ^= len;
  a1 = (a1 + a2 + a3 + a4) | 0; a2 = (a2 + a1) | 0; a3 = (a3 + a1) | 0; a4 = (a4 + a1) | 0;
  a1 = fmix(a1); a2 = fmix(a2); a3 = fmix(a3); a4 = fmix(a4);
  a1 = (a1 + a2 + a3 + a4) | 0; a2 = (a2 + a1) | 0; a3 = (a3 + a1) | 0; a4 = (a4 + a1) | 0;
  h1 = a1; h2 = a2; h3 = a3; h4 = a4;
}

// Hex digits as char codes: String.fromCharCode of 16 codes makes the id in one flat string
// (Number#toString(16) plus padding cost several times more).
const HC = [48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102];

export function hex8(n: number): string {
  return String.fromCharCode(
    HC[(n >>> 28) & 15], HC[(n >>> 24) & 15], HC[(n >>> 20) & 15], HC[(n >>> 16) & 15],
    HC[(n >>> 12) & 15], HC[(n >>> 8) & 15], HC[(n >>> 4) & 15], HC[n & 15],
  );
}

/** 16 hex digits of two 32-bit words. */
export function hex16(x: number, y: number): string {
  return String.fromCharCode(
    HC[(x >>> 28) & 15], HC[(x >>> 24) & 15], HC[(x >>> 20) & 15], HC[(x >>> 16) & 15],
    HC[(x >>> 12) & 15], HC[(x >>> 8) & 15], HC[(x >>> 4) & 15], HC[x & 15],
    HC[(y >>> 28) & 15], HC[(y >>> 24) & 15], HC[(y >>> 20) & 15], HC[(y >>> 16) & 15],
    HC[(y >>> 12) & 15], HC[(y >>> 8) & 15], HC[(y >>> 4) & 15], HC[y & 15],
  );
}

/** 8 lowercase hex digits of `id` from `from` as a 32-bit word (hex16's inverse, half of it). */
export function hexWord(id: string, from: number): number {
  let w = 0;
  for (let i = from; i < from + 8; i++) {
    const c = id.charCodeAt(i);
    w = (w << 4) | (c <= 57 ? c - 48 : c - 87);
  }
  return w >>> 0;
}

/** The 128 bits of a span's identity; lanes a..d. The span id is hex(a, b). */
export interface SpanIdentity extends IdLanes {
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
  begin(textWords(span.host.length) + textWords(span.srcIp.length) + textWords(span.dstIp.length) + 9);
  text(span.host);
  identityNumbers(span.pid, span.tid, span.kind === 'entry', span.reqSeq, span.respSeq, span.startUs);
  text(span.srcIp);
  word(span.srcPort);
  text(span.dstIp);
  word(span.dstPort);
  finishIdentity(out);
  out.spanId = hex16(h1, h2);
}

function identityNumbers(pid: number, tid: number, entry: boolean, reqSeq: number, respSeq: number, startUs: number): void {
  word(pid);
  word(tid);
  word(entry ? 1 : 2);
  word(reqSeq);
  word(respSeq);
  wideWord(startUs);
}

function finishIdentity(out: IdLanes): void {
  finish(SPAN_SEED);
  // A span id of all zeros is invalid in W3C and OTLP.
  if (h1 === 0 && h2 === 0) h2 = 1;
  out.a = h1;
  out.b = h2;
  out.c = h3;
  out.d = h4;
}

/** The 128 bits of an identity without the span id string (lanes as int32; hex16(a, b) is the span id). */
export interface IdLanes {
  a: number;
  b: number;
  c: number;
  d: number;
}

/**
 * Where a span's identity is in a body, for spanIdentityAt: the text parts as byte ranges
 * [start, end) of ASCII bytes, the numbers as decoded. One object, filled again for every span.
 */
export interface IdentityParts {
  hostStart: number;
  hostEnd: number;
  pid: number;
  tid: number;
  entry: boolean;
  reqSeq: number;
  respSeq: number;
  startUs: number;
  /** start = end for an absent address */
  srcIpStart: number;
  srcIpEnd: number;
  srcPort: number;
  dstIpStart: number;
  dstIpEnd: number;
  dstPort: number;
  /** digits of the thread group as the validator writes it (no leading zeros); start = end for none */
  groupStart: number;
  groupEnd: number;
}

export function newIdentityParts(): IdentityParts {
  return {
    hostStart: 0, hostEnd: 0, pid: 0, tid: 0, entry: false, reqSeq: 0, respSeq: 0, startUs: 0,
    srcIpStart: 0, srcIpEnd: 0, srcPort: 0, dstIpStart: 0, dstIpEnd: 0, dstPort: 0, groupStart: 0, groupEnd: 0,
  };
}

/** spanIdentity of the span whose parts lie in `b` as `p` says (same lanes for the same span). */
export function spanIdentityAt(b: Uint8Array, p: IdentityParts, out: IdLanes): void {
  begin(textWords(p.hostEnd - p.hostStart) + textWords(p.srcIpEnd - p.srcIpStart) + textWords(p.dstIpEnd - p.dstIpStart) + 9);
  bytes(b, p.hostStart, p.hostEnd);
  identityNumbers(p.pid, p.tid, p.entry, p.reqSeq, p.respSeq, p.startUs);
  bytes(b, p.srcIpStart, p.srcIpEnd);
  word(p.srcPort);
  bytes(b, p.dstIpStart, p.dstIpEnd);
  word(p.dstPort);
  finishIdentity(out);
}

/**
 * Key of a thread group (host, pid, thread group id): a 30-bit key (a small integer: V8's
 * Maps hash and store those without boxing) plus a 32-bit check. Spans of two groups with the
 * same key share a waiter list and are told apart by the check: 62 bits must agree to confuse
 * two groups.
 */
export function groupKey(span: EbpfSpan, out: { key: number; check: number }): void {
  begin(textWords(span.host.length) + textWords(span.threadGroup.length) + 1);
  text(span.host);
  word(span.pid);
  text(span.threadGroup);
  finish(GROUP_SEED);
  out.key = h1 & 0x3fffffff;
  out.check = h2;
}

/** groupKey of the span whose parts lie in `b` (p.groupStart < p.groupEnd). */
export function groupKeyAt(b: Uint8Array, p: IdentityParts, out: { key: number; check: number }): void {
  begin(textWords(p.hostEnd - p.hostStart) + textWords(p.groupEnd - p.groupStart) + 1);
  bytes(b, p.hostStart, p.hostEnd);
  word(p.pid);
  bytes(b, p.groupStart, p.groupEnd);
  finish(GROUP_SEED);
  out.key = h1 & 0x3fffffff;
  out.check = h2;
}

/**
 * Key of an exchange by its sequence numbers: a 30-bit hash of the request's (the one both
 * ends know even when the client read no answer, match.ts seqPair); -1 for a span with no
 * sequence numbers (both 0), which meets no other by them. Different exchanges may share a
 * key (and a waiter list); candidates are always compared on the full numbers.
 */
export function seqKey(reqSeq: number, respSeq: number): number {
  if (reqSeq === 0 && respSeq === 0) return -1;
  return fmix(Math.imul(reqSeq ^ 0x5bd1e995, 0x9e3779b1)) & 0x3fffffff;
}

/** eBPF trace id of a trace: its root span's identity, re-mixed so it is not the span id padded. */
export function traceIdOf(a: number, b: number, c: number, d: number): string {
  let x1 = fmix(a ^ TRACE_SALT), x2 = fmix(b ^ x1), x3 = fmix(c ^ x2), x4 = fmix(d ^ x3);
  if ((x1 | x2 | x3 | x4) === 0) x4 = 1;
  return hex16(x1, x2) + hex16(x3, x4);
}

/** 32-bit hash of an address for scoring candidates; 0 means unknown. */
export function ipHash(ip: string): number {
  if (ip === '') return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < ip.length; i++) h = Math.imul(h ^ ip.charCodeAt(i), 0x01000193);
  return h === 0 ? 1 : h;
}

/** ipHash of the address spelt by the ASCII bytes b[from, to). */
export function ipHashAt(b: Uint8Array, from: number, to: number): number {
  if (from === to) return 0;
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) h = Math.imul(h ^ b[i], 0x01000193);
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
