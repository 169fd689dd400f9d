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
