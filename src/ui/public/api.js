// @ts-check
// The query API client: the one place that knows its paths and shapes (docs/query-api.md).

const TOKEN_KEY = 'seqtrace.queryToken';

export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) ?? ''; } catch { return ''; }
}
/** @param {string} t */
export function setToken(t) {
  try { if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ }
}

/**
 * @param {string} path
 * @param {Record<string, string|number|undefined>} [params]
 * @param {AbortSignal} [signal]
 */
async function get(path, params = {}, signal) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') qs.set(k, String(v));
  const url = qs.size ? `${path}?${qs}` : path;
  /** @type {Record<string,string>} */
  const headers = { accept: 'application/json' };
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url, { headers, signal });
  const text = await res.text();
  /** @type {any} */
  let body;
  try { body = text ? JSON.parse(text) : undefined; } catch { body = undefined; }
  if (!res.ok) {
    const err = body?.error ?? body;
    throw new ApiError(res.status, err?.code ?? `HTTP_${res.status}`, err?.message ?? (text.slice(0, 200) || res.statusText));
  }
  return body;
}

/**
 * @typedef {{traceId:string, rootService:string, rootOperation:string, startUs:number, durationUs:number,
 *   spanCount:number, errorCount:number, services:string[], lateCount:number}} TraceSummary
 * @typedef {{traces: TraceSummary[], next?: string}} TracePage
 * @typedef {{parent:string, child:string, peer?:true, callCount:number, errorCount:number, p50Us:number, p99Us:number}} DependencyEdge
 * @typedef {{service?:string, operation?:string, status?:string, minDurationUs?:number, maxDurationUs?:number,
 *   startUs?:number, endUs?:number, limit?:number, cursor?:string}} TraceQuery
 */

/** @returns {Promise<string[]>} */
export async function services() {
  const b = await get('/api/services');
  return Array.isArray(b) ? b : b.services ?? b.data ?? [];
}

/** @param {string} service @returns {Promise<string[]>} */
export async function operations(service) {
  const b = await get(`/api/services/${encodeURIComponent(service)}/operations`);
  return Array.isArray(b) ? b : b.operations ?? b.data ?? [];
}

/** @param {TraceQuery} q @param {AbortSignal} [signal] @returns {Promise<TracePage>} */
export async function findTraces(q, signal) {
  const b = await get('/api/traces', {
    service: q.service, operation: q.operation, status: q.status,
    minDuration: q.minDurationUs, maxDuration: q.maxDurationUs,
    start: q.startUs, end: q.endUs, limit: q.limit, cursor: q.cursor,
  }, signal);
  return { traces: b.traces ?? b.data ?? [], next: b.next ?? undefined };
}

/** @param {string} traceId @returns {Promise<any[]>} spans (LinkedSpan) ordered by start */
export async function getTrace(traceId) {
  const b = await get(`/api/traces/${encodeURIComponent(traceId)}`);
  return Array.isArray(b) ? b : b.spans ?? b.data ?? [];
}

/** @param {number} startUs @param {number} endUs @returns {Promise<DependencyEdge[]>} */
export async function dependencies(startUs, endUs) {
  const b = await get('/api/dependencies', { start: startUs, end: endUs });
  return Array.isArray(b) ? b : b.dependencies ?? b.edges ?? b.data ?? [];
}

/**
 * @typedef {{samplingRate:number, keepErrorTraces:boolean, windowMs:number,
 *   spans:{accepted:number, pending:number, sampledOut:number, stored:number}}} LinkerStatus
 */

/**
 * The linker's sampling, window and span counts (why a search may find nothing yet); null where
 * the server is not a linker (the query API over a store alone) or does not answer.
 * @param {AbortSignal} [signal] @returns {Promise<LinkerStatus|null>}
 */
export async function status(signal) {
  try {
    const b = await get('/api/status', {}, signal);
    return b && b.spans ? b : null;
  } catch {
    return null;
  }
}
