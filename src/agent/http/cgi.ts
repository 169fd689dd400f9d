// CGI variables: how FastCGI (fcgi/parser.ts) and uwsgi (uwsgi/parser.ts) carry an HTTP
// request from a web server to an application server. Both parsers read their variables into
// a map; this turns it into the HttpMessage fields the HTTP/1 parser reads from a request head.
import type { HeaderTable, HttpMessage, TraceHeaders } from './parser.js';

/** header name (as in the HTTP header table) → CGI variable: `x-request-id` → `HTTP_X_REQUEST_ID`. */
export function cgiVarTable(headers: HeaderTable): Map<string, keyof TraceHeaders> {
  const out = new Map<string, keyof TraceHeaders>();
  for (const byLen of headers) {
    for (const [name, [, key]] of byLen ?? []) {
      if (key) out.set(`HTTP_${name.toString('latin1').toUpperCase().replace(/-/g, '_')}`, key);
    }
  }
  return out;
}

/**
 * A request's method, target (REQUEST_URI, else the script's path and query), HTTP version,
 * Host and trace headers from its CGI variables; marked truncated without a method.
 */
export function setRequestFromCgi(m: HttpMessage, vars: Map<string, string>, traceVars: Map<string, keyof TraceHeaders>): void {
  m.method = vars.get('REQUEST_METHOD') ?? '';
  const query = vars.get('QUERY_STRING');
  m.target = vars.get('REQUEST_URI') ?? `${vars.get('SCRIPT_NAME') ?? ''}${vars.get('PATH_INFO') ?? ''}${query ? `?${query}` : ''}`;
  const proto = vars.get('SERVER_PROTOCOL') ?? '';
  m.version = proto.startsWith('HTTP/') ? proto.slice(5) : '';
  m.host = vars.get('HTTP_HOST') ?? '';
  if (!m.method) m.truncated = true;
  for (const [name, key] of traceVars) {
    const v = vars.get(name);
    if (v !== undefined) (m.trace ??= {})[key] = v;
  }
}
