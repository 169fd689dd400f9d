// Turning one HTTP (or FastCGI, or uwsgi) exchange into the span sent to the linker (docs/span-format.md).
import type { EbpfSpan, SpanKind, AttrValue } from '../span/span.js';
import type { HttpMessage } from './http/parser.js';
import type { AppTraceContext } from './tracecontext.js';

export interface ExchangeFacts {
  kind: SpanKind;
  host: string;
  pid: number;
  /** Thread that read (entry) or wrote (exit) the request. */
  tid: number;
  goid: number;
  threadGroup: string;
  req: HttpMessage;
  /** The request's first byte: its TCP sequence number, or a Unix socket's message id (unixpairs.ts). */
  reqSeq: number;
  /** The final response; null when the connection ended before it was complete. */
  resp: HttpMessage | null;
  /** First response byte (interim 1xx included); -1 when none was seen. */
  respSeq: number;
  /** Status seen on a response that did not complete (0 when none). */
  partialStatus: number;
  respBytes: number;
  startUs: number;
  endUs: number;
  ctx: AppTraceContext | null;
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
  /** A Unix socket's path ('' for TCP): the span's `unix_path`. */
  unixPath: string;
  /** Over TLS (HTTPS; the plaintext from OpenSSL's probes): the span's `tls`. */
  tls: boolean;
  /** The protocol: HTTP, FastCGI or uwsgi. */
  operation: string;
  service: string;
  processName: string;
  threadName: string;
}

/** `/users/7?x=1` → `/users/7`; absolute-form targets (proxies) lose scheme and authority. */
export function routeOf(target: string): string {
  let start = 0;
  if (target.charCodeAt(0) !== 47 /* / */) {
    const scheme = target.indexOf('://');
    if (scheme > 0) {
      const slash = target.indexOf('/', scheme + 3);
      if (slash < 0) return '/';
      start = slash;
    }
  }
  let end = target.length;
  const q = target.indexOf('?', start);
  if (q >= 0) end = q;
  const h = target.indexOf('#', start);
  if (h >= 0 && h < end) end = h;
  return start === 0 && end === target.length ? target : target.slice(start, end);
}

export function statusOf(code: number, complete: boolean): 'ok' | 'warning' | 'error' {
  if (!complete || code === 0 || code >= 500) return 'error';
  return code >= 400 ? 'warning' : 'ok';
}

/** The longest request id or host sent (span-format.md): longer is no name, and cut finds nothing. */
const NAME_ATTR_MAX = 256;

export function buildSpan(f: ExchangeFacts): EbpfSpan {
  const req = f.req;
  const code = f.resp ? f.resp.status : f.partialStatus;
  const route = routeOf(req.target);
  const reqBytes = req.bytes;
  const attrs: Record<string, AttrValue> = {
    http_version: req.version,
    thread_name: f.threadName,
    bytes_read: f.kind === 'entry' ? reqBytes : f.respBytes,
    bytes_written: f.kind === 'entry' ? f.respBytes : reqBytes,
  };
  if (f.goid !== 0) attrs.tid_usr = f.goid;
  if (req.truncated || f.resp?.truncated) attrs.truncated = true;
  if (f.resp === null) {
    attrs.response_incomplete = true;
    if (f.partialStatus) attrs.response_status_seen = f.partialStatus;
  }
  if (f.ctx?.traceState) attrs.app_trace_state = f.ctx.traceState;
  // What users search their logs by: with it a trace is found in Jaeger or Tempo by tag. Ids
  // are short (a UUID: 36); a longer value is no id, and cut it would find nothing.
  const rid = req.trace?.xRequestId;
  if (rid && rid.length <= NAME_ATTR_MAX) attrs.http_request_id = rid;
  // The name the client called the server by (a virtual host, an API's domain): what names a
  // peer that is not traced. A longer value is no host name.
  if (req.host && req.host.length <= NAME_ATTR_MAX) attrs.http_host = req.host;
  if (f.unixPath) attrs.unix_path = f.unixPath;
  if (f.tls) attrs.tls = true;
  return {
    host: f.host,
    kind: f.kind,
    reqSeq: f.reqSeq,
    respSeq: f.respSeq < 0 ? 0 : f.respSeq,
    threadGroup: f.threadGroup,
    pid: f.pid,
    tid: f.tid,
    startUs: f.startUs,
    durationUs: Math.max(0, f.endUs - f.startUs),
    service: f.service,
    processName: f.processName,
    srcIp: f.srcIp,
    srcPort: f.srcPort,
    dstIp: f.dstIp,
    dstPort: f.dstPort,
    resource: `${req.method} ${route}`,
    operation: f.operation,
    status: statusOf(code, f.resp !== null),
    httpMethod: req.method,
    httpRoute: route,
    httpStatusCode: f.resp ? code : 0,
    appTraceId: f.ctx?.traceId ?? '',
    appParentId: f.ctx?.parentId ?? '',
    appSampled: f.ctx?.sampled ?? 0,
    attrs,
  };
}
