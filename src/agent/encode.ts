// One span → one line of line protocol, on the agent's hot path (every span is encoded once,
// when it is made). The output is the same as src/span/lineprotocol.ts encodeSpans() (the
// shared, general encoder: same keys, order and types; encode.test.ts checks both decode to
// the same span), written as straight string building for the known keys: the general
// encoder goes through an intermediate point object and costs about 15 µs per span here,
// more than the whole parse (see docs/agent.md).
import type { EbpfSpan, AttrValue } from '../span/span.js';
import { MEASUREMENT } from '../span/span.js';

const NEEDS_STRING_ESCAPE = /["\\]/;
const NEEDS_NAME_ESCAPE = /[, =\\\n\r\t]/;

function str(s: string): string {
  return NEEDS_STRING_ESCAPE.test(s) ? `"${s.replace(/["\\]/g, '\\$&')}"` : `"${s}"`;
}

/** Tag values and keys: commas, spaces, equals and backslashes escaped; newlines kept visible. */
function name(s: string): string {
  if (!NEEDS_NAME_ESCAPE.test(s)) return s;
  return s.replace(/[, =\\\n\r\t]/g, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : c === '\t' ? ' ' : '\\' + c));
}

function value(v: AttrValue): string {
  if (typeof v === 'string') return str(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Number.isInteger(v)) return `${v}i`;
  if (!Number.isFinite(v)) throw new RangeError(`line protocol cannot carry the float ${v}`);
  return String(v);
}

const INT64_MAX = '9223372036854775807';

/** u64 decimal string as a line-protocol integer: `u` above the int64 range. */
function u64(s: string): string {
  return s.length > 19 || (s.length === 19 && s > INT64_MAX) ? `${s}u` : `${s}i`;
}

const KNOWN = new Set([
  'host', 'direction', 'ebpf_span_type', 'req_seq', 'resp_seq', 'thread_trace_id', 'pid', 'tid', 'start', 'duration',
  'service', 'process_name', 'src_ip', 'src_port', 'dst_ip', 'dst_port', 'operation', 'resource', 'status',
  'http_method', 'http_route', 'http_status_code', 'app_trace_id', 'app_parent_id', 'app_span_sampled',
]);

/** The line for one span, with its newline. */
export function encodeSpanLine(s: EbpfSpan): string {
  let l = `${MEASUREMENT}${s.host === '' ? '' : `,host=${name(s.host)}`} direction=${s.kind === 'entry' ? '"incoming"' : '"outgoing"'},ebpf_span_type="${s.kind}",req_seq=${s.reqSeq}i,resp_seq=${s.respSeq}i`;
  if (s.threadGroup !== '' && s.threadGroup !== '0') l += `,thread_trace_id=${u64(s.threadGroup)}`;
  l += `,pid="${s.pid}"`;
  if (s.tid) l += `,tid=${s.tid}i`;
  l += `,start=${s.startUs}i,duration=${s.durationUs}i,service=${str(s.service)}`;
  if (s.processName) l += `,process_name=${str(s.processName)}`;
  if (s.srcIp) l += `,src_ip="${s.srcIp}"`;
  if (s.srcPort) l += `,src_port="${s.srcPort}"`;
  if (s.dstIp) l += `,dst_ip="${s.dstIp}"`;
  if (s.dstPort) l += `,dst_port="${s.dstPort}"`;
  if (s.operation) l += `,operation=${str(s.operation)}`;
  if (s.resource) l += `,resource=${str(s.resource)}`;
  l += `,status="${s.status}"`;
  if (s.httpMethod) l += `,http_method=${str(s.httpMethod)}`;
  if (s.httpRoute) l += `,http_route=${str(s.httpRoute)}`;
  l += `,http_status_code=${s.httpStatusCode}i`;
  if (s.appTraceId) l += `,app_trace_id=${str(s.appTraceId)}`;
  if (s.appParentId) l += `,app_parent_id=${str(s.appParentId)}`;
  if (s.appSampled) l += `,app_span_sampled=${s.appSampled}i`;
  for (const k in s.attrs) {
    if (KNOWN.has(k)) continue;
    l += `,${name(k)}=${value(s.attrs[k])}`;
  }
  return `${l} ${s.startUs}000\n`;
}

// ---- The same line, written as bytes straight into the sender's batch buffer ----
//
// encodeSpanLine builds ~30 strings per span (numbers, template parts, the rope flattened by
// Buffer.write); writeSpanLine writes the same bytes (UTF-8, the same escapes) into the batch
// with no string at all: constant parts are copied from pre-encoded bytes, numbers written as
// digits, strings char by char. encode.test.ts checks the two byte for byte.

const enum Esc { Raw, Quoted, Name }

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const K_INCOMING = ascii(' direction="incoming",ebpf_span_type="entry",req_seq=');
const K_OUTGOING = ascii(' direction="outgoing",ebpf_span_type="exit",req_seq=');
const K_HOST = ascii(`${MEASUREMENT},host=`);
const K_MEASUREMENT = ascii(MEASUREMENT);
const K_RESP_SEQ = ascii('i,resp_seq=');
const K_THREAD = ascii(',thread_trace_id=');
const K_PID = ascii(',pid="');
const K_TID = ascii(',tid=');
const K_START = ascii(',start=');
const K_DURATION = ascii('i,duration=');
const K_SERVICE = ascii('i,service=');
const K_PROCESS = ascii(',process_name=');
const K_SRC_IP = ascii(',src_ip="');
const K_SRC_PORT = ascii(',src_port="');
const K_DST_IP = ascii(',dst_ip="');
const K_DST_PORT = ascii(',dst_port="');
const K_OPERATION = ascii(',operation=');
const K_RESOURCE = ascii(',resource=');
const K_STATUS = ascii(',status="');
const K_METHOD = ascii(',http_method=');
const K_ROUTE = ascii(',http_route=');
const K_CODE = ascii(',http_status_code=');
const K_TRACE = ascii(',app_trace_id=');
const K_PARENT = ascii(',app_parent_id=');
const K_SAMPLED = ascii(',app_span_sampled=');
const K_TRUE = ascii('true');
const K_FALSE = ascii('false');

function bytes(buf: Uint8Array, at: number, k: Uint8Array): number {
  for (let i = 0; i < k.length; i++) buf[at + i] = k[i];
  return at + k.length;
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

/** `${v}`: digits for safe integers, String(v) otherwise. */
function num(buf: Uint8Array, at: number, v: number): number {
  if (!Number.isSafeInteger(v)) return text(buf, at, String(v), Esc.Raw);
  if (v < 0) { buf[at++] = 45; v = -v; }
  let n = 1;
  for (let x = v; x >= 10; x = Math.floor(x / 10)) n++;
  const end = at + n;
  for (let p = end - 1; p > at; p--) {
    const q = Math.floor(v / 10);
    buf[p] = 48 + (v - q * 10);
    v = q;
  }
  buf[at] = 48 + v;
  return end;
}

function attrValue(buf: Uint8Array, at: number, v: AttrValue): number {
  if (typeof v === 'string') return quoted(buf, at, v);
  if (typeof v === 'boolean') return bytes(buf, at, v ? K_TRUE : K_FALSE);
  if (Number.isInteger(v)) { at = num(buf, at, v); buf[at] = 105; return at + 1; }
  if (!Number.isFinite(v)) throw new RangeError(`line protocol cannot carry the float ${v}`);
  return text(buf, at, String(v), Esc.Raw);
}

/**
 * Writes the line of encodeSpanLine(s) (same bytes) into buf at `at`; returns the offset after
 * its newline. Bytes that would fall past buf's end are not written: a result above
 * buf.length means the line did not fit (write it again elsewhere).
 */
export function writeSpanLine(buf: Uint8Array, at: number, s: EbpfSpan): number {
  const entry = s.kind === 'entry';
  if (!entry && s.kind !== 'exit') return text(buf, at, encodeSpanLine(s), Esc.Raw);
  if (s.host === '') at = bytes(buf, at, K_MEASUREMENT);
  else at = text(buf, bytes(buf, at, K_HOST), s.host, Esc.Name);
  at = bytes(buf, at, entry ? K_INCOMING : K_OUTGOING);
  at = bytes(buf, num(buf, at, s.reqSeq), K_RESP_SEQ);
  at = num(buf, at, s.respSeq);
  buf[at++] = 105;
  const g = s.threadGroup;
  if (g !== '' && g !== '0') {
    at = text(buf, bytes(buf, at, K_THREAD), g, Esc.Raw);
    buf[at++] = g.length > 19 || (g.length === 19 && g > INT64_MAX) ? 117 : 105;
  }
  at = num(buf, bytes(buf, at, K_PID), s.pid);
  buf[at++] = 34;
  if (s.tid) { at = num(buf, bytes(buf, at, K_TID), s.tid); buf[at++] = 105; }
  at = num(buf, bytes(buf, at, K_START), s.startUs);
  at = num(buf, bytes(buf, at, K_DURATION), s.durationUs);
  at = quoted(buf, bytes(buf, at, K_SERVICE), s.service);
  if (s.processName) at = quoted(buf, bytes(buf, at, K_PROCESS), s.processName);
  if (s.srcIp) { at = text(buf, bytes(buf, at, K_SRC_IP), s.srcIp, Esc.Raw); buf[at++] = 34; }
  if (s.srcPort) { at = num(buf, bytes(buf, at, K_SRC_PORT), s.srcPort); buf[at++] = 34; }
  if (s.dstIp) { at = text(buf, bytes(buf, at, K_DST_IP), s.dstIp, Esc.Raw); buf[at++] = 34; }
  if (s.dstPort) { at = num(buf, bytes(buf, at, K_DST_PORT), s.dstPort); buf[at++] = 34; }
  if (s.operation) at = quoted(buf, bytes(buf, at, K_OPERATION), s.operation);
  if (s.resource) at = quoted(buf, bytes(buf, at, K_RESOURCE), s.resource);
  at = text(buf, bytes(buf, at, K_STATUS), s.status, Esc.Raw);
  buf[at++] = 34;
  if (s.httpMethod) at = quoted(buf, bytes(buf, at, K_METHOD), s.httpMethod);
  if (s.httpRoute) at = quoted(buf, bytes(buf, at, K_ROUTE), s.httpRoute);
  at = num(buf, bytes(buf, at, K_CODE), s.httpStatusCode);
  buf[at++] = 105;
  if (s.appTraceId) at = quoted(buf, bytes(buf, at, K_TRACE), s.appTraceId);
  if (s.appParentId) at = quoted(buf, bytes(buf, at, K_PARENT), s.appParentId);
  if (s.appSampled) { at = num(buf, bytes(buf, at, K_SAMPLED), s.appSampled); buf[at++] = 105; }
  const attrs = s.attrs;
  for (const k in attrs) {
    if (KNOWN.has(k)) continue;
    buf[at++] = 44;
    at = text(buf, at, k, Esc.Name);
    buf[at++] = 61;
    at = attrValue(buf, at, attrs[k]);
  }
  buf[at++] = 32;
  at = num(buf, at, s.startUs);
  buf[at++] = 48; buf[at++] = 48; buf[at++] = 48;
  buf[at++] = 10;
  return at;
}
