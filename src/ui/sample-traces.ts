// Realistic linked traces for the UI tests and bench: a shop of services on a few hosts,
// client (exit) spans joined to server (entry) spans by TCP sequence numbers, thread groups
// per served request, chains, fan-out, errors, an application trace id, a late span and an
// unlinked one. Deterministic for a seed, so tests can assert exact rows.
import { rng } from '../linker/fixtures.js';
import type { EbpfSpan, LinkedSpan } from '../span/span.js';

/** The seedable PRNG of the linker's fixtures: same traces for the same seed. */
export { rng };

const hex = (r: () => number, digits: number) => {
  let s = '';
  while (s.length < digits) s += Math.floor(r() * 0x100000000).toString(16).padStart(8, '0');
  return s.slice(0, digits);
};

interface ServiceInfo { host: string; ip: string; port: number; pid: number; process: string }

export const SHOP: Record<string, ServiceInfo> = {
  frontend: { host: 'web-1', ip: '10.0.0.10', port: 8080, pid: 4242, process: 'node' },
  cart: { host: 'app-1', ip: '10.0.1.20', port: 9001, pid: 5120, process: 'java' },
  inventory: { host: 'app-2', ip: '10.0.1.30', port: 9002, pid: 6230, process: 'inventory' },
  payments: { host: 'app-1', ip: '10.0.1.20', port: 9003, pid: 5340, process: 'python3' },
  ledger: { host: 'db-1', ip: '10.0.2.40', port: 9004, pid: 7450, process: 'ledger' },
};

export interface TraceOpts {
  startUs: number;
  seed: number;
  /** payments answers 500 (the trace has errors). */
  error?: boolean;
  /** The ledger's server span arrives after the trace was emitted. */
  late?: boolean;
  /** The request carried a W3C traceparent: the trace adopts this id. */
  appTraceId?: string;
  /** frontend also calls an outside API that is not traced (a client span with no server side). */
  external?: boolean;
  /** Items fetched in parallel from inventory (fan-out). */
  items?: number;
  /** frontend also calls ledger itself (POST /audit): a call that skips a column of the service map. */
  audit?: boolean;
}

interface Ctx { r: () => number; traceId: string; ebpfTraceId: string; spans: LinkedSpan[]; opts: TraceOpts }

function span(ctx: Ctx, svc: string, kind: 'entry' | 'exit', p: {
  parentId: string; startUs: number; durationUs: number; resource: string; status?: number;
  reqSeq: number; respSeq: number; threadGroup: string; tid: number; peer: ServiceInfo; late?: boolean;
}): LinkedSpan {
  const me = SHOP[svc];
  const [method, route] = p.resource.split(' ');
  const code = p.status ?? 200;
  const ephemeral = 32768 + Math.floor(ctx.r() * 28000);
  const s: LinkedSpan = {
    traceId: ctx.traceId, spanId: hex(ctx.r, 16), parentId: p.parentId, ebpfTraceId: ctx.ebpfTraceId, late: p.late ?? false,
    host: me.host, kind, reqSeq: p.reqSeq, respSeq: p.respSeq, threadGroup: p.threadGroup,
    pid: me.pid, tid: p.tid, startUs: Math.round(p.startUs), durationUs: Math.max(1, Math.round(p.durationUs)),
    service: svc, processName: me.process,
    srcIp: me.ip, srcPort: kind === 'entry' ? me.port : ephemeral,
    dstIp: p.peer.ip, dstPort: kind === 'entry' ? ephemeral : p.peer.port,
    resource: p.resource, operation: 'HTTP', status: code >= 500 ? 'error' : code >= 400 ? 'warning' : 'ok',
    httpMethod: method, httpRoute: route, httpStatusCode: code,
    appTraceId: ctx.opts.appTraceId ?? '', appParentId: ctx.opts.appTraceId ? hex(ctx.r, 16) : '',
    appSampled: ctx.opts.appTraceId ? 1 : 0,
    attrs: { http_version: '1.1', container: `shop-${svc}`, bytes_read: 200 + Math.floor(ctx.r() * 4000), bytes_written: 100 + Math.floor(ctx.r() * 9000) },
  };
  ctx.spans.push(s);
  return s;
}

/**
 * A call from `from` (inside the server span `parent`, on its thread) to `to`: the client
 * span of `from` and the server span of `to` with the same sequence numbers. Returns the
 * server span so the callee can make calls of its own.
 */
function call(ctx: Ctx, parent: LinkedSpan, to: string, resource: string, startUs: number, durationUs: number,
  o: { status?: number; lateServer?: boolean } = {}): LinkedSpan {
  const reqSeq = Math.floor(ctx.r() * 0xffffffff), respSeq = Math.floor(ctx.r() * 0xffffffff);
  const client = span(ctx, parent.service, 'exit', {
    parentId: parent.spanId, startUs, durationUs, resource, status: o.status, reqSeq, respSeq,
    threadGroup: parent.threadGroup, tid: parent.tid, peer: SHOP[to],
  });
  const net = Math.min(300, durationUs * 0.08);
  return span(ctx, to, 'entry', {
    parentId: client.spanId, startUs: startUs + net / 2, durationUs: durationUs - net, resource, status: o.status,
    reqSeq, respSeq, threadGroup: String(BigInt(Math.floor(ctx.r() * 2 ** 53)) * 1024n + 7n), tid: SHOP[to].pid + 1 + Math.floor(ctx.r() * 40),
    peer: SHOP[parent.service], late: o.lateServer,
  });
}

/** One checkout: frontend → cart, inventory ×items (parallel), payments → ledger. */
export function checkoutTrace(opts: TraceOpts): LinkedSpan[] {
  const r = rng(opts.seed);
  const ebpfTraceId = hex(r, 32);
  const ctx: Ctx = { r, traceId: opts.appTraceId ?? ebpfTraceId, ebpfTraceId, spans: [], opts };
  const jitter = (base: number) => base * (0.6 + r() * 0.8);
  const t0 = opts.startUs;
  const cartUs = jitter(2500), invUs = jitter(1800), payUs = jitter(opts.error ? 9000 : 6000), ledgerUs = jitter(2200);
  const items = opts.items ?? 3;
  const total = 400 + cartUs + 200 + invUs * 1.2 + 300 + payUs + 500 + (opts.external ? 1500 : 0) + (opts.audit ? 900 : 0);
  const root = span(ctx, 'frontend', 'entry', {
    parentId: '', startUs: t0, durationUs: total, resource: 'GET /checkout', status: opts.error ? 500 : 200,
    reqSeq: Math.floor(r() * 0xffffffff), respSeq: Math.floor(r() * 0xffffffff),
    threadGroup: String(8812345678901234567n + BigInt(opts.seed)), tid: SHOP.frontend.pid + 1,
    peer: { host: 'client', ip: '203.0.113.7', port: 0, pid: 0, process: '' },
  });
  let t = t0 + 400;
  call(ctx, root, 'cart', 'GET /cart/{id}', t, cartUs);
  t += cartUs + 200;
  for (let i = 0; i < items; i++) call(ctx, root, 'inventory', 'GET /items/{id}', t + i * 60, invUs * (0.8 + 0.4 * r()));
  t += invUs * 1.2 + 300;
  const pay = call(ctx, root, 'payments', 'POST /pay', t, payUs, { status: opts.error ? 500 : 200 });
  call(ctx, pay, 'ledger', 'POST /entries', pay.startUs + 600, Math.min(ledgerUs, pay.durationUs - 1200), { lateServer: opts.late });
  t += payUs + 200;
  if (opts.external) {
    // A call to a service nobody traces: no server span; the map names it by its Host.
    const geo = span(ctx, 'frontend', 'exit', {
      parentId: root.spanId, startUs: t, durationUs: 1200, resource: 'GET /geo', reqSeq: Math.floor(r() * 0xffffffff),
      respSeq: Math.floor(r() * 0xffffffff), threadGroup: root.threadGroup, tid: root.tid,
      peer: { host: '', ip: '198.51.100.9', port: 443, pid: 0, process: '' },
    });
    geo.attrs.http_host = 'geo.example.net';
    t += 1500;
  }
  if (opts.audit) call(ctx, root, 'ledger', 'POST /audit', t, 600);
  return ctx.spans.sort((a, b) => a.startUs - b.startUs);
}

/** A short trace of cart alone (a second root operation for search filters). */
export function cartOnlyTrace(startUs: number, seed: number): LinkedSpan[] {
  const r = rng(seed);
  const ebpfTraceId = hex(r, 32);
  const ctx: Ctx = { r, traceId: ebpfTraceId, ebpfTraceId, spans: [], opts: { startUs, seed } };
  span(ctx, 'cart', 'entry', {
    parentId: '', startUs, durationUs: 800 + r() * 900, resource: 'DELETE /cart/{id}',
    reqSeq: Math.floor(r() * 0xffffffff), respSeq: Math.floor(r() * 0xffffffff),
    threadGroup: '0', tid: SHOP.cart.pid + 3, peer: SHOP.frontend,
  });
  return ctx.spans;
}

/**
 * A big trace: frontend fans out to `n` calls spread over the services, some nested, so the
 * waterfall has `~n` rows of several depths (2 spans per call, plus the root).
 */
export function bigTrace(startUs: number, calls: number, seed = 99): LinkedSpan[] {
  const r = rng(seed);
  const ebpfTraceId = hex(r, 32);
  const ctx: Ctx = { r, traceId: ebpfTraceId, ebpfTraceId, spans: [], opts: { startUs, seed } };
  const per = 700;
  const root = span(ctx, 'frontend', 'entry', {
    parentId: '', startUs, durationUs: calls * per + 2000, resource: 'GET /report', reqSeq: Math.floor(r() * 0xffffffff), respSeq: Math.floor(r() * 0xffffffff),
    threadGroup: '4242000000001', tid: SHOP.frontend.pid + 1, peer: { host: 'client', ip: '203.0.113.7', port: 0, pid: 0, process: '' },
  });
  const names = ['cart', 'inventory', 'payments'] as const;
  let made = 0, t = startUs + 500;
  while (made < calls) {
    const svc = names[made % names.length];
    const server = call(ctx, root, svc, `GET /${svc}/{id}`, t, per * 0.9, { status: made % 97 === 5 ? 500 : 200 });
    made++;
    // Every fifth call is served with a nested call to the ledger.
    if (made % 5 === 0 && made < calls) {
      call(ctx, server, 'ledger', 'POST /entries', server.startUs + 50, per * 0.5);
      made++;
    }
    t += per;
  }
  return ctx.spans.sort((a, b) => a.startUs - b.startUs);
}

/** What an agent would have sent for a linked span: the span without the linker's ids. */
export function toEbpf(s: LinkedSpan): EbpfSpan {
  const { traceId: _t, spanId: _s, parentId: _p, ebpfTraceId: _e, late: _l, ...ebpf } = s;
  return ebpf;
}
