// Span sets with known true trees, for the joiner's tests and benchmark. A tiny simulation of
// services calling each other: every hop is an exit span in the caller's thread group and an
// entry span in the callee with the same sequence numbers and mirrored addresses.
import type { EbpfSpan, LinkedSpan } from '../../span/span.js';
import type { EmittedTrace } from '../joiner.js';

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Service {
  name: string;
  host: string;
  pid: number;
  ip: string;
  port: number;
}

/**
 * A span with defaults. Built as one object literal of fixed field order, as a decoder would
 * build it, so all spans share a hidden class (spread objects with different overrides do not).
 */
export function makeSpan(over: Partial<EbpfSpan>): EbpfSpan {
  const o = { ...DEFAULTS, ...over };
  return {
    host: o.host, kind: o.kind, reqSeq: o.reqSeq, respSeq: o.respSeq, threadGroup: o.threadGroup, pid: o.pid, tid: o.tid,
    startUs: o.startUs, durationUs: o.durationUs, service: o.service, processName: o.processName,
    srcIp: o.srcIp, srcPort: o.srcPort, dstIp: o.dstIp, dstPort: o.dstPort, resource: o.resource, operation: o.operation,
    status: o.status, httpMethod: o.httpMethod, httpRoute: o.httpRoute, httpStatusCode: o.httpStatusCode,
    appTraceId: o.appTraceId, appParentId: o.appParentId, appSampled: o.appSampled, attrs: o.attrs,
  };
}

const DEFAULTS: EbpfSpan = {
  host: 'h', kind: 'entry', reqSeq: 0, respSeq: 0, threadGroup: '', pid: 1, tid: 1,
  startUs: 1_732_500_000_000_000, durationUs: 1000, service: 'svc', processName: 'svc',
  srcIp: '', srcPort: 0, dstIp: '', dstPort: 0, resource: 'GET /', operation: 'HTTP', status: 'ok',
  httpMethod: 'GET', httpRoute: '/', httpStatusCode: 200, appTraceId: '', appParentId: '', appSampled: 0,
  attrs: {},
};

/** The simulated world: spans plus the parent each truly has (by label). */
export interface World {
  spans: EbpfSpan[];
  parentOf: Map<string, string>; // label → parent label ('' for a root)
  rootOf: Map<string, string>; // label → root label
  next: number;
  rand: () => number;
}

export function newWorld(seed = 1): World {
  return { spans: [], parentOf: new Map(), rootOf: new Map(), next: 0, rand: rng(seed) };
}

export const label = (s: EbpfSpan): string => s.attrs.label as string;

function u32(w: World): number {
  return 1 + Math.floor(w.rand() * 4294967294);
}

function record(w: World, s: EbpfSpan, parent: EbpfSpan | null): EbpfSpan {
  const l = `s${w.next++}`;
  s.attrs = { label: l };
  w.spans.push(s);
  w.parentOf.set(l, parent ? label(parent) : '');
  w.rootOf.set(l, parent ? w.rootOf.get(label(parent))! : l);
  return s;
}

export interface CallPlan {
  svc: Service;
  /** Time spent before the first call and between calls, µs. */
  gapUs?: number;
  calls?: CallPlan[];
  status?: number;
  appTraceId?: string;
  appSampled?: 1 | 0 | -1;
  /** Connection to reuse (keep-alive): the client port of the exit. */
  clientPort?: number;
}

/**
 * Serves a request in `plan.svc` starting at `startUs`, making its calls one after another.
 * `from` is the exit span that sent the request (null: an untraced client). Returns the entry.
 */
export function serve(w: World, plan: CallPlan, startUs: number, from: { exit: EbpfSpan; reqSeq: number; respSeq: number; clientIp: string; clientPort: number } | null): EbpfSpan {
  const svc = plan.svc;
  const tg = String(1 + Math.floor(w.rand() * 2 ** 52));
  const tid = svc.pid + 1 + Math.floor(w.rand() * 64);
  const gap = plan.gapUs ?? 100;
  const calls = plan.calls ?? [];
  const entry = record(w, makeSpan({
    host: svc.host, kind: 'entry', pid: svc.pid, tid, threadGroup: tg, service: svc.name, processName: svc.name,
    reqSeq: from ? from.reqSeq : u32(w), respSeq: from ? from.respSeq : u32(w), startUs,
    srcIp: svc.ip, srcPort: svc.port, dstIp: from ? from.clientIp : '198.51.100.7', dstPort: from ? from.clientPort : 40000 + Math.floor(w.rand() * 20000),
    resource: `GET /${svc.name}`, httpRoute: `/${svc.name}`, httpStatusCode: plan.status ?? 200,
    status: (plan.status ?? 200) >= 500 ? 'error' : 'ok',
    appTraceId: plan.appTraceId ?? '', appSampled: plan.appSampled ?? 0,
  }), from ? from.exit : null);
  let t = startUs + gap;
  for (const c of calls) {
    const reqSeq = u32(w), respSeq = u32(w);
    const clientPort = c.clientPort ?? 32768 + Math.floor(w.rand() * 28000);
    const exit = record(w, makeSpan({
      host: svc.host, kind: 'exit', pid: svc.pid, tid, threadGroup: tg, service: svc.name, processName: svc.name,
      reqSeq, respSeq, startUs: t, srcIp: svc.ip, srcPort: clientPort, dstIp: c.svc.ip, dstPort: c.svc.port,
      resource: `GET /${c.svc.name}`, httpRoute: `/${c.svc.name}`, httpStatusCode: c.status ?? 200,
      status: (c.status ?? 200) >= 500 ? 'error' : 'ok',
    }), entry);
    // The callee sees the request a little later and answers a little earlier.
    const child = serve(w, c, t + 20, { exit, reqSeq, respSeq, clientIp: svc.ip, clientPort });
    exit.durationUs = child.startUs + child.durationUs + 20 - t;
    t = exit.startUs + exit.durationUs + gap;
  }
  entry.durationUs = t - startUs;
  return entry;
}

export function service(i: number, hostCount = 1000): Service {
  return { name: `svc${i}`, host: `host-${i % hostCount}`, pid: 1000 + i, ip: `10.0.${(i >> 8) & 255}.${i & 255}`, port: 8000 + (i % 100) };
}

/** A chain a → b → c → ... through `n` services. */
export function chain(services: Service[], extra: Partial<CallPlan> = {}): CallPlan {
  let plan: CallPlan = { svc: services[services.length - 1] };
  for (let i = services.length - 2; i >= 0; i--) plan = { svc: services[i], calls: [plan] };
  return { ...plan, ...extra };
}

export function shuffle<T>(xs: T[], rand: () => number): T[] {
  const a = xs.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

export function allSpans(traces: EmittedTrace[]): LinkedSpan[] {
  return traces.flatMap((t) => t.spans);
}

/**
 * Compares emitted spans with the world's true trees. Returns a list of problems (empty when
 * every span was emitted once, with its true parent, and each true tree has one trace id of
 * its own).
 */
export function checkTrees(w: World, spans: LinkedSpan[]): string[] {
  const problems: string[] = [];
  const byLabel = new Map<string, LinkedSpan>();
  for (const s of spans) {
    if (byLabel.has(label(s))) problems.push(`${label(s)} emitted twice`);
    byLabel.set(label(s), s);
  }
  const traceOfRoot = new Map<string, string>();
  const rootOfTrace = new Map<string, string>();
  for (const [l, parent] of w.parentOf) {
    const s = byLabel.get(l);
    if (!s) { problems.push(`${l} not emitted`); continue; }
    const want = parent === '' ? '' : byLabel.get(parent)?.spanId;
    if (s.parentId !== want) problems.push(`${l}: parent ${s.parentId || '(root)'} expected ${want || '(root)'}`);
    const root = w.rootOf.get(l)!;
    const t = traceOfRoot.get(root);
    if (t === undefined) traceOfRoot.set(root, s.traceId);
    else if (t !== s.traceId) problems.push(`${l}: trace ${s.traceId} but its tree has ${t}`);
    const r = rootOfTrace.get(s.traceId);
    if (r === undefined) rootOfTrace.set(s.traceId, root);
    else if (r !== root) problems.push(`${l}: trace ${s.traceId} shared by trees ${r} and ${root}`);
  }
  return problems;
}

export const OPTS = {
  window: 20_000, sampling_rate: 1, use_app_trace_id: true, keep_error_traces: true, clock_skew: 500, late_retention: 600_000,
};
