// LinkedSpan → OTLP trace data: what each span becomes (name, kind, status, attributes,
// resource). ./otlp-encode.ts writes it as OTLP/HTTP protobuf or OTLP/JSON. `toExportRequest`
// builds the message as objects: OTLP/JSON is that object serialised, and protobufjs encoding
// the same object is the reference the fast protobuf writer is tested against.
import { readFileSync } from 'node:fs';
import type { AttrValue, LinkedSpan } from '../span/span.js';

/** Span.SpanKind and Status.StatusCode values of trace.proto. */
export const SPAN_KIND_SERVER = 2;
export const SPAN_KIND_CLIENT = 3;
export const STATUS_CODE_UNSET = 0;
export const STATUS_CODE_ERROR = 2;
/** Span.flags: W3C "sampled" bit, and the two bits saying whether the parent is remote. */
const FLAG_SAMPLED = 0x01;
const FLAG_HAS_IS_REMOTE = 0x100;
const FLAG_IS_REMOTE = 0x200;

export const SCOPE_NAME = 'seqtrace';
export const SCOPE_VERSION = readVersion();

function readVersion(): string {
  try {
    // src/export/otlp.ts and dist/export/otlp.js are both two levels below package.json.
    return JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version ?? '';
  } catch {
    return '';
  }
}

/** The HTTP methods semconv knows; any other is reported as `_OTHER` plus the original. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'QUERY']);

export type Encoding = 'protobuf' | 'json';

/** One attribute in the shape both encoders take (AnyValue of common.proto). */
export interface KeyValue {
  key: string;
  value: { stringValue?: string; boolValue?: boolean; intValue?: number | string; doubleValue?: number };
}

export function anyValue(v: AttrValue, enc: Encoding): KeyValue['value'] {
  switch (typeof v) {
    case 'string':
      return { stringValue: v };
    case 'boolean':
      return { boolValue: v };
    default:
      // int64 travels as a decimal string in OTLP/JSON. A number beyond 2^53 was already
      // rounded when it became a JS number, so it is honest to send it as a double.
      if (Number.isSafeInteger(v)) return { intValue: enc === 'json' ? String(v) : v };
      return { doubleValue: v };
  }
}

/**
 * The semconv rule for HTTP span status: 5xx is an error on both sides, 4xx only on the
 * client side (a server answering 404 worked as intended). A span the agent itself marked
 * `error` stays an error. Returns the `error.type` value, or '' when the span is no error.
 */
export function errorType(span: LinkedSpan): string {
  const code = span.httpStatusCode;
  if (code >= 500 || (span.kind === 'exit' && code >= 400)) return String(code);
  if (span.status === 'error') return code > 0 ? String(code) : '_OTHER';
  return '';
}

/** `/users/{id}`, `/users/:id`, `/files/*`: a template rather than a concrete path. */
function isRouteTemplate(route: string): boolean {
  return /[{*]|\/:[^/]/.test(route);
}

/** `name[:port]` or `[v6]:port` of a Host header: name without brackets, port (0 when none or not a number). */
export function splitHost(h: string): { name: string; port: number } {
  let name = h;
  let port = '';
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    name = end > 0 ? h.slice(1, end) : h;
    if (end > 0 && h[end + 1] === ':') port = h.slice(end + 2);
  } else {
    const colon = h.lastIndexOf(':');
    if (colon >= 0 && h.indexOf(':') === colon) {
      name = h.slice(0, colon);
      port = h.slice(colon + 1);
    }
  }
  const n = /^\d{1,5}$/.test(port) ? Number(port) : 0;
  return { name, port: n > 0 && n < 65536 ? n : 0 };
}

/** Attribute keys seqtrace sets itself; an `attrs` entry of the same name is not copied. */
const OWN_KEYS = new Set([
  'http.request.method', 'http.request.method_original', 'http.response.status_code', 'url.path', 'http.route',
  'network.protocol.name', 'network.protocol.version', 'network.transport', 'server.address', 'server.port',
  'client.address', 'client.port', 'network.peer.address', 'network.peer.port', 'network.local.address',
  'network.local.port', 'error.type', 'ebpf.host', 'ebpf.pid', 'ebpf.tid', 'ebpf.req_seq', 'ebpf.resp_seq',
  'ebpf.thread_group', 'ebpf.trace_id', 'ebpf.late', 'ebpf.status', 'ebpf.operation', 'app.trace_id', 'app.parent_id',
  // sent as server.address / server.port, network.peer.address
  'http_host', 'unix_path', 'url.scheme',
  // sent as url.scheme
  'tls',
]);

/**
 * Calls `visit` for each attribute of the span: OpenTelemetry HTTP semantic conventions,
 * then seqtrace's own under `ebpf.`, the application's trace context under `app.`, then every
 * extra key the agent sent (`attrs`) except those naming one of the above (keys are unique).
 * A visitor rather than a list so the protobuf writer allocates nothing per attribute.
 */
export function visitSpanAttributes(span: LinkedSpan, visit: (key: string, v: AttrValue) => void): void {
  const server = span.kind === 'entry';
  const method = span.httpMethod.toUpperCase();
  if (method) {
    if (KNOWN_METHODS.has(method)) visit('http.request.method', method);
    else {
      visit('http.request.method', '_OTHER');
      visit('http.request.method_original', span.httpMethod);
    }
  }
  if (span.httpStatusCode > 0) visit('http.response.status_code', span.httpStatusCode);
  // httpRoute is the path the agent saw unless it is a template; a raw path sent apart
  // (http_path / url.path) wins for url.path. The query string is left out: it may hold secrets.
  const route = span.httpRoute;
  const templated = route !== '' && isRouteTemplate(route);
  const attrs = span.attrs;
  const rawPath = typeof attrs.http_path === 'string' ? attrs.http_path
    : typeof attrs['url.path'] === 'string' ? attrs['url.path'] as string
      : templated ? '' : route;
  if (rawPath) {
    const q = rawPath.indexOf('?');
    visit('url.path', q < 0 ? rawPath : rawPath.slice(0, q));
  }
  if (templated) visit('http.route', route);
  // HTTPS (the agent saw its plaintext through OpenSSL's probes)
  if (attrs.tls === true) visit('url.scheme', 'https');
  const version = attrs.http_version;
  if (span.operation === 'FastCGI' || span.operation === 'uwsgi') {
    // A web server's call to PHP-FPM or uWSGI: FastCGI or uwsgi on the wire (the HTTP version is its client's).
    visit('network.protocol.name', span.operation.toLowerCase());
  } else if (version !== undefined && version !== '') {
    visit('network.protocol.name', 'http');
    visit('network.protocol.version', typeof version === 'string' ? version.replace(/^HTTP\//i, '') : String(version));
  }
  // A Unix socket is named by its path where an address would be (semantic conventions).
  const unixPath = typeof attrs.unix_path === 'string' ? attrs.unix_path : '';
  visit('network.transport', unixPath ? 'unix' : 'tcp');
  // src is this process's own end: the server for an entry span, the client for an exit span.
  // The server is named as the client called it (the request's Host) when the agent saw one,
  // as the semantic conventions ask, else by its address; network.peer.* keep the address.
  const host = typeof attrs.http_host === 'string' ? splitHost(attrs.http_host) : null;
  const serverIp = (server ? span.srcIp : span.dstIp) || unixPath;
  const serverPort = server ? span.srcPort : span.dstPort;
  if (host?.name || serverIp) visit('server.address', host?.name || serverIp);
  if (host?.port || serverPort) visit('server.port', host?.port || serverPort);
  if (server) {
    if (span.dstIp) visit('client.address', span.dstIp);
    if (span.dstPort) visit('client.port', span.dstPort);
  }
  if (span.dstIp || unixPath) visit('network.peer.address', span.dstIp || unixPath);
  if (span.dstPort) visit('network.peer.port', span.dstPort);
  if (span.srcIp) visit('network.local.address', span.srcIp);
  if (span.srcPort) visit('network.local.port', span.srcPort);
  const err = errorType(span);
  if (err) visit('error.type', err);

  visit('ebpf.host', span.host);
  visit('ebpf.pid', span.pid);
  if (span.tid) visit('ebpf.tid', span.tid);
  visit('ebpf.req_seq', span.reqSeq);
  visit('ebpf.resp_seq', span.respSeq);
  // A u64: a string keeps every digit.
  if (span.threadGroup && span.threadGroup !== '0') visit('ebpf.thread_group', span.threadGroup);
  if (span.ebpfTraceId) visit('ebpf.trace_id', span.ebpfTraceId);
  visit('ebpf.late', span.late);
  visit('ebpf.status', span.status);
  if (span.operation) visit('ebpf.operation', span.operation);
  if (span.appTraceId) visit('app.trace_id', span.appTraceId);
  if (span.appParentId) visit('app.parent_id', span.appParentId);

  for (const key in attrs) {
    const v = attrs[key];
    if (v === undefined || v === null || OWN_KEYS.has(key)) continue;
    visit(key, v);
  }
}

/** The span's attributes as OTLP KeyValue messages (see visitSpanAttributes). */
export function spanAttributes(span: LinkedSpan, enc: Encoding = 'protobuf'): KeyValue[] {
  const out: KeyValue[] = [];
  visitSpanAttributes(span, (key, v) => out.push({ key, value: anyValue(v, enc) }));
  return out;
}

/** µs since the epoch → ns as the {low, high} pair protobufjs writes as fixed64, exactly. */
function nanosBits(us: number): { low: number; high: number; unsigned: boolean } {
  us = Math.trunc(us);
  // us < 2^53, so splitting it in 32-bit halves is exact; so is each half × 1000.
  const hiUs = Math.floor(us / 4294967296);
  const loNs = (us - hiUs * 4294967296) * 1000; // < 2^42: exact
  const carry = Math.floor(loNs / 4294967296);
  return { low: (loNs - carry * 4294967296) | 0, high: (hiUs * 1000 + carry) | 0, unsigned: true };
}

/** µs since the epoch → ns as a decimal string (OTLP/JSON writes 64-bit integers so). */
export function nanosString(us: number): string {
  return us === 0 ? '0' : `${Math.trunc(us)}000`;
}

function hexBytes(hex: string): Uint8Array {
  return Buffer.from(hex, 'hex');
}

/** Span name: the resource (`GET /users/{id}`), else the method, else the protocol. */
export function spanName(span: LinkedSpan): string {
  return span.resource || span.httpMethod || span.operation || 'HTTP';
}

/**
 * Span.flags: sampled (the linker exports only kept traces), and whether the parent is
 * remote: an exit span's parent is the entry span of its own process; an entry span's parent
 * is the client span in another process (or the application's span).
 */
export function spanFlags(span: LinkedSpan): number {
  let flags = FLAG_SAMPLED;
  if (span.parentId) flags |= FLAG_HAS_IS_REMOTE | (span.kind === 'entry' ? FLAG_IS_REMOTE : 0);
  return flags;
}

export function endUs(span: LinkedSpan): number {
  return span.startUs + Math.max(0, span.durationUs);
}

/** The OTLP Span message for one linked span, as an object (protobufjs field names). */
export function toOtlpSpan(span: LinkedSpan, enc: Encoding = 'protobuf'): Record<string, unknown> {
  const json = enc === 'json';
  const out: Record<string, unknown> = {
    traceId: json ? span.traceId : hexBytes(span.traceId),
    spanId: json ? span.spanId : hexBytes(span.spanId),
    flags: spanFlags(span),
    name: spanName(span),
    kind: span.kind === 'entry' ? SPAN_KIND_SERVER : SPAN_KIND_CLIENT,
    startTimeUnixNano: json ? nanosString(span.startUs) : nanosBits(span.startUs),
    endTimeUnixNano: json ? nanosString(endUs(span)) : nanosBits(endUs(span)),
    attributes: spanAttributes(span, enc),
  };
  if (span.parentId) out.parentSpanId = json ? span.parentId : hexBytes(span.parentId);
  if (errorType(span)) out.status = { code: STATUS_CODE_ERROR };
  return out;
}

/** Spans of one process: they share the resource (service, host, pid). */
export function resourceKey(span: LinkedSpan): string {
  return `${span.service}\u0000${span.host}\u0000${span.pid}`;
}

export function resourceAttributes(span: LinkedSpan, enc: Encoding = 'protobuf'): KeyValue[] {
  const attrs: KeyValue[] = [
    { key: 'service.name', value: { stringValue: span.service || 'unknown_service' } },
    { key: 'host.name', value: { stringValue: span.host } },
    { key: 'process.pid', value: anyValue(span.pid, enc) },
  ];
  if (span.processName) attrs.push({ key: 'process.executable.name', value: { stringValue: span.processName } });
  return attrs;
}

/**
 * ExportTraceServiceRequest for a batch: one ResourceSpans per (service, host, pid), each with
 * one ScopeSpans of scope `seqtrace`.
 */
export function toExportRequest(spans: readonly LinkedSpan[], enc: Encoding = 'protobuf'): { resourceSpans: unknown[] } {
  const groups = new Map<string, { first: LinkedSpan; spans: unknown[] }>();
  for (const span of spans) {
    const key = resourceKey(span);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { first: span, spans: [] }));
    g.spans.push(toOtlpSpan(span, enc));
  }
  const scope = { name: SCOPE_NAME, version: SCOPE_VERSION };
  const resourceSpans: unknown[] = [];
  for (const g of groups.values()) {
    resourceSpans.push({
      resource: { attributes: resourceAttributes(g.first, enc) },
      scopeSpans: [{ scope, spans: g.spans }],
    });
  }
  return { resourceSpans };
}

