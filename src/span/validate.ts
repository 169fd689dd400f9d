// Point → EbpfSpan, every rule of docs/span-format.md in one place. Keys may come as tags
// or fields (a field wins); ids and sequence numbers are numbers whatever their wire type
// (`pid="42"` and `pid=42i` are the same process); 64-bit thread groups stay exact decimal
// strings. A bad point becomes one PointError naming the key, the value and what is accepted.
import { isIP } from 'node:net';
import type { AttrValue, EbpfSpan, SpanKind } from './span.js';
import { MEASUREMENT } from './span.js';
import type { FieldValue, Point, PointError } from './point.js';
import { setOwn, shortValue } from './point.js';

export interface ValidateOptions {
  /** Longest string value (UTF-8 bytes) of one key; `max_field_bytes`. */
  maxFieldBytes: number;
}

const U32_MAX = 4294967295;
const U64_MAX = 18446744073709551615n;
const TWO_64 = 18446744073709551616n;

/** Keys that become EbpfSpan properties; every other key goes to attrs. */
const KNOWN = new Set([
  'host', 'ebpf_span_type', 'direction', 'req_seq', 'resp_seq', 'thread_trace_id', 'pid', 'tid', 'start', 'duration',
  'service', 'process_name', 'src_ip', 'dst_ip', 'src_port', 'dst_port', 'operation', 'resource', 'status',
  'http_method', 'http_route', 'http_status_code', 'app_trace_id', 'app_parent_id', 'app_span_sampled',
]);
/** Attribute keys whose type is known: non-negative integers. */
const COUNT_ATTRS = new Set(['bytes_read', 'bytes_written', 'tid_usr']);

class Bad {
  constructor(readonly field: string, readonly value: unknown, readonly reason: string) {}
}

let fields: Record<string, FieldValue> = {};
let tags: Record<string, string> = {};
let maxBytes = 8192;

function get(key: string): FieldValue | undefined {
  const v = fields[key];
  return v !== undefined ? v : tags[key];
}

function checkLength(key: string, s: string): string {
  // length counts UTF-16 units, each at most 3 UTF-8 bytes: only long strings need counting.
  if (s.length * 3 > maxBytes && Buffer.byteLength(s) > maxBytes) {
    throw new Bad(key, s, `longer than max_field_bytes = ${maxBytes} bytes (${Buffer.byteLength(s)} bytes)`);
  }
  return s;
}

/**
 * Strings that outlive the request are detached from the body text. The decoders hand out
 * substrings of the whole body, and V8 makes a substring of 13 or more characters a *slice*
 * that keeps the whole body text alive: every span the joiner held for its window pinned
 * ~460 bytes of body (measured: 1,475 → 1,014 bytes of heap per pending span). Values repeat
 * (services, routes, addresses), so a copy is made once per distinct value and shared.
 */
const detached = new Map<string, string>();

function detach(s: string): string {
  if (s.length < 13) return s; // V8 copies short substrings: nothing to detach
  const known = detached.get(s);
  if (known !== undefined) return known;
  // A computed property key is internalised: a flat copy, not a slice of the body.
  const flat = Object.keys({ [s]: 0 })[0];
  if (detached.size >= 65536) detached.clear();
  detached.set(flat, flat);
  return flat;
}

function str(key: string): string {
  const v = get(key);
  if (v === undefined) return '';
  if (typeof v === 'string') return detach(checkLength(key, v));
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  throw new Bad(key, v, 'expected a string');
}

/** A non-negative integer ≤ max, as a number, from an integer, an integral float or a digit string. */
function uint(key: string, max: number, required: boolean, accepted: string): number {
  const v = get(key);
  if (v === undefined) {
    if (required) throw new Bad(key, '', `missing: expected ${accepted}`);
    return 0;
  }
  let n: number;
  if (typeof v === 'number') n = v;
  else if (typeof v === 'string' && v.length > 0 && v.length <= 16) {
    // digits by hand: pid and ports arrive as strings from DataKit's agent on every span;
    // 16 digits hold a µs timestamp (an inexact value beyond 2^53 still fails `n > max`)
    n = 0;
    for (let i = 0; i < v.length; i++) {
      const d = v.charCodeAt(i) - 48;
      if (d < 0 || d > 9) throw new Bad(key, v, `expected ${accepted}`);
      n = n * 10 + d;
    }
  } else throw new Bad(key, v, `expected ${accepted}`);
  if (!Number.isInteger(n) || n < 0 || n > max) throw new Bad(key, v, `expected ${accepted}`);
  return n;
}

/** u64 as an exact decimal string; '' for absent or 0. */
function u64(key: string): string {
  const v = get(key);
  if (v === undefined) return '';
  let b: bigint;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Bad(key, v, 'expected an integer 0…2^64-1');
    if (!Number.isSafeInteger(v)) throw new Bad(key, v, 'this integer is beyond 2^53 and lost precision as a JSON number: send it as a string of digits');
    if (v >= 0) return v === 0 ? '' : String(v);
    b = BigInt(v);
  } else if (typeof v === 'bigint') {
    b = v;
  } else if (typeof v === 'string' && /^\d{1,20}$/.test(v)) {
    b = BigInt(v);
  } else {
    throw new Bad(key, v, 'expected an integer 0…2^64-1 or a string of digits');
  }
  // DataKit's agent writes the u64 group id as a signed int64: take its two's complement.
  if (b < 0n && b >= -(TWO_64 >> 1n)) b += TWO_64;
  if (b < 0n || b > U64_MAX) throw new Bad(key, v, 'expected an integer 0…2^64-1');
  return b === 0n ? '' : b.toString();
}

/** Addresses already seen valid: a few thousand distinct ones carry every span. */
const goodIps = new Set<string>();

function ip(key: string): string {
  const s = str(key);
  if (s === '' || goodIps.has(s)) return s;
  if (isIP(s) === 0) throw new Bad(key, s, 'expected an IPv4 or IPv6 address');
  if (goodIps.size >= 65536) goodIps.clear();
  goodIps.add(s);
  return s;
}

function kindOf(): SpanKind {
  const t = get('ebpf_span_type');
  const d = get('direction');
  let kind: SpanKind | undefined;
  if (t !== undefined) {
    if (t === 'entry' || t === 'exit') kind = t;
    else throw new Bad('ebpf_span_type', t, 'expected "entry" or "exit"');
  }
  if (d !== undefined) {
    const fromDir: SpanKind | undefined = d === 'incoming' ? 'entry' : d === 'outgoing' ? 'exit' : undefined;
    if (!fromDir) throw new Bad('direction', d, 'expected "incoming" or "outgoing"');
    if (kind && kind !== fromDir) throw new Bad('direction', d, `disagrees with ebpf_span_type = "${kind}" (incoming ⇔ entry, outgoing ⇔ exit)`);
    kind = fromDir;
  }
  if (!kind) throw new Bad('ebpf_span_type', '', 'missing: expected ebpf_span_type = "entry"/"exit" or direction = "incoming"/"outgoing"');
  return kind;
}

function startUs(time: string): number {
  if (get('start') !== undefined) return uint('start', Number.MAX_SAFE_INTEGER, true, 'an integer number of microseconds since the epoch');
  if (time === '') throw new Bad('start', '', 'missing: neither a start field (µs) nor a point timestamp (ns)');
  if (time.charCodeAt(0) === 45) throw new Bad('time', time, 'expected a timestamp after the epoch');
  return time.length > 3 ? Number(time.slice(0, -3)) : 0;
}

function appId(key: string, maxLen: number): string {
  const v = get(key);
  if (v === undefined) return '';
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v === 0 ? '' : String(v);
  if (typeof v === 'bigint' && v > 0n) return v.toString();
  if (typeof v === 'string' && v.length <= maxLen && /^[0-9a-fA-F]*$/.test(v)) return detach(v.toLowerCase());
  throw new Bad(key, v, `expected hex (W3C, B3) or decimal (Datadog) digits, at most ${maxLen}`);
}

function sampled(): 1 | 0 | -1 {
  const v = get('app_span_sampled');
  if (v === undefined) return 0;
  const n = typeof v === 'boolean' ? (v ? 1 : -1) : typeof v === 'string' ? Number(v.trim() === '' ? 'x' : v) : Number(v);
  if (n === 1 || n === -1 || n === 0) return n;
  throw new Bad('app_span_sampled', v, 'expected 1 (keep), -1 (drop) or 0 (no decision)');
}

function statusOf(code: number): 'ok' | 'warning' | 'error' {
  const v = get('status');
  if (v !== undefined) {
    const s = typeof v === 'string' ? v.toLowerCase() : v;
    if (s === 'ok' || s === 'warning' || s === 'error') return s;
    throw new Bad('status', v, 'expected "ok", "warning" or "error"');
  }
  return code >= 500 ? 'error' : code >= 400 ? 'warning' : 'ok';
}

function attrValue(key: string, v: FieldValue): AttrValue {
  if (COUNT_ATTRS.has(key)) {
    if (typeof v === 'bigint' || (typeof v === 'string' && /^\d{1,20}$/.test(v))) return String(v);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new Bad(key, v, 'expected a non-negative integer');
    return v;
  }
  if (typeof v === 'string') return detach(checkLength(key, v));
  if (typeof v === 'bigint') return v.toString();
  return v;
}

function build(p: Point): EbpfSpan {
  if (p.measurement !== MEASUREMENT) throw new Bad('measurement', p.measurement, `expected "${MEASUREMENT}"`);
  const host = str('host');
  if (host === '') throw new Bad('host', '', 'missing: every span needs the host tag of its agent');
  const kind = kindOf();
  const reqSeq = uint('req_seq', U32_MAX, true, 'an integer 0…4294967295 (TCP sequence number)');
  const respSeq = uint('resp_seq', U32_MAX, true, 'an integer 0…4294967295 (TCP sequence number)');
  const threadGroup = u64('thread_trace_id');
  const pid = uint('pid', U32_MAX, true, 'a process id: an integer or a string of digits');
  const tid = uint('tid', U32_MAX, false, 'a thread id: an integer or a string of digits');
  const start = startUs(p.time);
  const durationUs = uint('duration', Number.MAX_SAFE_INTEGER, true, 'an integer number of microseconds ≥ 0');
  const processName = str('process_name');
  const service = str('service') || processName || 'unknown';
  const httpMethod = str('http_method');
  const httpRoute = str('http_route');
  const httpStatusCode = uint('http_status_code', 999, false, 'an HTTP status code 0…999');
  const resource = str('resource') || (httpMethod && httpRoute ? `${httpMethod} ${httpRoute}` : httpMethod || httpRoute);
  const operation = str('operation') || (httpMethod ? 'HTTP' : '');
  const attrs: Record<string, AttrValue> = {};
  // Own properties only: a key named like an Object.prototype member (constructor, toString)
  // is data too.
  for (const k in tags) if (!KNOWN.has(k) && !Object.hasOwn(fields, k)) setOwn(attrs, k, attrValue(k, tags[k]));
  for (const k in fields) if (!KNOWN.has(k)) setOwn(attrs, k, attrValue(k, fields[k]));
  return {
    host, kind, reqSeq, respSeq, threadGroup, pid, tid, startUs: start, durationUs, service, processName,
    srcIp: ip('src_ip'), srcPort: uint('src_port', 65535, false, 'a port 0…65535'),
    dstIp: ip('dst_ip'), dstPort: uint('dst_port', 65535, false, 'a port 0…65535'),
    resource, operation, status: statusOf(httpStatusCode), httpMethod, httpRoute, httpStatusCode,
    appTraceId: appId('app_trace_id', 32), appParentId: appId('app_parent_id', 20), appSampled: sampled(), attrs,
  };
}

/** One point → a span, or the reason it is not one. */
export function validatePoint(p: Point, opts: ValidateOptions): EbpfSpan | PointError {
  fields = p.fields;
  tags = p.tags;
  maxBytes = opts.maxFieldBytes;
  try {
    return build(p);
  } catch (e) {
    if (!(e instanceof Bad)) throw e;
    return { index: p.index, field: e.field, value: shortValue(e.value), reason: e.reason };
  } finally {
    fields = {};
    tags = {};
  }
}

/**
 * Validates a batch: good spans kept in order, one error per bad point. With `indexes`, the
 * point index of every good span is pushed there (indexes[i] for spans[i]).
 */
export function validatePoints(points: Point[], opts: ValidateOptions, indexes?: number[]): { spans: EbpfSpan[]; errors: PointError[] } {
  const spans: EbpfSpan[] = [];
  const errors: PointError[] = [];
  for (const p of points) {
    const r = validatePoint(p, opts);
    if ('reason' in r) errors.push(r);
    else {
      spans.push(r);
      if (indexes !== undefined) indexes.push(p.index);
    }
  }
  return { spans, errors };
}

/** The inverse, for agents and tests: a span as DataKit sends it (host a tag, the rest fields). */
export function spanToPoint(s: EbpfSpan): { measurement: string; tags: Record<string, string>; fields: Record<string, FieldValue>; time: string } {
  const f: Record<string, FieldValue> = {
    direction: s.kind === 'entry' ? 'incoming' : 'outgoing',
    ebpf_span_type: s.kind,
    req_seq: s.reqSeq,
    resp_seq: s.respSeq,
  };
  if (s.threadGroup !== '' && s.threadGroup !== '0') f.thread_trace_id = BigInt(s.threadGroup);
  f.pid = String(s.pid);
  if (s.tid) f.tid = s.tid;
  f.start = s.startUs;
  f.duration = s.durationUs;
  f.service = s.service;
  if (s.processName) f.process_name = s.processName;
  if (s.srcIp) f.src_ip = s.srcIp;
  if (s.srcPort) f.src_port = String(s.srcPort);
  if (s.dstIp) f.dst_ip = s.dstIp;
  if (s.dstPort) f.dst_port = String(s.dstPort);
  if (s.operation) f.operation = s.operation;
  if (s.resource) f.resource = s.resource;
  f.status = s.status;
  if (s.httpMethod) f.http_method = s.httpMethod;
  if (s.httpRoute) f.http_route = s.httpRoute;
  f.http_status_code = s.httpStatusCode;
  if (s.appTraceId) f.app_trace_id = s.appTraceId;
  if (s.appParentId) f.app_parent_id = s.appParentId;
  if (s.appSampled) f.app_span_sampled = s.appSampled;
  for (const k in s.attrs) if (!Object.hasOwn(f, k) && k !== 'host') setOwn(f, k, s.attrs[k]);
  return { measurement: MEASUREMENT, tags: { host: s.host }, fields: f, time: `${s.startUs}000` };
}
