// One span → one line of line protocol, on the agent's hot path (every span is encoded once,
// when it is made). The output is the bytes of src/span/lineprotocol.ts encodeSpans() (the
// shared, general encoder: same keys, order and types; encode.test.ts checks byte for byte),
// written for the known keys without it: the general encoder goes through an intermediate
// point object and costs about 15 µs per span here, more than the whole parse (docs/agent.md).
import type { EbpfSpan, AttrValue } from '../span/span.js';
import { MEASUREMENT } from '../span/span.js';

const NEEDS_NAME_ESCAPE = /[, =\\\n\r\t]/;

/** Tag values and keys: commas, spaces, equals and backslashes escaped; newlines kept visible. */
function name(s: string): string {
  if (!NEEDS_NAME_ESCAPE.test(s)) return s;
  return s.replace(/[, =\\\n\r\t]/g, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : c === '\t' ? ' ' : '\\' + c));
}

const INT64_MAX = '9223372036854775807';

const KNOWN = new Set([
  'host', 'direction', 'ebpf_span_type', 'req_seq', 'resp_seq', 'thread_trace_id', 'pid', 'tid', 'start', 'duration',
  'service', 'process_name', 'src_ip', 'src_port', 'dst_ip', 'dst_port', 'operation', 'resource', 'status',
  'http_method', 'http_route', 'http_status_code', 'app_trace_id', 'app_parent_id', 'app_span_sampled',
]);

// ---- Written as bytes straight into the sender's batch buffer ----
//
// A line built as a string took ~30 strings per span (numbers, template parts, the rope
// flattened by Buffer.write); writeSpanLine writes the bytes (UTF-8, the same escapes) into the
// batch with no string at all. Byte stores from JS cost 1–4 ns each while a native copy of a
// whole line costs ~20 ns, so what repeats from span to span is copied as pre-encoded bytes:
// the host prefix, the keys, and the run from `service` to `http_status_code` (the same for
// every exchange of a connection that asks the same thing), remembered per port pair.
// Numbers are written as digits with integer arithmetic.

const enum Esc { Raw, Quoted, Name }

/**
 * A key (`,pid="`, `i,duration=`): short, so a native copy costs more than stores from JS,
 * and a store per byte (≈ 4 ns each here, the largest part of writeSpanLine) more than one per
 * four bytes. Kept as its little-endian 32-bit words and the last bytes that do not fill one.
 */
interface Key { n: number; words: Int32Array; rest: Uint8Array }

function key(s: string): Key {
  const b = Buffer.from(s);
  const words = new Int32Array(b.length >> 2);
  for (let i = 0; i < words.length; i++) words[i] = b[4 * i] | (b[4 * i + 1] << 8) | (b[4 * i + 2] << 16) | (b[4 * i + 3] << 24);
  return { n: b.length, words, rest: b.slice(words.length * 4) };
}

/** A DataView of the buffer last written to (the sender's batch: one for its life). */
let viewBuf: Uint8Array | null = null;
let view: DataView = new DataView(new ArrayBuffer(0));

/** A key's bytes at `at`: nothing when they do not all fit (the line is then written again). */
function putKey(buf: Uint8Array, at: number, k: Key): number {
  const end = at + k.n;
  if (end <= buf.length) {
    if (buf !== viewBuf) { view = new DataView(buf.buffer, buf.byteOffset, buf.length); viewBuf = buf; }
    const w = k.words;
    for (let i = 0; i < w.length; i++, at += 4) view.setInt32(at, w[i], true);
    const r = k.rest;
    for (let i = 0; i < r.length; i++) buf[at + i] = r[i];
  }
  return end;
}
const K_INCOMING = ' direction="incoming",ebpf_span_type="entry",req_seq=';
const K_OUTGOING = ' direction="outgoing",ebpf_span_type="exit",req_seq=';
const K_RESP_SEQ = key('i,resp_seq=');
const K_THREAD = key(',thread_trace_id=');
const K_PID = key(',pid="');
const K_TID = key(',tid=');
const K_START = key(',start=');
const K_DURATION = key('i,duration=');
const K_SERVICE = key('i,service=');
const K_PROCESS = key(',process_name=');
const K_SRC_IP = key(',src_ip="');
const K_SRC_PORT = key(',src_port="');
const K_DST_IP = key(',dst_ip="');
const K_DST_PORT = key(',dst_port="');
const K_OPERATION = key(',operation=');
const K_RESOURCE = key(',resource=');
const K_STATUS = key(',status="');
const K_METHOD = key(',http_method=');
const K_ROUTE = key(',http_route=');
const K_CODE = key(',http_status_code=');
const K_TRACE = key(',app_trace_id=');
const K_PARENT = key(',app_parent_id=');
const K_SAMPLED = key(',app_span_sampled=');
const K_TRUE = key('true');
const K_FALSE = key('false');

/**
 * Runs of bytes (the host prefix, a remembered middle: each longer than 40 bytes, the keys are
 * putKey's) as one native copy; nothing past buf's end.
 */
function bytes(buf: Uint8Array, at: number, k: Uint8Array): number {
  const n = k.length;
  if (at + n <= buf.length) buf.set(k, at);
  return at + n;
}

/** `s` as UTF-8 (what Buffer.write does, lone surrogates as U+FFFD), escaped for its place. */
function text(buf: Uint8Array, at: number, s: string, esc: Esc): number {
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      if (esc === Esc.Quoted) {
        if (c === 34 || c === 92) buf[at++] = 92;
      } else if (esc === Esc.Name) {
        if (c === 44 || c === 32 || c === 61 || c === 92) buf[at++] = 92;
        else if (c === 10) { buf[at++] = 92; c = 110; }
        else if (c === 13) { buf[at++] = 92; c = 114; }
        else if (c === 9) c = 32;
      }
      buf[at++] = c;
    } else if (c < 0x800) {
      buf[at++] = 0xc0 | (c >> 6);
      buf[at++] = 0x80 | (c & 63);
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        buf[at++] = 0xf0 | (cp >> 18);
        buf[at++] = 0x80 | ((cp >> 12) & 63);
        buf[at++] = 0x80 | ((cp >> 6) & 63);
        buf[at++] = 0x80 | (cp & 63);
        i++;
      } else {
        buf[at++] = 0xef; buf[at++] = 0xbf; buf[at++] = 0xbd;
      }
    } else {
      buf[at++] = 0xe0 | (c >> 12);
      buf[at++] = 0x80 | ((c >> 6) & 63);
      buf[at++] = 0x80 | (c & 63);
    }
  }
  return at;
}

function quoted(buf: Uint8Array, at: number, s: string): number {
  buf[at++] = 34;
  at = text(buf, at, s, Esc.Quoted);
  buf[at] = 34;
  return at + 1;
}

/** "00" … "99": digits are written two a step (half the divisions). */
const PAIRS = new Uint8Array(200);
for (let i = 0; i < 100; i++) { PAIRS[2 * i] = 48 + ((i / 10) | 0); PAIRS[2 * i + 1] = 48 + (i % 10); }

/** Digits of an integer 0 ≤ v < 2^31. */
function digits(buf: Uint8Array, at: number, v: number): number {
  const end = at + (v < 10 ? 1 : v < 100 ? 2 : v < 1000 ? 3 : v < 1e4 ? 4 : v < 1e5 ? 5 : v < 1e6 ? 6 : v < 1e7 ? 7 : v < 1e8 ? 8 : v < 1e9 ? 9 : 10);
  let p = end;
  while (v >= 100) {
    const q = (v / 100) | 0;
    const r = (v - q * 100) << 1;
    buf[--p] = PAIRS[r + 1];
    buf[--p] = PAIRS[r];
    v = q;
  }
  if (v >= 10) { buf[--p] = PAIRS[(v << 1) + 1]; buf[--p] = PAIRS[v << 1]; } else buf[--p] = 48 + v;
  return end;
}

/** `${v}`: digits for safe integers (integer arithmetic), String(v) otherwise. */
function num(buf: Uint8Array, at: number, v: number): number {
  if (v >= 0 && v < 2147483648 && (v | 0) === v) return digits(buf, at, v);
  if (!Number.isSafeInteger(v)) return text(buf, at, String(v), Esc.Raw);
  if (v < 0) {
    buf[at++] = 45;
    v = -v;
    if (v < 2147483648) return digits(buf, at, v);
  }
  // 2^31 ≤ v < 2^53 (microsecond times): the high part, then nine digits padded with zeros.
  const hi = Math.floor(v / 1e9);
  let lo = (v - hi * 1e9) | 0;
  at = digits(buf, at, hi);
  let p = at + 9;
  for (let k = 0; k < 4; k++) {
    const q = (lo / 100) | 0;
    const r = (lo - q * 100) << 1;
    buf[--p] = PAIRS[r + 1];
    buf[--p] = PAIRS[r];
    lo = q;
  }
  buf[--p] = 48 + lo;
  return at + 9;
}

function attrValue(buf: Uint8Array, at: number, v: AttrValue): number {
  if (typeof v === 'string') return quoted(buf, at, v);
  if (typeof v === 'boolean') return putKey(buf, at, v ? K_TRUE : K_FALSE);
  if (Number.isInteger(v)) { at = num(buf, at, v); buf[at] = 105; return at + 1; }
  if (!Number.isFinite(v)) throw new RangeError(`line protocol cannot carry the float ${v}`);
  return text(buf, at, String(v), Esc.Raw);
}

/** `dketrace,host=… direction=…,ebpf_span_type=…,req_seq=` for the last host seen. */
let prefixHost: string | null = null;
let entryPrefix: Uint8Array = Buffer.alloc(0);
let exitPrefix: Uint8Array = Buffer.alloc(0);

function prefix(host: string, entry: boolean): Uint8Array {
  if (host !== prefixHost) {
    const h = host === '' ? MEASUREMENT : `${MEASUREMENT},host=${name(host)}`;
    entryPrefix = Buffer.from(h + K_INCOMING);
    exitPrefix = Buffer.from(h + K_OUTGOING);
    prefixHost = host;
  }
  return entry ? entryPrefix : exitPrefix;
}

/** `,key=` for attribute keys (null: a known key, not repeated as an attribute). */
const attrKeys = new Map<string, Key | null>();

function attrKey(k: string): Key | null {
  let b = attrKeys.get(k);
  if (b === undefined) {
    if (attrKeys.size >= 1024) attrKeys.clear();
    b = KNOWN.has(k) ? null : key(`,${name(k)}=`);
    attrKeys.set(k, b);
  }
  return b;
}

/** The run from `i,service=` to `http_status_code=…i` of the last span per port pair. */
interface Middle {
  service: string; processName: string; srcIp: string; srcPort: number; dstIp: string; dstPort: number;
  operation: string; resource: string; status: string; httpMethod: string; httpRoute: string; httpStatusCode: number;
  bytes: Uint8Array;
}
const middles = new Map<number, Middle>();
const MIDDLE_MAX_BYTES = 512;

/** A copy (Buffer#slice would be a view into the batch, which is overwritten). */
function copyOf(buf: Uint8Array, from: number, to: number): Uint8Array {
  const b = new Uint8Array(to - from);
  b.set(buf.subarray(from, to));
  return b;
}

function sameMiddle(m: Middle, s: EbpfSpan): boolean {
  return m.srcPort === s.srcPort && m.dstPort === s.dstPort && m.httpStatusCode === s.httpStatusCode &&
    m.resource === s.resource && m.httpRoute === s.httpRoute && m.httpMethod === s.httpMethod && m.status === s.status &&
    m.service === s.service && m.processName === s.processName && m.srcIp === s.srcIp && m.dstIp === s.dstIp &&
    m.operation === s.operation;
}

function writeMiddle(buf: Uint8Array, at: number, s: EbpfSpan): number {
  at = quoted(buf, putKey(buf, at, K_SERVICE), s.service);
  if (s.processName) at = quoted(buf, putKey(buf, at, K_PROCESS), s.processName);
  if (s.srcIp) { at = text(buf, putKey(buf, at, K_SRC_IP), s.srcIp, Esc.Raw); buf[at++] = 34; }
  if (s.srcPort) { at = num(buf, putKey(buf, at, K_SRC_PORT), s.srcPort); buf[at++] = 34; }
  if (s.dstIp) { at = text(buf, putKey(buf, at, K_DST_IP), s.dstIp, Esc.Raw); buf[at++] = 34; }
  if (s.dstPort) { at = num(buf, putKey(buf, at, K_DST_PORT), s.dstPort); buf[at++] = 34; }
  if (s.operation) at = quoted(buf, putKey(buf, at, K_OPERATION), s.operation);
  if (s.resource) at = quoted(buf, putKey(buf, at, K_RESOURCE), s.resource);
  at = text(buf, putKey(buf, at, K_STATUS), s.status, Esc.Raw);
  buf[at++] = 34;
  if (s.httpMethod) at = quoted(buf, putKey(buf, at, K_METHOD), s.httpMethod);
  if (s.httpRoute) at = quoted(buf, putKey(buf, at, K_ROUTE), s.httpRoute);
  at = num(buf, putKey(buf, at, K_CODE), s.httpStatusCode);
  buf[at++] = 105;
  return at;
}

/**
 * Writes the line of encodeSpans([s]) (same bytes) into buf at `at`; returns the offset after
 * its newline. Bytes that would fall past buf's end are not written: a result above
 * buf.length means the line did not fit (write it again elsewhere).
 */
export function writeSpanLine(buf: Uint8Array, at: number, s: EbpfSpan): number {
  const entry = s.kind === 'entry';
  at = bytes(buf, at, prefix(s.host, entry));
  at = putKey(buf, num(buf, at, s.reqSeq), K_RESP_SEQ);
  at = num(buf, at, s.respSeq);
  buf[at++] = 105;
  const g = s.threadGroup;
  if (g !== '' && g !== '0') {
    at = text(buf, putKey(buf, at, K_THREAD), g, Esc.Raw);
    buf[at++] = g.length > 19 || (g.length === 19 && g > INT64_MAX) ? 117 : 105;
  }
  at = num(buf, putKey(buf, at, K_PID), s.pid);
  buf[at++] = 34;
  if (s.tid) { at = num(buf, putKey(buf, at, K_TID), s.tid); buf[at++] = 105; }
  const startFrom = putKey(buf, at, K_START);
  const startTo = num(buf, startFrom, s.startUs);
  at = num(buf, putKey(buf, startTo, K_DURATION), s.durationUs);
  // The middle run: copied when this port pair's last span had the same values.
  const key = s.srcPort * 65536 + s.dstPort;
  const m = middles.get(key);
  if (m !== undefined && sameMiddle(m, s)) {
    at = bytes(buf, at, m.bytes);
  } else {
    const from = at;
    at = writeMiddle(buf, at, s);
    if (at <= buf.length && at - from <= MIDDLE_MAX_BYTES) {
      if (middles.size >= 4096) middles.clear();
      middles.set(key, {
        service: s.service, processName: s.processName, srcIp: s.srcIp, srcPort: s.srcPort, dstIp: s.dstIp, dstPort: s.dstPort,
        operation: s.operation, resource: s.resource, status: s.status, httpMethod: s.httpMethod, httpRoute: s.httpRoute,
        httpStatusCode: s.httpStatusCode, bytes: copyOf(buf, from, at),
      });
    }
  }
  if (s.appTraceId) at = quoted(buf, putKey(buf, at, K_TRACE), s.appTraceId);
  if (s.appParentId) at = quoted(buf, putKey(buf, at, K_PARENT), s.appParentId);
  if (s.appSampled) { at = num(buf, putKey(buf, at, K_SAMPLED), s.appSampled); buf[at++] = 105; }
  const attrs = s.attrs;
  for (const k in attrs) {
    const kb = attrKey(k);
    if (kb === null) continue;
    at = attrValue(buf, putKey(buf, at, kb), attrs[k]);
  }
  buf[at++] = 32;
  // The timestamp is the start time in ns: its µs digits, already written above, and "000".
  for (let k = startFrom; k < startTo; k++) buf[at++] = buf[k];
  buf[at++] = 48; buf[at++] = 48; buf[at++] = 48;
  buf[at++] = 10;
  return at;
}
