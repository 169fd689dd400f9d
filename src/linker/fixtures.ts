// Synthetic traces with known trees, as agents on several hosts would report them: for
// every call, the caller's exit span and the callee's entry span share the TCP sequence
// numbers; inside a service, the entry and the exit spans it made share a thread group.
// Used by the linker's end-to-end tests and by bench/linker.ts.
import type { EbpfSpan } from '../span/span.js';

export interface CallTree {
  service: string;
  /** Calls this service makes while serving the request, in order. */
  calls?: CallTree[];
  /** HTTP status of this service's answer (default 200). */
  status?: number;
  /** Application trace id seen in the request headers of this service and every service below. */
  appTraceId?: string;
  /** Route of the request to this service (default `/<service>`). */
  route?: string;
}

export interface BuiltTrace {
  spans: EbpfSpan[];
  /** spanKey → spanKey of the expected parent ('' for the root). */
  parents: Map<string, string>;
}

/** A key that names a span without its linker-made id. */
export function spanKey(s: Pick<EbpfSpan, 'kind' | 'host' | 'pid' | 'reqSeq' | 'respSeq'>): string {
  return `${s.kind}/${s.host}/${s.pid}/${s.reqSeq}/${s.respSeq}`;
}

/** mulberry32: a small deterministic PRNG, so every run posts the same spans. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function serviceIndex(name: string): number {
  let h = 7;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) & 0xffff;
  return h;
}

function durationOf(t: CallTree): number {
  let d = 200;
  for (const c of t.calls ?? []) d += durationOf(c) + 60;
  return d;
}

export interface BuildOptions {
  /** Start of the root span, µs since the epoch. */
  startUs: number;
  random: () => number;
}

/** Spans of one request through `root`, with their expected parents. */
export function buildTrace(root: CallTree, o: BuildOptions): BuiltTrace {
  const spans: EbpfSpan[] = [];
  const parents = new Map<string, string>();
  const u32 = () => Math.floor(o.random() * 4294967296);
  const group = () => (BigInt(u32()) * 4294967296n + BigInt(u32()) + 1n).toString();

  function where(service: string) {
    const i = serviceIndex(service);
    return { host: `host-${service}`, pid: 1000 + (i % 30000), ip: `10.${(i >> 8) & 255}.${i & 255}.${1 + (i % 200)}` };
  }

  function entry(t: CallTree, startUs: number, reqSeq: number, respSeq: number, client: { ip: string; port: number }, parentKey: string, app: string): void {
    const me = where(t.service);
    const appTraceId = t.appTraceId ?? app;
    const tg = group();
    const tid = me.pid + 1 + Math.floor(o.random() * 64);
    const code = t.status ?? 200;
    const route = t.route ?? `/${t.service}`;
    const span: EbpfSpan = {
      host: me.host, kind: 'entry', reqSeq, respSeq, threadGroup: tg, pid: me.pid, tid, startUs, durationUs: durationOf(t),
      service: t.service, processName: t.service, srcIp: me.ip, srcPort: 8080, dstIp: client.ip, dstPort: client.port,
      resource: `GET ${route}`, operation: 'HTTP', status: code >= 500 ? 'error' : code >= 400 ? 'warning' : 'ok',
      httpMethod: 'GET', httpRoute: route, httpStatusCode: code, appTraceId, appParentId: appTraceId ? '00f067aa0ba902b7' : '',
      appSampled: 0, attrs: { http_version: '1.1' },
    };
    spans.push(span);
    const myKey = spanKey(span);
    parents.set(myKey, parentKey);
    // One keep-alive connection per callee service: consecutive calls continue its sequence numbers.
    const conns = new Map<string, { port: number; req: number; resp: number }>();
    let at = startUs + 100;
    for (const c of t.calls ?? []) {
      const callee = where(c.service);
      let conn = conns.get(c.service);
      if (!conn) {
        conn = { port: 32768 + Math.floor(o.random() * 28000), req: u32(), resp: u32() };
        conns.set(c.service, conn);
      }
      const d = durationOf(c) + 40;
      const exit: EbpfSpan = {
        host: me.host, kind: 'exit', reqSeq: conn.req, respSeq: conn.resp, threadGroup: tg, pid: me.pid, tid, startUs: at, durationUs: d,
        service: t.service, processName: t.service, srcIp: me.ip, srcPort: conn.port, dstIp: callee.ip, dstPort: 8080,
        resource: `GET ${c.route ?? `/${c.service}`}`, operation: 'HTTP', status: 'ok', httpMethod: 'GET', httpRoute: c.route ?? `/${c.service}`,
        httpStatusCode: c.status ?? 200, appTraceId, appParentId: appTraceId ? '00f067aa0ba902b7' : '', appSampled: 0, attrs: {},
      };
      if ((c.status ?? 200) >= 500) exit.status = 'error';
      spans.push(exit);
      parents.set(spanKey(exit), myKey);
      entry(c, at + 20, conn.req, conn.resp, { ip: me.ip, port: conn.port }, spanKey(exit), appTraceId);
      conn.req = (conn.req + 180 + Math.floor(o.random() * 100)) >>> 0;
      conn.resp = (conn.resp + 400 + Math.floor(o.random() * 1000)) >>> 0;
      at += d + 20;
    }
  }

  entry(root, o.startUs, u32(), u32(), { ip: '192.168.1.10', port: 40000 + Math.floor(o.random() * 20000) }, '', '');
  return { spans, parents };
}

/** A chain a → b → c → ... */
export function chain(services: string[]): CallTree {
  let t: CallTree = { service: services[services.length - 1] };
  for (let i = services.length - 2; i >= 0; i--) t = { service: services[i], calls: [t] };
  return t;
}

/** A realistic mix for benchmarks: a front end fanning out to services that call a database proxy. */
export function shopTree(r: () => number): CallTree {
  const n = 1 + Math.floor(r() * 4);
  const calls: CallTree[] = [{ service: 'auth' }];
  for (let i = 0; i < n; i++) {
    const svc = ['catalog', 'cart', 'pricing', 'reviews'][i];
    calls.push({ service: svc, calls: [{ service: 'db-proxy', route: `/q/${svc}` }, ...(r() < 0.3 ? [{ service: 'cache' }] : [])] });
  }
  return { service: 'frontend', route: '/checkout', calls };
}
