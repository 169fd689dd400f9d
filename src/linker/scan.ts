// Ingest's scanner: the join fields of a line-protocol body's spans, read straight from the
// inflated bytes into a JoinBatch, with no string and no object per span. The reference is
// the decoder + validator (src/span/lineprotocol.ts, src/span/validate.ts) followed by
// joinFieldsOf (link/fields.ts): for every body the scanner gives the same rows, in the same
// order, at the same locs, the same errors and the same thrown SeqError.
//
// How it stays exact:
// - Only an ASCII body is scanned (text offsets = byte offsets); any other goes to the reference.
// - A line is taken on the fast path only when every token is in a form whose decoding and
//   validation the scanner has checked itself (see scanLine and judge: no backslash, no
//   quoted string past the line's end, integers in range with their suffix, enums exactly as
//   the validator takes them, addresses verified with isIP, lengths within max_field_bytes...).
//   A value of another form is not an error: the line is decoded alone with the reference
//   (decodeLineProtocolAt + validatePoint, then joinFieldsOf).
// - When that line has any error (decoding or validation), or the body has more points than
//   max_batch_spans, what was scanned is dropped and the reference decodes the whole body, so
//   that errors (index, line, column, reason) and thrown errors are the reference's own.
import { isAscii } from 'node:buffer';
import { isIP } from 'node:net';
import type { LinkerConfig } from '../config/config.js';
import { decodeLineProtocolAt } from '../span/lineprotocol.js';
import type { PointError } from '../span/point.js';
import { validatePoint } from '../span/validate.js';
import { decodeBody } from './decode.js';
import { F_ENTRY, F_ERROR, joinFieldsOf, type JoinBatch } from './link/fields.js';
import { groupKeyAt, ipHashAt, newIdentityParts, seqKey, spanIdentityAt, type IdLanes } from './link/ids.js';

export type ScanLimits = Pick<LinkerConfig, 'max_batch_spans' | 'max_field_bytes'>;

/** How lines went, for tests and metrics: counted over the module's life. */
export const scanStats = {
  /** Points taken on the fast path. */
  fast: 0,
  /** Points decoded alone with the reference (a form the scanner does not take itself). */
  slow: 0,
  /** Bodies handed whole to the reference (not ASCII, an error, too many points). */
  whole: 0,
};

function ascii(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

const NL = 10, CR = 13, SP = 32, TAB = 9, COMMA = 44, EQ = 61, BS = 92, DQ = 34, HASH = 35, MINUS = 45, DOT = 46;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const U32_MAX = 4294967295;

/** Char classes as the decoder's: 1 ends every token (space, tab, CR, LF), 2 comma, 4 equals. */
const CLS = new Uint8Array(256);
CLS[SP] = CLS[TAB] = CLS[CR] = CLS[NL] = 1;
CLS[COMMA] = 2;
CLS[EQ] = 4;
/** Keys end at any of 1|2|4; tag values and bare field values at 1|2 (the decoder's stops). */
const KEY_STOP = 7, VALUE_STOP = 3;
/** Hex digit value + 1 (0: not a hex digit). */
const HEX = new Uint8Array(256);
for (let c = 0; c < 10; c++) HEX[48 + c] = c + 1;
for (let c = 0; c < 6; c++) HEX[97 + c] = HEX[65 + c] = c + 11;

// ---- keys ----
// The validator's KNOWN keys (ids 0..24, their last value kept per line and judged after the
// line), then its COUNT_ATTRS (judged at once, like every other attribute).
const KEYS = [
  'host', 'ebpf_span_type', 'direction', 'req_seq', 'resp_seq', 'thread_trace_id', 'pid', 'tid', 'start', 'duration',
  'service', 'process_name', 'src_ip', 'dst_ip', 'src_port', 'dst_port', 'operation', 'resource', 'status',
  'http_method', 'http_route', 'http_status_code', 'app_trace_id', 'app_parent_id', 'app_span_sampled',
  'bytes_read', 'bytes_written', 'tid_usr',
] as const;
const K_HOST = 0, K_TYPE = 1, K_DIR = 2, K_REQ = 3, K_RESP = 4, K_GROUP = 5, K_PID = 6, K_TID = 7, K_START = 8, K_DURATION = 9,
  K_SERVICE = 10, K_PROCESS = 11, K_SRC_IP = 12, K_DST_IP = 13, K_SRC_PORT = 14, K_DST_PORT = 15, K_OPERATION = 16,
  K_RESOURCE = 17, K_STATUS = 18, K_METHOD = 19, K_ROUTE = 20, K_CODE = 21, K_APP_TRACE = 22, K_APP_PARENT = 23, K_SAMPLED = 24;
/** Ids from here on are count attributes. */
const N_KNOWN = 25;
/** The keys' bytes, and the ids of the keys of each length. */
const KEY_BYTES: Uint8Array[] = KEYS.map(ascii);
const BY_LENGTH: Int32Array[] = [];
for (let len = 0; len <= 16; len++) BY_LENGTH.push(Int32Array.from(KEYS.map((k, id) => (k.length === len ? id : -1)).filter((id) => id >= 0)));

/** Id of the key spelt by b[s, e), -1 for any other key. */
function keyId(b: Uint8Array, s: number, e: number): number {
  const len = e - s;
  if (len > 16) return -1;
  const ids = BY_LENGTH[len];
  const c0 = b[s];
  next: for (let j = 0; j < ids.length; j++) {
    const id = ids[j];
    const k = KEY_BYTES[id];
    if (k[0] !== c0) continue;
    for (let i = 1; i < len; i++) if (k[i] !== b[s + i]) continue next;
    return id;
  }
  return -1;
}

// ---- values ----
// A value's form, as the decoder would type it: a string (tag value or quoted field), an
// integer with i (T_INT non-negative, T_NEG negative: the range then excludes the minus) or u,
// a boolean, or a float in the plain form -?digits(.digits)?. The range of an integer is its
// digits, without sign and suffix.
const T_STR = 1, T_INT = 2, T_NEG = 3, T_UINT = 4, T_TRUE = 5, T_FALSE = 6, T_FLOAT = 7;

const LIM_I64 = ascii('9223372036854775807');
const LIM_I64_NEG = ascii('9223372036854775808');
const LIM_U64 = ascii('18446744073709551615');
const TWO_64 = ascii('18446744073709551616');

/** b[s, s + lim.length) compared with lim as numbers of that many digits: <0, 0, >0. */
function cmpDigits(b: Uint8Array, s: number, lim: Uint8Array): number {
  for (let i = 0; i < lim.length; i++) {
    const d = b[s + i] - lim[i];
    if (d !== 0) return d;
  }
  return 0;
}

/** First index in [s, e) that is not '0' (e when all are). */
function skipZeros(b: Uint8Array, s: number, e: number): number {
  while (s < e && b[s] === 48) s++;
  return s;
}

/**
 * The validator's digit loop over b[s, e) (its value for a digit string) into runValue[0];
 * false when a byte is not a digit. (Values cross functions in runValue, never as arguments
 * or results: a double there would be boxed, an allocation per span.)
 */
function digitsValue(b: Uint8Array, s: number, e: number): boolean {
  let v = 0;
  for (let i = s; i < e; i++) {
    const d = b[i] - 48;
    if (d < 0 || d > 9) return false;
    v = v * 10 + d;
  }
  runValue[0] = v;
  return true;
}

/** The value of the last digitRun or digitsValue. */
const runValue = new Float64Array(1);

/** Range of the last integer bareType saw. */
let intS = 0, intE = 0;

/**
 * The form of the bare field value b[s, e) (non-empty) when the decoder certainly takes it,
 * 0 otherwise (a decode error, or a form the fast path leaves to the reference).
 */
function bareType(b: Uint8Array, s: number, e: number): number {
  const last = b[e - 1];
  if (last === 105 /* i */ || last === 117 /* u */) {
    const unsigned = last === 117;
    let i = s;
    let neg = false;
    if (b[i] === MINUS) {
      if (unsigned) return 0;
      neg = true;
      i++;
    }
    const de = e - 1;
    if (i === de) return 0;
    for (let k = i; k < de; k++) {
      const c = b[k];
      if (c < 48 || c > 57) return 0;
    }
    const z = skipZeros(b, i, de);
    const sig = de - z;
    if (sig >= 19) {
      if (unsigned) {
        if (sig > 20 || (sig === 20 && cmpDigits(b, z, LIM_U64) > 0)) return 0;
      } else if (sig > 19 || cmpDigits(b, z, neg ? LIM_I64_NEG : LIM_I64) > 0) return 0;
    }
    intS = i;
    intE = de;
    return unsigned ? T_UINT : neg ? T_NEG : T_INT;
  }
  const c0 = b[s];
  const len = e - s;
  if (c0 === 116 || c0 === 84) { // t T true True TRUE
    if (len === 1) return T_TRUE;
    if (len !== 4) return 0;
    const r = b[s + 1], u = b[s + 2], x = b[s + 3];
    if ((r === 114 && u === 117 && x === 101) || (c0 === 84 && r === 82 && u === 85 && x === 69)) return T_TRUE;
    return 0;
  }
  if (c0 === 102 || c0 === 70) { // f F false False FALSE
    if (len === 1) return T_FALSE;
    if (len !== 5) return 0;
    const a = b[s + 1], l = b[s + 2], q = b[s + 3], x = b[s + 4];
    if ((a === 97 && l === 108 && q === 115 && x === 101) || (c0 === 70 && a === 65 && l === 76 && q === 83 && x === 69)) return T_FALSE;
    return 0;
  }
  // -?digits(.digits)?, short enough to be finite
  if (len > 300) return 0;
  let i = s;
  if (c0 === MINUS) i++;
  const ds = i;
  while (i < e && b[i] >= 48 && b[i] <= 57) i++;
  if (i === ds) return 0;
  if (i < e && b[i] === DOT) {
    const fs = ++i;
    while (i < e && b[i] >= 48 && b[i] <= 57) i++;
    if (i === fs) return 0;
  }
  return i === e ? T_FLOAT : 0;
}

// ---- the line being scanned ----
/** Known keys seen on this line (bit per id), and their last value: range and form. */
let seen = 0;
const vS = new Int32Array(N_KNOWN), vE = new Int32Array(N_KNOWN), vT = new Uint8Array(N_KNOWN);
/** The timestamp's digits (timeS = -1: none; timeNeg: it had a minus). */
let timeS = -1, timeE = -1, timeNeg = false;
let maxBytes = 0;

/** A count attribute (bytes_read...) the validator certainly takes. */
function countAttrOk(t: number, s: number, e: number, b: Uint8Array): boolean {
  if (t === T_INT || t === T_UINT) return true;
  if (t !== T_STR || e === s || e - s > 20) return false;
  for (let i = s; i < e; i++) if (b[i] < 48 || b[i] > 57) return false;
  return true;
}

/** The decoded value of a known integer key (the validator's digit loop; exact up to 2^53 - 1). */
const vNum = new Float64Array(N_KNOWN);

/**
 * Notes the value of key `id` (keyId): b[s, e) of form t (an integer's value in runValue[0]);
 * false when the fast path cannot take it.
 */
function keyValue(b: Uint8Array, id: number, t: number, s: number, e: number): boolean {
  // A string over max_field_bytes (ASCII: bytes = length) is an error for every string the
  // validator measures; a long one of the others (enums, digit strings, app ids: short when
  // valid) is left to the reference too.
  if (t === T_STR && e - s > maxBytes) return false;
  if (id >= 0 && id < N_KNOWN) {
    seen |= 1 << id;
    vS[id] = s;
    vE[id] = e;
    vT[id] = t;
    vNum[id] = runValue[0];
    return true;
  }
  // Any other attribute: a string within max_field_bytes, or any value the decoder took.
  // (Checked whatever key: a tag the validator skips because a field or an inherited property
  // has its name is still checked here; that can only send a line slow.)
  return id < N_KNOWN || countAttrOk(t, s, e, b);
}

// Lines of a body repeat their keys in the same order (and often their tag values): the key
// (with its '=') and the tag value of the previous line at the same position are compared
// first, four bytes at a time, which spares scanning them and looking the key up. The
// offsets point into the current body (reset for every body); a key or value is noted only
// when it was scanned whole, so it holds no stop character and ends where the noted length says.
const SLOTS = 64;
/** Tag slots: key start, key length + 1 ('='), key id, value start, value length. */
const tKeyS = new Int32Array(SLOTS), tKeyL = new Int32Array(SLOTS), tKeyId = new Int32Array(SLOTS);
const tValS = new Int32Array(SLOTS), tValL = new Int32Array(SLOTS);
/** Field slots: key start, key length + 1, key id. */
const fKeyS = new Int32Array(SLOTS), fKeyL = new Int32Array(SLOTS), fKeyId = new Int32Array(SLOTS);
/** Slots noted in this body. */
let tNoted = 0, fNoted = 0;

/** a[p, p + len) equals c[q, q + len) (av, cv: DataViews of a and c), four bytes at a time. */
function sameBytes(a: Uint8Array, av: DataView, p: number, c: Uint8Array, cv: DataView, q: number, len: number): boolean {
  if (len < 4) {
    for (let i = 0; i < len; i++) if (a[p + i] !== c[q + i]) return false;
    return true;
  }
  const last = len - 4;
  for (let k = 0; k < last; k += 4) if (av.getInt32(p + k) !== cv.getInt32(q + k)) return false;
  return av.getInt32(p + last) === cv.getInt32(q + last);
}

/**
 * Index of the first '"' at or after p, four bytes at a time (a zero-byte test on the word
 * xor'ed with the character: the lowest flagged byte is always a true match); -1 when a
 * newline (a string spanning lines: the reference's) or the end comes first.
 */
function closingQuote(b: Uint8Array, dv: DataView, p: number, n: number): number {
  for (; p + 4 <= n; p += 4) {
    const w = dv.getInt32(p, true);
    const x = w ^ 0x22222222, y = w ^ 0x0a0a0a0a;
    const t = (((x - 0x01010101) & ~x) | ((y - 0x01010101) & ~y)) & 0x80808080;
    if (t !== 0) {
      const k = p + ((31 - Math.clz32(t & -t)) >> 3);
      return b[k] === DQ ? k : -1;
    }
  }
  for (; p < n; p++) {
    const c = b[p];
    if (c === DQ) return p;
    if (c === NL) return -1;
  }
  return -1;
}

/**
 * End of the run of decimal digits from p; their value (the digit loop's: exact up to 2^53 - 1,
 * and above 2^53 - 1 whenever the digits are) in runValue[0]. Four digits a word while it can.
 */
function digitRun(b: Uint8Array, dv: DataView, p: number, n: number): number {
  let v = 0;
  for (; p + 4 <= n; p += 4) {
    const w = dv.getInt32(p, true);
    // every byte 0x30..0x39: high nibbles 3, and still 3 once 6 is added to each byte
    if ((w & 0xf0f0f0f0) !== 0x30303030 || ((w + 0x06060606) & 0xf0f0f0f0) !== 0x30303030) break;
    const d = w - 0x30303030; // the four digits, first in the low byte
    const e = (d * 10 + (d >>> 8)) & 0x00ff00ff; // two two-digit numbers
    v = v * 10000 + ((e & 0xff) * 100 + (e >>> 16));
  }
  for (; p < n; p++) {
    const d = b[p] - 48;
    if (d < 0 || d > 9) break;
    v = v * 10 + d;
  }
  runValue[0] = v;
  return p;
}

const M0 = 0x646b6574, M1 = 0x72616365; // "dket" "race", big-endian

/**
 * Scans the point at b[s...] up to its line's end, noting its keys; returns the offset of the
 * line's end (its newline, or n) when every token is in a form the fast path takes, else -1.
 */
function scanLine(b: Uint8Array, dv: DataView, s: number, n: number): number {
  seen = 0;
  timeS = -1;
  // measurement: exactly dketrace, then a comma or a space
  if (n - s < 9 || dv.getInt32(s) !== M0 || dv.getInt32(s + 4) !== M1) return -1;
  let p = s + 8;
  let c = b[p];
  let id = 0, ke = 0, len = 0;
  for (let slot = 0; c === COMMA; slot++) {
    const ks = ++p;
    if (slot < tNoted && (len = tKeyL[slot]) < n - p && sameBytes(b, dv, p, b, dv, tKeyS[slot], len)) {
      ke = p + len - 1;
      id = tKeyId[slot];
    } else {
      while (p < n && (CLS[b[p]] & KEY_STOP) === 0) p++;
      if (p === ks || p === n || b[p] !== EQ) return -1;
      ke = p;
      id = keyId(b, ks, ke);
      if (slot < SLOTS) {
        tKeyS[slot] = ks; tKeyL[slot] = ke - ks + 1; tKeyId[slot] = id; tValL[slot] = 0;
        if (slot >= tNoted) tNoted = slot + 1;
      }
    }
    const vs = p = ke + 1;
    if (slot < tNoted && (len = tValL[slot]) > 0 && len < n - p && sameBytes(b, dv, p, b, dv, tValS[slot], len) && (CLS[b[p + len]] & VALUE_STOP) !== 0) {
      p += len;
    } else {
      while (p < n && (CLS[b[p]] & VALUE_STOP) === 0) p++;
      if (p === vs) return -1;
      if (slot < SLOTS) {
        tValS[slot] = vs;
        tValL[slot] = p - vs;
      }
    }
    if (!keyValue(b, id, T_STR, vs, p)) return -1;
    c = p < n ? b[p] : NL;
  }
  if (c !== SP) return -1;
  while (p < n && b[p] === SP) p++;
  for (let slot = 0; ; slot++) {
    const ks = p;
    if (slot < fNoted && (len = fKeyL[slot]) < n - p && sameBytes(b, dv, p, b, dv, fKeyS[slot], len)) {
      ke = p + len - 1;
      id = fKeyId[slot];
    } else {
      while (p < n && (CLS[b[p]] & KEY_STOP) === 0) p++;
      if (p === ks || p === n || b[p] !== EQ) return -1;
      ke = p;
      id = keyId(b, ks, ke);
      if (slot < SLOTS) {
        fKeyS[slot] = ks; fKeyL[slot] = ke - ks + 1; fKeyId[slot] = id;
        if (slot >= fNoted) fNoted = slot + 1;
      }
    }
    p = ke + 1;
    if (p < n && b[p] === DQ) {
      // A quoted string must close on this line (one spanning lines goes to the reference).
      const q = closingQuote(b, dv, p + 1, n);
      if (q < 0 || !keyValue(b, id, T_STR, p + 1, q)) return -1;
      p = q + 1;
    } else {
      // The common bare value: digits then i or u, in range (up to 18 digits always; 19 or 20
      // without leading zeros: compared with the limit), valued in the same pass; anything
      // else goes through bareType.
      const vs = p;
      const neg = p < n && b[p] === MINUS;
      if (neg) p++;
      const ds = p;
      // digitRun, by hand (a call per value costs more than it)
      let v = 0;
      for (; p + 4 <= n; p += 4) {
        const w = dv.getInt32(p, true);
        if ((w & 0xf0f0f0f0) !== 0x30303030 || ((w + 0x06060606) & 0xf0f0f0f0) !== 0x30303030) break;
        const d = w - 0x30303030;
        const x = (d * 10 + (d >>> 8)) & 0x00ff00ff;
        v = v * 10000 + ((x & 0xff) * 100 + (x >>> 16));
      }
      for (; p < n; p++) {
        const d = b[p] - 48;
        if (d < 0 || d > 9) break;
        v = v * 10 + d;
      }
      runValue[0] = v;
      c = p < n ? b[p] : 0;
      const count = p - ds;
      if (count > 0 && (c === 105 || (c === 117 && !neg)) && (p + 1 === n || (CLS[b[p + 1]] & VALUE_STOP) !== 0) &&
        (count <= 18 || (b[ds] !== 48 && (c === 117
          ? count === 19 || (count === 20 && cmpDigits(b, ds, LIM_U64) <= 0)
          : count === 19 && cmpDigits(b, ds, neg ? LIM_I64_NEG : LIM_I64) <= 0)))) {
        if (!keyValue(b, id, c === 117 ? T_UINT : neg ? T_NEG : T_INT, ds, p)) return -1;
        p++;
      } else {
        p = vs;
        while (p < n && (CLS[b[p]] & VALUE_STOP) === 0) p++;
        if (p === vs) return -1;
        const t = bareType(b, vs, p);
        if (t === 0) return -1;
        if (t <= T_UINT ? !digitsValue(b, intS, intE) || !keyValue(b, id, t, intS, intE) : !keyValue(b, id, t, vs, p)) return -1;
      }
    }
    if (p < n && b[p] === COMMA) {
      p++;
      continue;
    }
    break;
  }
  while (p < n && ((c = b[p]) === SP || c === TAB)) p++;
  if (p < n && (c = b[p]) !== NL && c !== CR) {
    timeNeg = c === MINUS;
    if (timeNeg) p++;
    const ds = p;
    p = digitRun(b, dv, p, n);
    if (p === ds) return -1;
    timeS = ds;
    timeE = p;
    while (p < n && ((c = b[p]) === SP || c === TAB)) p++;
  }
  if (p < n && b[p] === CR) p++;
  return p === n || b[p] === NL ? p : -1;
}

// ---- judging the known keys and filling the row ----
const parts = newIdentityParts();
const lanes: IdLanes = { a: 0, b: 0, c: 0, d: 0 };
const gk = { key: 0, check: 0 };
/** Host then the digits of a thread group that are not in the body (negative int64 written as u64). */
let scratch = new Uint8Array(256);
const groupParts = newIdentityParts();

/** The keys read with the validator's uint(), and their maxima (start: see judge). */
const UINT_IDS = Int32Array.of(K_REQ, K_RESP, K_PID, K_TID, K_DURATION, K_SRC_PORT, K_DST_PORT, K_CODE, K_START);
const UINT_MAX = Float64Array.of(U32_MAX, U32_MAX, U32_MAX, U32_MAX, MAX_SAFE, 65535, 65535, 999, MAX_SAFE);
/** The keys read with the validator's str() (host and addresses apart). */
const STR_IDS = Int32Array.of(K_SERVICE, K_PROCESS, K_METHOD, K_ROUTE, K_RESOURCE, K_OPERATION);

/** The big-endian word of four ASCII characters. */
function word4(w: string): number {
  return ((w.charCodeAt(0) << 24) | (w.charCodeAt(1) << 16) | (w.charCodeAt(2) << 8) | w.charCodeAt(3)) | 0;
}
const W_ENTR = word4('entr'), W_EXIT = word4('exit'), W_INCO = word4('inco'), W_MING = word4('ming'), W_OUTG = word4('outg'),
  W_OING = word4('oing'), W_ERRO = word4('erro'), W_WARN = word4('warn'), W_NING = word4('ning');
/** Ored into a word, makes its ASCII letters lowercase (and for a letter, only a letter of either case gives it). */
const LOWER = 0x20202020;

/** ebpf_span_type (direction: false) or direction (true) b[s, e) as a kind: 1 entry, 2 exit, 0 neither. */
function kindOf(dv: DataView, b: Uint8Array, s: number, e: number, direction: boolean): number {
  const len = e - s;
  if (direction) {
    if (len !== 8) return 0;
    const w = dv.getInt32(s), x = dv.getInt32(s + 4);
    return w === W_INCO && x === W_MING ? 1 : w === W_OUTG && x === W_OING ? 2 : 0;
  }
  if (len === 5) return dv.getInt32(s) === W_ENTR && b[s + 4] === 121 /* y */ ? 1 : 0;
  return len === 4 && dv.getInt32(s) === W_EXIT ? 2 : 0;
}

/** status b[s, e) lowercased (String#toLowerCase, for ASCII): 1 ok or warning, 2 error, 0 neither. */
function statusOf(dv: DataView, b: Uint8Array, s: number, e: number): number {
  const len = e - s;
  if (len === 2) return (b[s] | 0x20) === 111 && (b[s + 1] | 0x20) === 107 ? 1 : 0;
  if (len === 5) return (dv.getInt32(s) | LOWER) === W_ERRO && (b[s + 4] | 0x20) === 114 ? 2 : 0;
  if (len === 7) return (dv.getInt32(s) | LOWER) === W_WARN && (dv.getInt32(s + 3) | LOWER) === W_NING ? 1 : 0;
  return 0;
}


/** The word of 8 hex digits at b[s] (checked hex). */
function hexWordAt(b: Uint8Array, s: number): number {
  let w = 0;
  for (let i = s; i < s + 8; i++) w = (w << 4) | (HEX[b[i]] - 1);
  return w >>> 0;
}

/** The app words of the row (most significant first). */
const appW = new Uint32Array(4);

/**
 * appW of the app trace id whose normalised text (ids.ts normaliseAppTraceId) comes from
 * the digits b[s, e) (lowercase-able hex): 32 hex, 16 hex, else decimal up to 2^64 - 1, else none.
 */
function appWordsOf(b: Uint8Array, s: number, e: number): void {
  appW[0] = appW[1] = appW[2] = appW[3] = 0;
  const len = e - s;
  if (len === 32) {
    appW[0] = hexWordAt(b, s); appW[1] = hexWordAt(b, s + 8); appW[2] = hexWordAt(b, s + 16); appW[3] = hexWordAt(b, s + 24);
    return;
  }
  if (len === 16) {
    appW[2] = hexWordAt(b, s); appW[3] = hexWordAt(b, s + 8);
    return;
  }
  if (len === 0 || len > 20) return;
  let hi = 0, lo = 0;
  for (let i = s; i < e; i++) {
    const d = b[i] - 48;
    if (d < 0 || d > 9) return; // hex letters and not 16/32 long: no id
    lo = lo * 10 + d;
    const carry = Math.floor(lo / 4294967296);
    lo -= carry * 4294967296;
    hi = hi * 10 + carry;
    if (hi > U32_MAX) return; // beyond 2^64 - 1: no id
  }
  appW[2] = hi;
  appW[3] = lo;
}

/** app_trace_id → appW; false when the fast path cannot take its form (or it is invalid). */
function appTraceOf(b: Uint8Array): boolean {
  appW[0] = appW[1] = appW[2] = appW[3] = 0;
  if ((seen & (1 << K_APP_TRACE)) === 0) return true;
  const t = vT[K_APP_TRACE], s = vS[K_APP_TRACE], e = vE[K_APP_TRACE];
  if (t === T_STR) {
    // appId: at most 32 hex digits, lowercased; then normalised
    if (e - s > 32) return false;
    for (let i = s; i < e; i++) if (HEX[b[i]] === 0) return false;
    appWordsOf(b, s, e);
    return true;
  }
  if (t === T_INT || t === T_UINT) {
    // appId: the decimal text of the number (no leading zeros); then normalised
    appWordsOf(b, skipZeros(b, s, e), e);
    return true;
  }
  return false;
}

/** app_parent_id: the validator takes it (appId with at most 20 digits). */
function appParentOk(b: Uint8Array): boolean {
  if ((seen & (1 << K_APP_PARENT)) === 0) return true;
  const t = vT[K_APP_PARENT], s = vS[K_APP_PARENT], e = vE[K_APP_PARENT];
  if (t === T_INT || t === T_UINT) return true;
  if (t !== T_STR || e - s > 20) return false;
  for (let i = s; i < e; i++) if (HEX[b[i]] === 0) return false;
  return true;
}

/** app_span_sampled as 1 / -1 / 0; 2 when the fast path cannot take its form. */
function sampledOf(b: Uint8Array): number {
  if ((seen & (1 << K_SAMPLED)) === 0) return 0;
  const t = vT[K_SAMPLED], s = vS[K_SAMPLED], e = vE[K_SAMPLED];
  if (t === T_TRUE) return 1;
  if (t === T_FALSE) return -1;
  if (t === T_INT || t === T_UINT || t === T_NEG) {
    const z = skipZeros(b, s, e);
    if (z === e) return 0; // 0, or -0 (stored as 0)
    if (z === e - 1 && b[z] === 49) return t === T_NEG ? -1 : 1;
    return 2;
  }
  if (t === T_STR) {
    // Number(v) is 1, 0 or -1 for many texts (" 1", "1.0", "0x1"): only the plain ones here
    if (e - s === 1) return b[s] === 49 ? 1 : b[s] === 48 ? 0 : 2;
    if (e - s === 2 && b[s] === MINUS && b[s + 1] === 49) return -1;
  }
  return 2;
}

/**
 * The thread group into groupParts/parts: 0 none, 1 digits in the body at parts.group*, 2
 * digits in scratch (a negative int64, written as its u64 two's complement); -1 when the fast
 * path cannot take it.
 */
function groupOf(b: Uint8Array): number {
  if ((seen & (1 << K_GROUP)) === 0) return 0;
  const t = vT[K_GROUP], s = vS[K_GROUP], e = vE[K_GROUP];
  if (t === T_STR) {
    // /^\d{1,20}$/, then at most 2^64 - 1
    if (e === s || e - s > 20) return -1;
    for (let i = s; i < e; i++) if (b[i] < 48 || b[i] > 57) return -1;
  } else if (t !== T_INT && t !== T_UINT && t !== T_NEG) return -1;
  const z = skipZeros(b, s, e);
  if (z === e) return 0;
  if (t === T_STR && e - z === 20 && cmpDigits(b, z, LIM_U64) > 0) return -1;
  if (t !== T_NEG) {
    parts.groupStart = z;
    parts.groupEnd = e;
    return 1;
  }
  // 2^64 - v for 0 < v ≤ 2^63 (checked by bareType): 19 or 20 digits.
  const hl = parts.hostEnd - parts.hostStart;
  if (scratch.length < hl + 20) scratch = new Uint8Array(2 * (hl + 20));
  for (let i = 0; i < hl; i++) scratch[i] = b[parts.hostStart + i];
  let borrow = 0;
  let j = e - 1;
  for (let k = 19; k >= 0; k--, j--) {
    let d = TWO_64[k] - 48 - borrow - (j >= z ? b[j] - 48 : 0);
    borrow = d < 0 ? 1 : 0;
    if (d < 0) d += 10;
    scratch[hl + k] = 48 + d;
  }
  groupParts.hostStart = 0;
  groupParts.hostEnd = hl;
  groupParts.pid = parts.pid;
  groupParts.groupStart = skipZeros(scratch, hl, hl + 20);
  groupParts.groupEnd = hl + 20;
  return 2;
}

// ---- addresses ----
// Addresses the scanner has seen pass isIP, each with its bytes in an arena and its ipHashAt:
// a hit is a compare four bytes at a time (so IPv6 costs little more than IPv4) and gives the
// address hash without computing it. Slots are found by a cheap hash of the length and the
// first and last four bytes. Cleared when 3/4 full. (Longer addresses than a slot holds are
// checked with isIP every time.)
const IP_SLOTS = 8192, IP_BYTES = 48;
/** ipHashAt of the address in each slot. */
const ipHashes = new Int32Array(IP_SLOTS);
/** Length of the address in each slot; 0: empty. */
const ipLens = new Int32Array(IP_SLOTS);
const ipArena = new Uint8Array(IP_SLOTS * IP_BYTES);
const ipView = new DataView(ipArena.buffer);
let ipCount = 0;
let body: Buffer = Buffer.alloc(0);
/** ipHashAt of the last address addressOf took (0: none). */
const ipH = new Int32Array(1);

/**
 * b[s, e) (not empty) is an address isIP takes: then its ipHashAt is in ipH[0].
 */
function ipOk(b: Uint8Array, dv: DataView, s: number, e: number): boolean {
  const len = e - s;
  let x = len;
  if (len >= 4) x ^= dv.getInt32(s) ^ Math.imul(dv.getInt32(e - 4), 0x01000193);
  else for (let i = s; i < e; i++) x = Math.imul(x ^ b[i], 0x01000193);
  const home = Math.imul(x, 0x9e3779b1) >>> 19; // 13 bits: IP_SLOTS
  let slot = home;
  for (let l = ipLens[slot]; l !== 0; l = ipLens[slot]) {
    if (l === len && sameBytes(b, dv, s, ipArena, ipView, slot * IP_BYTES, len)) {
      ipH[0] = ipHashes[slot];
      return true;
    }
    slot = (slot + 1) & (IP_SLOTS - 1);
  }
  if (isIP(body.toString('latin1', s, e)) === 0) return false;
  const h = ipHashAt(b, s, e);
  ipH[0] = h;
  if (len > IP_BYTES) return true;
  if (ipCount >= (IP_SLOTS >> 2) * 3) {
    ipLens.fill(0);
    ipCount = 0;
    slot = home;
  }
  ipHashes[slot] = h;
  ipLens[slot] = len;
  ipArena.set(b.subarray(s, e), slot * IP_BYTES);
  ipCount++;
  return true;
}

/**
 * An address key (absent, an empty string, or a string isIP takes): sets its range in parts
 * (src or dst) and its hash in ipH; false when the fast path cannot take it.
 */
function addressOf(b: Uint8Array, dv: DataView, id: number, src: boolean): boolean {
  let s = 0, e = 0;
  if ((seen & (1 << id)) !== 0) {
    if (vT[id] !== T_STR) return false;
    s = vS[id];
    e = vE[id];
  }
  if (src) {
    parts.srcIpStart = s;
    parts.srcIpEnd = e;
  } else {
    parts.dstIpStart = s;
    parts.dstIpEnd = e;
  }
  if (s !== e) return ipOk(b, dv, s, e);
  ipH[0] = 0; // ipHashAt of nothing
  return true;
}

/** What judge() found for writeRow: kind (1 entry), error flag, app_span_sampled, address hashes. */
const judged = new Int32Array(5);
const J_ENTRY = 0, J_ERROR = 1, J_SAMPLED = 2, J_SRC_IP = 3, J_DST_IP = 4;

/**
 * Judges the known keys of the scanned line as validate.ts would: -1 when the fast path cannot
 * take the span, else its thread group as groupOf says (0 none, 1 in the body, 2 in scratch),
 * with the identity parts, vNum and `judged` filled for writeRow.
 */
function judge(b: Uint8Array, dv: DataView): number {
  const has = seen;
  // required keys
  const REQUIRED = (1 << K_HOST) | (1 << K_REQ) | (1 << K_RESP) | (1 << K_PID) | (1 << K_DURATION);
  if ((has & REQUIRED) !== REQUIRED || (has & ((1 << K_TYPE) | (1 << K_DIR))) === 0) return -1;
  // host: a non-empty string
  if (vT[K_HOST] !== T_STR || vE[K_HOST] === vS[K_HOST]) return -1;
  parts.hostStart = vS[K_HOST];
  parts.hostEnd = vE[K_HOST];
  // kind: ebpf_span_type and/or direction, agreeing
  let kind = 0;
  if ((has & (1 << K_TYPE)) !== 0) {
    if (vT[K_TYPE] !== T_STR) return -1;
    kind = kindOf(dv, b, vS[K_TYPE], vE[K_TYPE], false);
    if (kind === 0) return -1;
  }
  if ((has & (1 << K_DIR)) !== 0) {
    if (vT[K_DIR] !== T_STR) return -1;
    const d = kindOf(dv, b, vS[K_DIR], vE[K_DIR], true);
    if (d === 0 || (kind !== 0 && kind !== d)) return -1;
    kind = d;
  }
  // uint(): its value (≤ max) in vNum, 0 when absent (the required ones are present)
  for (let k = 0; k < UINT_IDS.length; k++) {
    const id = UINT_IDS[k];
    if ((has & (1 << id)) === 0) {
      vNum[id] = 0;
      continue;
    }
    const t = vT[id];
    // An integer's digit-loop value: every partial value is at most the final one, so when
    // that is ≤ max (≤ 2^53 - 1) each step was exact, as in the decoder; above max the
    // validator rejects it too.
    if (t === T_INT || t === T_UINT) {
      if (vNum[id] > UINT_MAX[k]) return -1;
      continue;
    }
    // A digit string of 1 to 16 characters: the validator's own loop
    const s = vS[id], e = vE[id];
    if (t !== T_STR || e === s || e - s > 16) return -1;
    let v = 0;
    for (let i = s; i < e; i++) {
      const d = b[i] - 48;
      if (d < 0 || d > 9) return -1;
      v = v * 10 + d;
    }
    if (v > UINT_MAX[k]) return -1;
    vNum[id] = v;
  }
  if ((has & (1 << K_START)) === 0) {
    // no start: the timestamp (after the epoch), Number(time.slice(0, -3)), exact up to 2^53 - 1
    if (timeS < 0 || timeNeg) return -1;
    if (timeE - timeS <= 3) vNum[K_START] = 0;
    else if (!digitsValue(b, timeS, timeE - 3) || runValue[0] > MAX_SAFE) return -1;
    else vNum[K_START] = runValue[0];
  }
  const code = vNum[K_CODE];
  // status: a string, any case, else derived from the code
  let statusError = code >= 500;
  if ((has & (1 << K_STATUS)) !== 0) {
    const s = vS[K_STATUS], e = vE[K_STATUS];
    if (vT[K_STATUS] !== T_STR) return -1;
    const st = statusOf(dv, b, s, e);
    if (st === 0) return -1;
    statusError = st === 2;
  }
  // str(): absent, a string (within max_field_bytes: keyValue) or a number; not a boolean
  for (let k = 0; k < STR_IDS.length; k++) {
    const id = STR_IDS[k];
    if ((has & (1 << id)) !== 0 && (vT[id] === T_TRUE || vT[id] === T_FALSE)) return -1;
  }
  if (!appTraceOf(b) || !appParentOk(b)) return -1;
  const sampled = sampledOf(b);
  if (sampled === 2) return -1;
  judged[J_SAMPLED] = sampled;
  parts.pid = vNum[K_PID];
  const group = groupOf(b);
  if (group < 0) return -1;
  if (!addressOf(b, dv, K_SRC_IP, true)) return -1;
  judged[J_SRC_IP] = ipH[0];
  if (!addressOf(b, dv, K_DST_IP, false)) return -1;
  judged[J_DST_IP] = ipH[0];
  judged[J_ENTRY] = kind === 1 ? 1 : 0;
  judged[J_ERROR] = statusError || code >= 500 || code === 0 ? 1 : 0;
  parts.tid = vNum[K_TID];
  parts.entry = kind === 1;
  parts.reqSeq = vNum[K_REQ];
  parts.respSeq = vNum[K_RESP];
  parts.startUs = vNum[K_START];
  parts.srcPort = vNum[K_SRC_PORT];
  parts.dstPort = vNum[K_DST_PORT];
  return group;
}

/**
 * Appends the row of the judged line at `loc` (group: judge's answer), its identity already in
 * `lanes`.
 *
 * Where the hash functions are called matters: each passes its numbers to small helpers
 * (ids.ts word, wideWord), and when V8 inlines spanIdentityAt into a caller that has already
 * spent its inlining budget, some of those calls stay calls and every 32-bit word or µs time
 * they pass is boxed: 16 to 32 bytes of garbage a span (measured), against none when
 * spanIdentityAt is inlined with a fresh budget. So spanIdentityAt is called from the body loop
 * (whose other callees are too big to inline), and the group key and seqKey from here (a
 * function too big to be inlined itself, so they get its budget).
 */
function writeRow(b: Uint8Array, out: JoinBatch, loc: number, group: number): void {
  const i = out.push();
  const reqSeq = vNum[K_REQ], respSeq = vNum[K_RESP], start = vNum[K_START];
  out.idA[i] = lanes.a; out.idB[i] = lanes.b; out.idC[i] = lanes.c; out.idD[i] = lanes.d;
  if (group === 0) {
    out.gkey[i] = -1;
    out.gchk[i] = 0;
  } else {
    if (group === 1) groupKeyAt(b, parts, gk);
    else groupKeyAt(scratch, groupParts, gk);
    out.gkey[i] = gk.key;
    out.gchk[i] = gk.check;
  }
  out.skey[i] = seqKey(reqSeq, respSeq);
  out.reqSeq[i] = reqSeq;
  out.respSeq[i] = respSeq;
  out.startUs[i] = start;
  out.endUs[i] = start + vNum[K_DURATION];
  out.srcPort[i] = vNum[K_SRC_PORT];
  out.dstPort[i] = vNum[K_DST_PORT];
  out.srcIpH[i] = judged[J_SRC_IP];
  out.dstIpH[i] = judged[J_DST_IP];
  out.flags[i] = (judged[J_ENTRY] === 1 ? F_ENTRY : 0) | (judged[J_ERROR] === 1 ? F_ERROR : 0);
  out.appSampled[i] = judged[J_SAMPLED];
  const a = 4 * i;
  out.app[a] = appW[0]; out.app[a + 1] = appW[1]; out.app[a + 2] = appW[2]; out.app[a + 3] = appW[3];
  out.loc[i] = loc;
}

// ---- the body ----
const AT0 = [0];

/** The point at b[s, e) decoded alone with the reference; false when it has an error. */
function slowLine(buf: Buffer, s: number, e: number, out: JoinBatch): boolean {
  let span;
  try {
    const p = decodeLineProtocolAt(buf.toString('latin1', s, e), AT0)[0];
    span = validatePoint(p, { maxFieldBytes: maxBytes });
  } catch {
    return false;
  }
  if ('reason' in span) return false;
  joinFieldsOf(span, out, s);
  return true;
}

/** The reference: ingest's decodeBody for line protocol, then joinFieldsOf on every span. */
export function referenceScan(buf: Buffer, cfg: ScanLimits, out: JoinBatch): { errors: PointError[] } {
  out.clear();
  const { spans, errors, locs } = decodeBody(buf, 'lp', cfg);
  for (let i = 0; i < spans.length; i++) joinFieldsOf(spans[i], out, locs[i]);
  return { errors };
}

/**
 * Clears `out` and fills it with the join fields of the body's valid spans (row i = i-th
 * valid span, loc = byte offset of its line); returns the point errors. Exactly what ingest's
 * decodeBody(body, 'lp', cfg) + joinFieldsOf give, thrown SeqErrors (413) included.
 */
export function scanLineProtocol(buf: Buffer, cfg: ScanLimits, out: JoinBatch): { errors: PointError[] } {
  out.clear();
  if (!isAscii(buf)) {
    scanStats.whole++;
    return referenceScan(buf, cfg, out);
  }
  const b = new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const n = b.length;
  tNoted = fNoted = 0;
  const maxPoints = cfg.max_batch_spans;
  maxBytes = cfg.max_field_bytes;
  body = buf;
  let nextBs = -2; // index of the next backslash at or after pos (n: none); -2: not searched yet
  let index = 0;
  let pos = 0;
  try {
    while (pos < n) {
      const c = b[pos];
      if (c === NL || c === SP || c === TAB || c === CR) {
        pos++;
        continue;
      }
      if (c === HASH) {
        const nl = buf.indexOf(NL, pos);
        pos = nl < 0 ? n : nl;
        continue;
      }
      if (index >= maxPoints) break; // the reference throws its 413
      let end = scanLine(b, dv, pos, n);
      if (end >= 0) {
        if (nextBs < pos) {
          nextBs = buf.indexOf(BS, pos);
          if (nextBs < 0) nextBs = n;
        }
        const group = nextBs < end ? -1 : judge(b, dv);
        if (group < 0) end = -1;
        else {
          spanIdentityAt(b, parts, lanes); // here, not in writeRow: see writeRow
          writeRow(b, out, pos, group);
          scanStats.fast++;
        }
      }
      if (end < 0) {
        end = buf.indexOf(NL, pos);
        if (end < 0) end = n;
        if (!slowLine(buf, pos, end, out)) break;
        scanStats.slow++;
      }
      index++;
      pos = end;
    }
  } finally {
    body = EMPTY;
  }
  if (pos >= n) return { errors: [] };
  scanStats.whole++;
  return referenceScan(buf, cfg, out);
}

const EMPTY = Buffer.alloc(0);
