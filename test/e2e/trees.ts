// Reading traces back through the query API (docs/query-api.md) and comparing them with the
// trees a topology must produce.
//
// Every request of a test carries a unique id in its path (/<route>/<id>), and each service
// passes the id on to its downstreams, so every span's resource names the request it belongs
// to. That lets a test assert not only the shape of each trace but that each link joins spans of
// the same request.
import assert from 'node:assert/strict';
import type { LinkedSpan } from '../../src/span/span.js';
import type { Linker } from './harness.js';
import { sleep } from './harness.js';

export interface TraceSummary {
  traceId: string;
  rootService: string;
  rootOperation: string;
  spanCount: number;
  services: string[];
}

export interface Trace {
  traceId: string;
  spans: LinkedSpan[];
}

async function getJson(url: string): Promise<any> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`);
  return res.json();
}

export async function listTraces(linker: Linker): Promise<TraceSummary[]> {
  const all: TraceSummary[] = [];
  let cursor: string | undefined;
  do {
    const page = await getJson(`${linker.url}/api/traces?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    all.push(...page.traces);
    cursor = page.next;
  } while (cursor);
  return all;
}

export async function getTrace(linker: Linker, traceId: string): Promise<Trace> {
  const t = await getJson(`${linker.url}/api/traces/${traceId}`);
  return { traceId: t.traceId, spans: t.spans };
}

export interface WaitOptions {
  /** A trace is this test's when it has a span of one of these services. */
  services: string[];
  /**
   * Services whose names are not this test's own (nginx is named by its process name): a trace
   * made only of their spans is this test's when one of its spans uses one of `ports`.
   */
  shared?: { services: string[]; ports: number[] };
  /** Only traces whose root belongs to one of these requests (when services are reused across tests). */
  ids?: string[];
  /** Stop waiting once this many spans are stored in this test's traces (and nothing changed for settleMs). */
  spans: number;
  timeoutMs?: number;
  settleMs?: number;
}

/**
 * Wait (bounded) until the test's traces hold the expected number of spans and have stopped
 * changing, then fetch them. Returns whatever is there at the deadline: the assertions say
 * what is missing.
 */
export async function waitForTraces(linker: Linker, o: WaitOptions): Promise<Trace[]> {
  const mine = new Set(o.services);
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  let last = '';
  let stableSince = Date.now();
  let summaries: TraceSummary[] = [];
  const shared = new Set(o.shared?.services ?? []);
  const ports = new Set(o.shared?.ports ?? []);
  const portCheck = new Map<string, boolean>();
  const isMine = async (t: TraceSummary): Promise<boolean> => {
    if (t.services.some((s) => mine.has(s))) return true;
    if (!t.services.some((s) => shared.has(s))) return false;
    const key = `${t.traceId}:${t.spanCount}`;
    if (!portCheck.has(key)) {
      const spans = (await getTrace(linker, t.traceId)).spans;
      portCheck.set(key, spans.some((s) => ports.has(s.srcPort) || ports.has(s.dstPort)));
    }
    return portCheck.get(key)!;
  };
  for (;;) {
    const all = await listTraces(linker);
    const keep = await Promise.all(all.map(isMine));
    const ids = o.ids && new Set(o.ids);
    summaries = all.filter((t, i) => keep[i] && (!ids || ids.has(requestIdOf(t.rootOperation))));
    const count = summaries.reduce((n, t) => n + t.spanCount, 0);
    const key = summaries.map((t) => `${t.traceId}:${t.spanCount}`).sort().join(',');
    if (key !== last) { last = key; stableSince = Date.now(); }
    if (count >= o.spans && Date.now() - stableSince >= (o.settleMs ?? 1500)) break;
    if (Date.now() > deadline) break;
    await sleep(250);
  }
  return Promise.all(summaries.map((s) => getTrace(linker, s.traceId)));
}

// ---------------------------------------------------------------------------------------------
// Expected trees.

export interface Expect {
  service: string;
  kind: 'entry' | 'exit';
  resource: string;
  status: number;
  host?: string;
  children: Expect[];
}

/**
 * One HTTP exchange: `client`'s exit span, whose child is `server`'s entry span, under which
 * come the server's own calls.
 */
export function hop(client: string, server: string, resource: string, status: number, ...serverCalls: Expect[]): Expect {
  return { service: client, kind: 'exit', resource, status, children: [{ service: server, kind: 'entry', resource, status, children: serverCalls }] };
}

/** The same, with the host each side runs on. */
export function hostHop(client: [string, string], server: [string, string], resource: string, status: number, ...serverCalls: Expect[]): Expect {
  const e = hop(client[0], server[0], resource, status, ...serverCalls);
  e.host = client[1];
  e.children[0].host = server[1];
  return e;
}

interface Node {
  span: LinkedSpan;
  children: Node[];
}

function label(x: { service: string; kind: string; resource: string; host?: string }, status: number, withHost: boolean): string {
  return `${x.service} ${x.kind === 'entry' ? 'server' : 'client'} "${x.resource}" ${status}${withHost ? ` @${x.host}` : ''}`;
}

function renderExpect(e: Expect, withHost: boolean, depth = 0): string[] {
  const lines = [`${'  '.repeat(depth)}${label(e, e.status, withHost)}`];
  const kids = e.children.map((c) => renderExpect(c, withHost, depth + 1)).sort((a, b) => a[0].localeCompare(b[0]));
  return lines.concat(...kids);
}

function renderNode(n: Node, withHost: boolean, depth = 0): string[] {
  const lines = [`${'  '.repeat(depth)}${label(n.span, n.span.httpStatusCode, withHost)}`];
  const kids = n.children.map((c) => renderNode(c, withHost, depth + 1)).sort((a, b) => a[0].localeCompare(b[0]));
  return lines.concat(...kids);
}

/** The trace as a forest: spans whose parent is not in the trace are roots. */
export function forest(trace: Trace): Node[] {
  const nodes = new Map<string, Node>(trace.spans.map((s) => [s.spanId, { span: s, children: [] }]));
  const roots: Node[] = [];
  for (const n of nodes.values()) {
    const parent = n.span.parentId ? nodes.get(n.span.parentId) : undefined;
    if (parent) parent.children.push(n);
    else roots.push(n);
  }
  return roots;
}

/** A whole trace as indented text, one line per span, children sorted: comparable as a string. */
export function renderTrace(trace: Trace, withHost = false): string {
  return forest(trace).map((r) => renderNode(r, withHost).join('\n')).sort().join('\n--- another root ---\n');
}

export function renderExpected(e: Expect, withHost = false): string {
  return renderExpect(e, withHost).join('\n');
}

function countSpans(e: Expect): number {
  return 1 + e.children.reduce((n, c) => n + countSpans(c), 0);
}

/**
 * Every child inside its parent's time, as causality requires: a process reads a request before
 * it calls downstream and reads the downstream answer before it writes its own (entry -> exit,
 * one process: to the µs of rounding); a client writes before the server reads and reads after
 * the server wrote (exit -> entry, two processes). Across processes a little slack: a send is
 * stamped when its call moved the bytes and the peer may start reading a long message before
 * the sender's call returns (one agent, one clock offset: `TOLERANCE_US`, same host), and agents on
 * separate hosts convert to epoch time with offsets of their own (other host). Seen in the
 * whole e2e suite (2026-12-05): children at least 12 µs inside within a process, 0 µs across;
 * each check prints its worst margins. A span stamped from a stale or wrong clock reading is
 * off by milliseconds; a send stamped after its call was held up, by the hold (the one failure
 * on record, 459 µs, 2026-12-06: docs/kernel.md, "Time").
 */
const TOLERANCE_US = { 'in process': 1, 'same host': 250, 'other host': 2000 };

export function timingProblems(traces: Trace[]): string[] {
  const problems: string[] = [];
  // the worst overrun per kind of edge, printed: how close a run came to the tolerances
  const worst: Record<keyof typeof TOLERANCE_US, number> = { 'in process': -Infinity, 'same host': -Infinity, 'other host': -Infinity };
  for (const t of traces) {
    const ids = new Map(t.spans.map((s) => [s.spanId, s]));
    for (const c of t.spans) {
      const p = c.parentId ? ids.get(c.parentId) : undefined;
      if (!p) continue;
      const kind = p.host !== c.host ? 'other host' : p.pid === c.pid ? 'in process' : 'same host';
      const tol = TOLERANCE_US[kind];
      const early = p.startUs - c.startUs;
      // A client that read no answer (it gave up) may end before its server does: only the
      // server's start lies within it.
      const gaveUp = p.kind === 'exit' && c.kind === 'entry' && p.httpStatusCode === 0;
      const late = (gaveUp ? c.startUs : c.startUs + c.durationUs) - (p.startUs + p.durationUs);
      worst[kind] = Math.max(worst[kind], early, late);
      if (early > tol || late > tol) {
        problems.push(`timing: trace ${t.traceId}: ${c.service} ${c.kind} "${c.resource}" [${c.startUs}, +${c.durationUs} µs] ` +
          `${early > tol ? `starts ${early} µs before` : `ends ${late} µs after`} its parent ${p.service} ${p.kind} [${p.startUs}, +${p.durationUs} µs]`);
      }
    }
  }
  const seen = Object.entries(worst).filter(([, v]) => v > -Infinity).map(([k, v]) => `${k} ${v} µs`);
  if (seen.length) console.log(`timing: children at most this far outside their parents (negative: inside): ${seen.join(', ')}`);
  return problems;
}

/** The request id a span belongs to: the last path segment of its resource. */
export function requestIdOf(resource: string): string {
  return resource.split(' ').pop()!.split('?')[0].split('/').pop()!;
}

/**
 * Assert that the traces are exactly the expected ones: one trace per request id, each with
 * exactly the expected tree (every span's service, kind, resource and status, and every
 * parent/child relation), every child inside its parent's time, and nothing else.
 */
export function assertExactTraces(traces: Trace[], expected: Map<string, Expect>, o: { withHost?: boolean } = {}): void {
  const byId = new Map<string, Trace[]>();
  for (const t of traces) {
    const roots = forest(t);
    const id = requestIdOf(roots[0]?.span.resource ?? '');
    byId.set(id, [...(byId.get(id) ?? []), t]);
  }
  const problems: string[] = [];
  for (const [id, exp] of expected) {
    const want = renderExpected(exp, o.withHost);
    const got = byId.get(id) ?? [];
    if (got.length !== 1) {
      problems.push(`request ${id}: expected 1 trace, found ${got.length}${got.length ? ':\n' + got.map((t) => renderTrace(t, o.withHost)).join('\n=== next trace ===\n') : ''}\nexpected:\n${want}`);
      continue;
    }
    const have = renderTrace(got[0], o.withHost);
    if (have !== want) problems.push(`request ${id} (trace ${got[0].traceId}):\nexpected:\n${want}\nfound:\n${have}`);
  }
  for (const [id, ts] of byId) {
    if (!expected.has(id)) problems.push(`unexpected trace(s) for "${id}":\n${ts.map((t) => renderTrace(t, o.withHost)).join('\n=== next trace ===\n')}`);
  }
  problems.push(...timingProblems(traces));
  if (problems.length) {
    assert.fail(`${problems.length} of ${expected.size} requests not traced exactly:\n\n${problems.slice(0, 6).join('\n\n')}${problems.length > 6 ? `\n\n… and ${problems.length - 6} more` : ''}`);
  }
}

export function totalSpans(expected: Map<string, Expect>): number {
  let n = 0;
  for (const e of expected.values()) n += countSpans(e);
  return n;
}

export interface LinkReport {
  spans: number;
  /** Expected parent/child relations found. */
  linked: number;
  /** Expected relations missing (the child became a root of its own trace). */
  missing: string[];
}

/**
 * Where a topology cannot always be linked exactly (an event-loop server under concurrency:
 * several requests are open on its one thread, so nothing says which of them an outgoing call
 * serves), assert that nothing is linked wrongly: every span captured once, every parent/child
 * relation that exists is one the requests really had, and every relation across processes
 * (joined by TCP sequence numbers, which an event loop cannot blur) is present. Relations
 * inside `ambiguousService` may be missing; they are counted and returned.
 */
export function assertNothingWrong(traces: Trace[], expected: Map<string, Expect>, ambiguousService: string): LinkReport {
  const sig = (x: { service: string; kind: string; resource: string }) => `${x.service}|${x.kind}|${x.resource}`;
  const wantSpans = new Map<string, number>();
  const wantEdges = new Set<string>();
  const walk = (e: Expect, parent?: Expect) => {
    wantSpans.set(sig(e), (wantSpans.get(sig(e)) ?? 0) + 1);
    if (parent) wantEdges.add(`${sig(parent)} -> ${sig(e)}`);
    for (const c of e.children) walk(c, e);
  };
  for (const e of expected.values()) walk(e);

  const problems: string[] = [];
  const seenSpans = new Map<string, number>();
  const seenEdges = new Set<string>();
  for (const t of traces) {
    const ids = new Map(t.spans.map((s) => [s.spanId, s]));
    for (const s of t.spans) {
      seenSpans.set(sig(s), (seenSpans.get(sig(s)) ?? 0) + 1);
      const p = s.parentId ? ids.get(s.parentId) : undefined;
      if (!p) continue;
      const edge = `${sig(p)} -> ${sig(s)}`;
      if (!wantEdges.has(edge)) problems.push(`wrong link in trace ${t.traceId}: ${edge}`);
      seenEdges.add(edge);
    }
  }
  problems.push(...timingProblems(traces));
  for (const [s, n] of wantSpans) if (seenSpans.get(s) !== n) problems.push(`span ${s}: expected ${n}, stored ${seenSpans.get(s) ?? 0}`);
  for (const [s, n] of seenSpans) if (!wantSpans.has(s)) problems.push(`unexpected span ${s} (${n})`);
  const missing: string[] = [];
  for (const edge of wantEdges) {
    if (seenEdges.has(edge)) continue;
    const [from, to] = edge.split(' -> ');
    const inside = from.startsWith(`${ambiguousService}|entry|`) && to.startsWith(`${ambiguousService}|exit|`);
    if (inside) missing.push(edge);
    else problems.push(`missing link across processes: ${edge}`);
  }
  if (problems.length) {
    // Grouped by kind, a few of each: one kind of fault should not hide another.
    const kinds = new Map<string, string[]>();
    for (const p of problems) {
      const kind = p.replace(/[:(].*$/s, '').replace(/ in trace$/, '');
      kinds.set(kind, [...(kinds.get(kind) ?? []), p]);
    }
    const text = [...kinds].map(([kind, ps]) => `${ps.length} × ${kind}:\n  ${ps.slice(0, 6).join('\n  ')}`).join('\n');
    assert.fail(`${problems.length} problems:\n${text}`);
  }
  return { spans: [...seenSpans.values()].reduce((a, b) => a + b, 0), linked: seenEdges.size, missing };
}
